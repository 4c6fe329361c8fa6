"""The wait before a failed batch is tried again: exponential, capped, reset on success."""

from __future__ import annotations

from dataclasses import dataclass

# Doubling stops here: 2**10 times the initial wait is already past any sensible cap.
MAX_DOUBLINGS = 10


@dataclass
class Backoff:
    initial_s: float
    max_s: float
    failures_in_a_row: int = 0

    def failed(self) -> float:
        """Count one more failure; the seconds to wait before the next try."""
        self.failures_in_a_row += 1
        return self.delay()

    def delay(self) -> float:
        doublings = min(self.failures_in_a_row, MAX_DOUBLINGS)
        return float(min(self.max_s, self.initial_s * 2**doublings))

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
