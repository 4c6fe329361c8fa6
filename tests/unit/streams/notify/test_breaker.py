"""The endpoint breaker's transitions, on a clock the test moves: N failures open it, calls
are skipped for the cool-down, then one probe decides between closed and open again."""

from __future__ import annotations

import pybreaker
import pytest
from prometheus_client import REGISTRY

from streams.notify.breaker import EndpointBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BoomError(Exception):
    pass


def _fail() -> None:
    raise BoomError


def _ok() -> str:
    return "ok"


def _gauge(endpoint: str) -> float | None:
    return REGISTRY.get_sample_value("pixelfleet_notify_breaker_state", {"endpoint": endpoint})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_failures_below_the_threshold_keep_it_closed_and_a_success_resets_the_count(
    clock: FakeClock,
) -> None:
    breaker = EndpointBreaker("b-count", failures=3, reset_s=30, clock=clock)
    for _ in range(2):
        with pytest.raises(BoomError):
            breaker.call(_fail)
    assert breaker.call(_ok) == "ok"
    for _ in range(2):
        with pytest.raises(BoomError):
            breaker.call(_fail)
    assert breaker.state == "closed" and breaker.wait_s() == 0.0
    assert _gauge("b-count") == 0


def test_it_opens_skips_for_the_cool_down_then_a_good_probe_closes_it(clock: FakeClock) -> None:
    breaker = EndpointBreaker("b-heal", failures=3, reset_s=30, clock=clock)
    calls = []

    def counted() -> str:
        calls.append(clock.now)
        return "ok"

    for _ in range(3):
        with pytest.raises(BoomError):  # the tripping call raises its own error
            breaker.call(_fail)
    assert breaker.state == "open" and _gauge("b-heal") == 2
    assert breaker.wait_s() == pytest.approx(30.0)

    clock.now += 29.0
    assert breaker.wait_s() == pytest.approx(1.0)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(counted)
    assert calls == []  # skipped: the endpoint was not called

    clock.now += 1.0
    assert breaker.wait_s() == 0.0
    assert breaker.call(counted) == "ok"  # the half-open probe
    assert calls == [clock.now]
    assert breaker.state == "closed" and _gauge("b-heal") == 0


def test_a_failed_probe_opens_it_for_another_cool_down(clock: FakeClock) -> None:
    breaker = EndpointBreaker("b-relapse", failures=2, reset_s=10, clock=clock)
    for _ in range(2):
        with pytest.raises(BoomError):
            breaker.call(_fail)
    clock.now += 10.0
    seen: list[str] = []

    def probe() -> None:
        seen.append(breaker.state)
        raise BoomError

    with pytest.raises(BoomError):
        breaker.call(probe)
    assert seen == ["half-open"]
    assert breaker.state == "open" and _gauge("b-relapse") == 2
    assert breaker.wait_s() == pytest.approx(10.0)  # counted from the failed probe
    clock.now += 10.0
    assert breaker.call(_ok) == "ok"
    assert breaker.state == "closed"


def test_the_cool_down_follows_our_clock_not_the_wall_clock(clock: FakeClock) -> None:
    # The wall clock hardly moves during this test; only the fake clock decides.
    breaker = EndpointBreaker("b-clock", failures=1, reset_s=3600, clock=clock)
    with pytest.raises(BoomError):
        breaker.call(_fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(_ok)
    clock.now += 3600.0
    assert breaker.call(_ok) == "ok"
