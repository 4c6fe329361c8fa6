"""Keeps a batch of nothing but waiting messages from spinning.

A deferred message comes back to the fetch topic with a time not to try before (a backoff,
a host's Retry-After of an hour). When a batch holds nothing else, each of its calls would
defer its message again in microseconds, the runner would produce and commit them and read
them straight back: a tight loop that grows the topic by every waiting message, many times
a second. So the first waiting call of a batch lingers until the batch's deadline (or until
another call of the batch has real work, whose time the batch spends anyway), and the loop
turns once a batch, not once a round trip to the broker.

One call lingers, the others return at once: a waiting call never holds a thread that a
ready message behind it in the same batch could use. The batch is told apart by its
deadline (batch_deadline(), one value for all the calls of one batch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Lull:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition()
        self._batch: float | None = None  # the deadline of the batch seen last
        self._worked = False  # a call of that batch had work to do
        self._lingering = False  # a call of that batch is lingering

    def work(self, batch: float | None) -> None:
        """A call of `batch` does real work: its batch lasts that long anyway."""
        if batch is None:
            return
        with self._changed:
            self._see(batch)
            self._worked = True
            self._changed.notify_all()

    def linger(self, batch: float | None, until: float) -> bool:
        """Waits until `until` (on the clock), unless this batch has work or another call of
        it lingers already; returns whether it waited. No batch (a direct call): no wait."""
        if batch is None:
            return False
        with self._changed:
            self._see(batch)
            if self._worked or self._lingering:
                return False
            self._lingering = True
            try:
                # Bounded: each turn waits for what is left, and a notify only comes from
                # work() or a newer batch, both of which end the loop.
                while not self._worked and self._batch == batch:
                    left = until - self._clock()
                    if left <= 0:
                        break
                    self._changed.wait(left)
            finally:
                if self._batch == batch:
                    self._lingering = False
            return True

    def _see(self, batch: float) -> None:
        if batch != self._batch:
            # A new batch: whatever lingered for the one before has no reason to go on.
            self._batch, self._worked, self._lingering = batch, False, False
            self._changed.notify_all()
