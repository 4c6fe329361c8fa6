"""The host gate: token bucket, per-host and per-process caps, Retry-After pauses, and
giving up at the deadline instead of holding a batch."""

from __future__ import annotations

import threading
import time

import pytest

from streams.stages.fetch.politeness import HostBusyError, HostGate
from streams.stages.fetch.settings import HostRule

FAST = HostRule(rate_per_s=1000, burst=1000, concurrency=2)


def test_a_host_gets_at_most_its_concurrency_and_others_are_not_held() -> None:
    gate = HostGate(FAST, (), process_slots=10)
    deadline = time.monotonic() + 5
    with gate.turn("a.test", deadline), gate.turn("a.test", deadline):
        started = time.monotonic()
        with pytest.raises(HostBusyError) as busy, gate.turn("a.test", time.monotonic() + 0.2):
            pass
        assert busy.value.cause == "concurrency"
        assert 0.15 < time.monotonic() - started < 1.0  # waited for a slot until its deadline
        with gate.turn("b.test", deadline):  # another host is not held up
            pass


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
    gate = HostGate(HostRule(rate_per_s=20, burst=2, concurrency=10), (), process_slots=10)
    started = time.monotonic()
    for _ in range(6):  # 2 from the burst, then one every 50 ms
        with gate.turn("a.test", time.monotonic() + 5):
            pass
    elapsed = time.monotonic() - started
    assert 0.18 < elapsed < 0.6, elapsed


def test_no_token_before_the_deadline_is_a_rate_refusal_at_once() -> None:
    gate = HostGate(HostRule(rate_per_s=0.1, burst=1, concurrency=10), (), process_slots=10)
    with gate.turn("slow.test", time.monotonic() + 1):
        pass
    started = time.monotonic()
    with pytest.raises(HostBusyError) as busy, gate.turn("slow.test", time.monotonic() + 1):
        pass
    assert busy.value.cause == "rate"
    assert time.monotonic() - started < 0.1  # the next token is 10 s away: no waiting
    assert busy.value.retry_at > time.monotonic() + 5


def test_retry_after_pauses_the_host() -> None:
    gate = HostGate(FAST, (), process_slots=10)
    gate.pause("a.test", 30)
    with pytest.raises(HostBusyError) as busy, gate.turn("a.test", time.monotonic() + 1):
        pass
    assert busy.value.cause == "retry_after"
    assert busy.value.retry_at == pytest.approx(time.monotonic() + 30, abs=1)


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
