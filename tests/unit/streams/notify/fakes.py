"""Stand-ins for an endpoint's surroundings: a clock that moves only when told, a receiver
that records which event each POST carried, and a recorder of finished events.

Nothing here opens a socket: the receiver answers in-process, like test_endpoint's
ScriptedClient, but keeps the event id of every POST so a test can count them per event.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from processors import webhooks
from processors.webhooks import WebhookEvent
from streams.io.address_rules import NetPolicy
from streams.io.safe_http import PostResult
from streams.notify.delivery import Delivery, Outcome
from tests.unit.streams.notify import events

# Bounded waits: a broken fix fails the test in seconds, it never hangs the run.
POLLS = 400
POLL_S = 0.01


class FakeTime:
    """A monotonic clock that moves only by `advance`: a POST's duration, a pause."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += max(seconds, 0.0)


class Receiver:
    """Answers each POST with `answer(n)` (n counts from 1); records each POST's event id.

    `takes_s` moves `clock` forward per POST, standing for a slow receiver. With `hold`,
    the first POST waits for `release` (bounded), so a test knows which event is in
    flight while it acts; `entered` says that POST has begun.
    """

    def __init__(
        self,
        answer: Callable[[int], int] = lambda _n: 200,
        *,
        clock: FakeTime | None = None,
        takes_s: float = 0.0,
        hold: bool = False,
    ) -> None:
        self.policy = NetPolicy()  # what NotifyWorker checks each subscription's URL with
        self._answer = answer
        self._clock = clock
        self._takes_s = takes_s
        self._hold = hold
        self._lock = threading.Lock()
        self.posts: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def post(self, url: str, body: bytes, headers: dict[str, str], **_: Any) -> PostResult:
        with self._lock:
            self.posts.append(headers["X-Pixelfleet-Event-Id"])
            n = len(self.posts)
        if self._hold and n == 1:
            self.entered.set()
            self.release.wait(POLLS * POLL_S)
        if self._clock is not None:
            self._clock.advance(self._takes_s)
        return PostResult(self._answer(n), None, "192.0.2.1", 0.01, b"")

    def attempts(self) -> Counter[str]:
        """POSTs per event id."""
        with self._lock:
            return Counter(self.posts)


class Finished:
    """The endpoint's `finish`: records each outcome by the event's image id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[str, tuple[Outcome, int]] = {}  # image id -> outcome, attempts

    def __call__(self, _endpoint: str, delivery: Delivery, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes[delivery.event.image_id] = (outcome, delivery.attempts)

    def wait(self, count: int) -> dict[str, tuple[Outcome, int]]:
        for _ in range(POLLS):
            with self._lock:
                if len(self.outcomes) >= count:
                    break
            time.sleep(POLL_S)
        with self._lock:
            return dict(self.outcomes)


def event(image_id: str) -> WebhookEvent:
    made = webhooks.from_done(events.done(image_id))
    assert made is not None
    return made


def eventually(condition: Callable[[], bool]) -> bool:
    for _ in range(POLLS):
        if condition():
            return True
        time.sleep(POLL_S)
    return condition()
