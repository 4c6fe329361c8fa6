"""The adaptive batch size and the retry backoff: small pieces, exact numbers."""

from __future__ import annotations

import pytest

from streams.runner import backoff, sizing
from streams.runner.backoff import Backoff
from streams.runner.sizing import BatchSizer


def test_the_first_batch_is_small_until_a_rate_is_known() -> None:
    assert sizing.FIRST_BATCH == 50
    assert BatchSizer(budget_s=20, batch_max=5000).size == 50
    assert BatchSizer(budget_s=20, batch_max=10).size == 10


def test_the_first_batch_is_never_below_the_stages_smallest() -> None:
    # fetch runs 128 messages at once: a first batch of 50 would leave 78 threads idle.
    assert BatchSizer(budget_s=10, batch_max=5000, minimum=128).size == 128
    assert BatchSizer(budget_s=10, batch_max=100, minimum=128).size == 100


def test_a_small_batch_that_did_all_it_was_asked_teaches_nothing() -> None:
    sizer = BatchSizer(budget_s=10.0, batch_max=5000, minimum=128)
    # One URL in 0.5 s is its latency, not a 128-thread stage's rate (0.5 s a message
    # would size the next batch at 10, held up to 128).
    assert sizer.observe(1, 0.5, asked=1) == 128
    assert sizer.seconds_per_message == 0.0
    # A full one does: 128 in 2 s, so 5 s of budget share hold 320.
    assert sizer.observe(128, 2.0, asked=128) == 320
    # So does a small one that its deadline cut: 3 of 128 in 6 s.
    assert sizer.observe(3, 6.0, asked=128) == 128
    assert sizer.seconds_per_message == pytest.approx(0.7 * 2 / 128 + 0.3 * 2.0)


def test_a_fast_stage_grows_toward_batch_max() -> None:
    sizer = BatchSizer(budget_s=1.0, batch_max=1000)
    # 1 ms a message; half of a 1 s budget holds 500.
    assert sizer.observe(50, 0.05) == 500
    assert sizer.seconds_per_message == pytest.approx(0.001)
    # Faster again: 0.7 * 1 ms + 0.3 * 0.5 ms = 0.85 ms a message, 588 in half a second.
    assert sizer.observe(500, 0.25) == 588
    # No measurable time: 0.7 * 0.85 ms = 0.595 ms a message, 840 in half a second.
    assert sizer.observe(588, 0.0) == 840
    assert sizer.observe(840, 0.0) == 1000  # capped at batch_max
    assert BatchSizer(budget_s=1.0, batch_max=1000).observe(50, 0.0) == 1000


def test_a_slow_stage_shrinks_to_its_share_of_the_budget_and_never_below_one() -> None:
    sizer = BatchSizer(budget_s=20.0, batch_max=5000)
    assert sizer.observe(50, 100.0) == 5  # 2 s a message: 10 s of budget share hold 5
    # 100 s a message: 0.7 * 2 + 0.3 * 100 = 31.4 s smoothed, longer than the share.
    assert sizer.observe(5, 500.0) == 1
    assert sizer.seconds_per_message == pytest.approx(31.4)


def test_the_newest_measurement_weighs_thirty_percent() -> None:
    assert sizing.NEWEST_WEIGHT == 0.3
    sizer = BatchSizer(budget_s=100.0, batch_max=10_000)
    sizer.observe(10, 10.0)  # 1 s a message: taken as it is
    assert sizer.seconds_per_message == pytest.approx(1.0)
    sizer.observe(10, 20.0)  # 2 s a message
    assert sizer.seconds_per_message == pytest.approx(1.3)
    assert sizer.size == int(100.0 * 0.5 / 1.3)


def test_an_empty_batch_changes_nothing() -> None:
    sizer = BatchSizer(budget_s=20.0, batch_max=5000)
    assert sizer.observe(0, 3.0) == 50
    sizer.observe(50, 100.0)
    assert sizer.observe(0, 3.0) == 5
    assert sizer.seconds_per_message == pytest.approx(2.0)


def test_backoff_doubles_from_the_initial_wait_up_to_its_cap() -> None:
    wait = Backoff(initial_s=0.5, max_s=5.0)
    assert wait.delay() == 0.5
    # The first failure already waits one doubling of the initial wait.
    assert [wait.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert wait.failures_in_a_row == 5


def test_backoff_stops_doubling_after_max_doublings() -> None:
    assert backoff.MAX_DOUBLINGS == 10
    wait = Backoff(initial_s=0.001, max_s=1e9)
    delays = [wait.failed() for _ in range(15)]
    assert delays[9] == pytest.approx(1.024)
    assert delays[10:] == [pytest.approx(1.024)] * 5


def test_a_success_resets_the_backoff() -> None:
    wait = Backoff(initial_s=0.25, max_s=30.0)
    wait.failed()
    wait.failed()
    assert wait.delay() == 1.0
    wait.succeeded()
    assert (wait.failures_in_a_row, wait.delay(), wait.failed()) == (0, 0.25, 0.5)


def test_a_pool_gets_at_least_one_message_per_process_however_slow() -> None:
    sizer = BatchSizer(budget_s=4.0, batch_max=5000, minimum=2)
    assert sizer.observe(1, 6.0) == 2  # 6 s a message would fit none in 2 s
    assert BatchSizer(budget_s=4.0, batch_max=1, minimum=2).observe(1, 6.0) == 1
