"""The host gate: token bucket, per-host and per-process caps, Retry-After pauses, and
giving up at the deadline instead of holding a batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from streams.stages.fetch.politeness import HostBusyError, HostGate
from streams.stages.fetch.settings import HostRule

FAST = HostRule(rate_per_s=1000, burst=1000, concurrency=2)


class Clock:
    """The gate's clock, moved by the test alone; counts its readings."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.reads += 1
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def read_count(self) -> int:
        with self._lock:
            return self.reads


def _in_thread(work: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_a_host_gets_at_most_its_concurrency_and_others_are_not_held() -> None:
    clock = Clock()
    gate = HostGate(FAST, (), process_slots=10, clock=clock)
    deadline = clock.now + 5
    with gate.turn("a.test", deadline), gate.turn("a.test", deadline):

        def third() -> None:
            with gate.turn("a.test", clock.now + 0.2):
                pass

        waiter, raised = _in_thread(third)
        # It waits for a slot, looking again and again, while its deadline is ahead...
        looked = clock.read_count()
        for _ in range(500):  # up to 5 s
            if clock.read_count() > looked + 5:
                break
            time.sleep(0.01)
        assert clock.read_count() > looked + 5
        assert waiter.is_alive() and raised == []
        with gate.turn("b.test", deadline):  # another host is not held up
            pass
        # ...and is refused once its deadline passes on the gate's clock.
        clock.advance(0.2)
        waiter.join(5)
        assert not waiter.is_alive()
        assert [type(e) for e in raised] == [HostBusyError]
        assert isinstance(raised[0], HostBusyError) and raised[0].cause == "concurrency"


def test_a_slot_freed_wakes_a_waiter_before_its_deadline() -> None:
    gate = HostGate(HostRule(rate_per_s=1000, burst=1000, concurrency=1), (), process_slots=10)
    got = threading.Event()

    def second() -> None:
        with gate.turn("a.test", time.monotonic() + 5):
            got.set()

    with gate.turn("a.test", time.monotonic() + 5):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.1)
        assert not got.is_set()
    waiter.join(5)
    assert got.is_set()


def test_the_token_bucket_spaces_requests_at_the_rate() -> None:
    clock = Clock()
    # 16 a second: a token every 1/16 s, a step the clock's floats hold exactly.
    rule = HostRule(rate_per_s=16, burst=2, concurrency=10)
    gate = HostGate(rule, (), process_slots=10, clock=clock)

    def turn() -> float | None:
        """A turn that may not wait (its deadline is now): None when granted, else when
        the next token comes."""
        try:
            with gate.turn("a.test", clock.now):
                return None
        except HostBusyError as busy:
            assert busy.cause == "rate"
            return busy.retry_at

    # 2 from the burst at once, then one every 1/16 s on the gate's clock, and no more.
    assert [turn(), turn()] == [None, None]
    for _ in range(4):
        next_token = clock.now + 1 / 16
        assert turn() == next_token
        clock.advance(1 / 32)
        assert turn() == next_token  # half a token is none
        clock.advance(1 / 32)
        assert turn() is None
    # A turn with time to spare waits for the next token, and gets it when it comes.
    granted = threading.Event()

    def patient() -> None:
        with gate.turn("a.test", clock.now + 1):
            granted.set()

    waiter, raised = _in_thread(patient)
    looked = clock.read_count()
    for _ in range(500):  # up to 5 s for it to look twice (it looks every 1/16 s)
        if clock.read_count() > looked + 1:
            break
        time.sleep(0.01)
    assert not granted.is_set() and raised == []
    clock.advance(1 / 16)
    waiter.join(5)
    assert granted.is_set() and raised == []


def test_no_token_before_the_deadline_is_a_rate_refusal_at_once() -> None:
    clock = Clock()
    gate = HostGate(
        HostRule(rate_per_s=0.1, burst=1, concurrency=10), (), process_slots=10, clock=clock
    )
    with gate.turn("slow.test", clock.now + 1):
        pass

    def second() -> None:
        with gate.turn("slow.test", clock.now + 1):
            pass

    # The clock stands still: a gate that waited for the deadline would never return.
    waiter, raised = _in_thread(second)
    waiter.join(5)
    assert not waiter.is_alive()
    busy = raised[0]
    assert isinstance(busy, HostBusyError) and busy.cause == "rate"
    assert busy.retry_at == pytest.approx(clock.now + 10)  # the next token is 10 s away


def test_retry_after_pauses_the_host() -> None:
    clock = Clock()
    gate = HostGate(FAST, (), process_slots=10, clock=clock)
    gate.pause("a.test", 30)
    with pytest.raises(HostBusyError) as busy, gate.turn("a.test", clock.now + 1):
        pass
    assert busy.value.cause == "retry_after"
    assert busy.value.retry_at == pytest.approx(clock.now + 30)


def test_the_process_cap_counts_every_host() -> None:
    gate = HostGate(FAST, (), process_slots=2)
    deadline = time.monotonic() + 5
    with gate.turn("a.test", deadline), gate.turn("b.test", deadline):
        with pytest.raises(HostBusyError) as busy, gate.turn("c.test", time.monotonic() + 0.1):
            pass
        assert busy.value.cause == "process"


def test_rules_by_pattern_and_the_metric_label() -> None:
    shop = HostRule(pattern="*.shop.test", rate_per_s=50, burst=5, concurrency=8)
    gate = HostGate(FAST, (shop,), process_slots=10)
    assert gate.rule_for("img.SHOP.test") is shop
    assert gate.rule_for("other.test") is FAST
    assert gate.rule_name("img.shop.test") == "*.shop.test"
    assert gate.rule_name("other.test") == "default"


def test_a_redirect_hop_keeps_the_targets_limits_but_takes_no_process_slot() -> None:
    slow = HostRule(pattern="cdn.test", rate_per_s=0.01, burst=1, concurrency=1)
    gate = HostGate(FAST, (slow,), process_slots=1)
    deadline = time.monotonic() + 5
    with gate.turn("short.test", deadline):  # the fetch's own turn: the one process slot
        with gate.hop("cdn.test", deadline):  # no second process slot needed
            with pytest.raises(HostBusyError) as busy, gate.hop("cdn.test", deadline):
                pass
            assert busy.value.cause == "concurrency"
        # Its one token is spent: the next redirect there waits for the rate, not the slot.
        with pytest.raises(HostBusyError) as busy, gate.hop("cdn.test", deadline):
            pass
        assert (busy.value.cause, busy.value.host) == ("rate", "cdn.test")
        gate.pause("other.test", 60)
        with pytest.raises(HostBusyError) as busy, gate.hop("other.test", deadline):
            pass
        assert busy.value.cause == "retry_after"
    # Hops gave back what they took: the process slot is free again.
    with gate.turn("short.test", time.monotonic() + 0.1):
        pass
