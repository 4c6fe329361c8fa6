"""Crashing inputs, slow stages and workers joining: no loss, no duplicate, no rebalance storm."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

from schemas.events import DeadLetter, decoder
from streams.app.settings import Settings
from tests.integration.streams.runner import stages
from tests.integration.streams.runner.fleet import (
    read_topic,
    start_thread,
    submit_ids,
    topics,
    wait_for,
)

MakeFleet = Callable[..., Settings]


def test_an_input_that_kills_its_process_is_isolated_and_dead_lettered(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(pool_workers=2, crash_attempts=2)
    good = [f"ok-{i:02d}" for i in range(24)]
    ids = submit_ids(fleet, [*good[:12], "crash-1", *good[12:]])
    worker = start_thread(fleet, stages.FIRST_IN_POOL)
    try:
        out = wait_for(fleet, topics(fleet).inbox("categorize"), len(good), timeout=180)
        letters = wait_for(fleet, topics(fleet).dlq, 1, timeout=60)
    finally:
        worker.stop()
    assert worker.error is None
    assert Counter(r.key for r in out) == Counter(good)
    [letter] = [decoder(DeadLetter).decode(r.value) for r in letters]
    assert letter.image_id == "crash-1"
    assert letter.reason_class == "worker_crashed"
    assert letter.attempts == 2
    done = {r.key: json.loads(r.value)["status"] for r in read_topic(fleet, topics(fleet).done)}
    assert done == {"crash-1": "failed"}
    assert len(ids) == 25


def test_a_slow_stage_never_outlives_a_small_poll_interval(make_fleet: MakeFleet) -> None:
    # 30 messages x 0.4 s = 12 s of work against a 6 s poll interval: one batch of all of
    # them would be kicked out of the group. The batch budget must keep batches small.
    fleet = make_fleet(max_poll_interval_ms=6000, session_timeout_ms=6000, batch_budget_s=20.0)
    ids = submit_ids(fleet, [f"slow-{i:02d}" for i in range(30)])
    worker = start_thread(fleet, stages.FIRST)
    try:
        out = wait_for(fleet, topics(fleet).inbox("categorize"), len(ids), timeout=120)
    finally:
        worker.stop()
    stats = worker.worker.stats
    assert worker.error is None
    assert Counter(r.key for r in out) == Counter(ids)
    assert stats.revoked == 0 and stats.lost == 0, stats
    assert stats.assigned == 1, stats
    assert max(stats.batch_sizes) < len(ids), stats.batch_sizes
    assert stats.committed == len(ids)


def test_a_second_worker_joining_and_the_first_leaving_lose_and_duplicate_nothing(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(session_timeout_ms=6000)
    ids = submit_ids(fleet, [f"pace-{i:04d}" for i in range(400)])
    first = start_thread(fleet, stages.FIRST, replica="a")
    second = None
    try:
        deadline = time.monotonic() + 60
        while first.worker.stats.committed < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = start_thread(fleet, stages.FIRST, replica="b")
        deadline = time.monotonic() + 60
        while second.worker.stats.committed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.stop()  # leaves the group: its partitions move to the second worker
        out = wait_for(fleet, topics(fleet).inbox("categorize"), len(ids), timeout=120)
    finally:
        if second is not None:
            second.stop()
    assert first.error is None and second is not None and second.error is None
    assert Counter(r.key for r in out) == Counter(ids)
    assert first.worker.stats.committed > 0 and second.worker.stats.committed > 0
    assert first.worker.stats.committed + second.worker.stats.committed == len(ids)
    assert second.worker.stats.assigned >= 2  # its first share, then the first worker's
