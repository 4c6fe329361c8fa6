"""One endpoint's circuit breaker: pybreaker's state machine on a monotonic clock we choose.

pybreaker times its cool-down with the wall clock (`datetime.now`); ours is a monotonic
clock that tests can replace. The storage below records when the breaker opened on our
clock and reports it back to pybreaker as "so long ago, in wall time", so pybreaker's own
comparison says what our clock says, and a jump of the system clock changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

import pybreaker

from streams.observe.metrics import NOTIFY_BREAKER_STATE

log = logging.getLogger("pixelfleet.notify")

T = TypeVar("T")
Clock = Callable[[], float]
State = Literal["closed", "half-open", "open"]
# The gauge's values: what the dashboard and the alert read.
STATE_VALUES: dict[str, int] = {"closed": 0, "half-open": 1, "open": 2}


class _MonotonicStorage(pybreaker.CircuitMemoryStorage):
    def __init__(self, clock: Clock) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self._clock() - self._opened)

    @opened_at.setter
    def opened_at(self, _wall: datetime) -> None:
        self._opened = self._clock()

    def opened_mono(self) -> float | None:
        return self._opened


class _Gauge(pybreaker.CircuitBreakerListener):
    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        NOTIFY_BREAKER_STATE.labels(self._endpoint).set(STATE_VALUES[new_state.name])
        old = old_state.name if old_state is not None else None
        log.warning(
            f"webhook endpoint {self._endpoint}: circuit breaker {old} -> {new_state.name}",
            extra={"endpoint": self._endpoint, "breaker": new_state.name},
        )


class EndpointBreaker:
    """`failures` failed calls in a row open it; after `reset_s` one call is let through
    (half-open): success closes it, failure opens it for another `reset_s`.

    Only the endpoint's own delivery thread calls `call`, so pybreaker's lock, held for
    the whole call, never makes another endpoint wait.
    """

    def __init__(self, endpoint: str, failures: int, reset_s: float, clock: Clock) -> None:
        self._clock = clock
        self._reset_s = reset_s
        self._storage = _MonotonicStorage(clock)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=reset_s,
            state_storage=self._storage,
            listeners=[_Gauge(endpoint)],
            name=endpoint,
            # The call that trips the breaker raises its own error, not a generic one: the
            # delivery records the real status or timeout.
            throw_new_error_on_trip=False,
        )
        NOTIFY_BREAKER_STATE.labels(endpoint).set(0)

    @property
    def state(self) -> State:
        name = self._breaker.current_state
        if name == pybreaker.STATE_OPEN:
            return "open"
        if name == pybreaker.STATE_HALF_OPEN:
            return "half-open"
        return "closed"

    def wait_s(self) -> float:
        """Seconds until the breaker lets a call through; 0 when it does now."""
        opened = self._storage.opened_mono()
        if self.state != "open" or opened is None:
            return 0.0
        return max(opened + self._reset_s - self._clock(), 0.0)

    def call(self, attempt: Callable[[], T]) -> T:
        """Runs `attempt` through the breaker: an exception counts as a failure and is
        raised again; pybreaker.CircuitBreakerError means it was not run (still open)."""
        return self._breaker.call(attempt)
