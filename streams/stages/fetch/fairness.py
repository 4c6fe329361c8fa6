"""Whether a download had a fair try: enough of its batch that a cut may be held against
the URL (an attempt counted) or against its host (a pause).

A download may start at any moment before its batch's deadline, after waiting for its
host's turn, and the deadline cuts it wherever it is. Cut after most of a batch, a body
still arriving is too large or too slow for any batch, and a host that sent nothing in
that time is slow; cut after a moment, it says neither: the same image would fit a fresh
batch. So a cut counts, and a host that had not answered is paused, only when the download
had at least MIN_SHARE of its window: the most any download of that batch could have had,
from the batch's first call to its deadline (what a download started at once gets), or
the download's own total timeout when that is shorter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]

MIN_SHARE = 0.5
# Batches remembered: one runs at a time per worker; a few spare for calls that end late.
REMEMBERED = 8


class Openings:
    """When this process first saw a call of each recent batch (a batch is told apart by
    its deadline, one value for all its calls): the batch's start, near enough, since the
    executor starts a batch's first calls at once."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._opened: OrderedDict[float, float] = OrderedDict()

    def seen(self, batch: float | None) -> float | None:
        """The opening of `batch`, now if this is its first call; None outside a batch."""
        if batch is None:
            return None
        with self._lock:
            opened = self._opened.get(batch)
            if opened is None:
                opened = self._opened[batch] = self._clock()
                while len(self._opened) > REMEMBERED:
                    self._opened.popitem(last=False)
            return opened


def had_its_share(started: float, deadline: float, opened: float | None, limit_s: float) -> bool:
    """Whether a download started at `started` had MIN_SHARE of its window before
    `deadline`. Outside a batch (`opened` None) nothing but its own timeouts cuts it."""
    if opened is None:
        return True
    window = min(deadline - opened, limit_s)
    return deadline - started >= MIN_SHARE * window
