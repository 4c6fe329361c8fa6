"""Pacing a long backfill: a steady rate, and how long the rest will take.

Pure: the clock and the sleep are passed in, so the arithmetic is tested without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Pacer:
    """At most `rate` sends a second on average, with bursts of at most `burst` (a token
    bucket). rate None: no limit."""

    rate: float | None
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    burst: float = 1.0
    _tokens: float = field(init=False, default=0.0)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError("a rate must be above 0")
        self._tokens = self.burst

    def wait(self) -> float:
        """Block until one more send is allowed; the seconds slept."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        delay = (1 - self._tokens) / self.rate
        self.sleep(delay)
        self._last = now + delay
        self._tokens = 0.0
        return delay


def eta_seconds(done: int, total: int, elapsed_s: float) -> float | None:
    """The seconds left at the pace so far; None before there is a pace to go by."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return (total - done) * elapsed_s / done
