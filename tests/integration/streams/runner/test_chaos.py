"""Workers killed at random, stopped politely, and the services going away under load."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.app.settings import Settings
from streams.devstack.stack import DevStack
from tests.integration.streams.runner.fleet import (
    Workers,
    check_exactly_once,
    fleet_settings,
    init_fleet,
    read_topic,
    submit_ids,
    topics,
    wait_for,
)

MakeFleet = Callable[..., Settings]
FIRST = "tests.integration.streams.runner.stages:FIRST"
SECOND = "tests.integration.streams.runner.stages:SECOND"


def _wait_progress(settings: Settings, topic: str, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_topic(settings, topic)) >= at_least:
            return
        time.sleep(0.5)
    raise AssertionError(f"no progress to {at_least} records on {topic} in {timeout} s")


def _log_lines(text: str) -> list[dict[str, Any]]:
    """A worker's JSON log lines (anything else in its output left out)."""
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def test_random_sigkills_lose_and_duplicate_nothing(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = make_fleet(session_timeout_ms=6000, batch_budget_s=2.0)
    ids = submit_ids(fleet, [f"pace-{i:04d}" for i in range(600)])
    workers = Workers(fleet, tmp_path)
    for spec in (FIRST, SECOND):
        for replica in ("r0", "r1"):
            workers.start(spec, replica)
    rng = random.Random(20261121)
    kills = 0
    try:
        _wait_progress(fleet, topics(fleet).inbox("categorize"), 20)
        while kills < 12:
            time.sleep(rng.uniform(0.3, 1.5))
            victim = rng.choice(sorted(workers.procs))
            workers.kill(victim)
            kills += 1
            workers.start(*victim)  # the same replica id: its open transaction is aborted
        wait_for(fleet, topics(fleet).done, len(ids), timeout=240)
    finally:
        codes = workers.stop_all()
    assert kills >= 10
    assert all(code == 0 for code in codes.values()), codes
    check_exactly_once(fleet, ids)


def test_sigterm_under_load_commits_leaves_and_exits_zero(
    make_fleet: MakeFleet, tmp_path: Path
) -> None:
    fleet = make_fleet(session_timeout_ms=6000, grace_s=20.0)
    ids = submit_ids(fleet, [f"pace-{i:04d}" for i in range(400)])
    workers = Workers(fleet, tmp_path)
    workers.start(FIRST, "r0")
    workers.start(SECOND, "r0")
    try:
        _wait_progress(fleet, topics(fleet).inbox("categorize"), 50)
        proc = workers.procs[(FIRST, "r0")]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log_text = (tmp_path / "FIRST-r0.log").read_text()
        assert code == 0, log_text[-3000:]
        # It stopped by its own graceful path: the signal taken, the batch finished and
        # committed, the worker closed; the grace-period watchdog (exit 1) never fired.
        lines = _log_lines(log_text)
        assert any(line.get("signal") == "SIGTERM" for line in lines), log_text[-3000:]
        stopped = [line for line in lines if line.get("msg") == "worker stopped"]
        assert len(stopped) == 1 and stopped[0]["committed"] > 0, log_text[-3000:]
        assert not any("grace period" in str(line.get("msg")) for line in lines)
        # A new worker takes over at once: the old one left the group, no session timeout.
        workers.start(FIRST, "r1")
        wait_for(fleet, topics(fleet).done, len(ids), timeout=120)
    finally:
        codes = workers.stop_all()
    assert all(c == 0 for k, c in codes.items() if k != (FIRST, "r0")), codes
    check_exactly_once(fleet, ids)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[DevStack]:
    stack = DevStack(Settings().dev.model_copy(update={"data_dir": tmp_path / "stack"}))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def test_minio_outage_and_broker_restart_mid_run(own_stack: DevStack, tmp_path: Path) -> None:
    base = own_stack.up().settings(Settings())
    fleet = fleet_settings(base, "outage", session_timeout_ms=6000, batch_budget_s=2.0)
    init_fleet(fleet)
    ids = submit_ids(fleet, [f"pace-{i:04d}" for i in range(500)])
    workers = Workers(fleet, tmp_path)
    workers.start(FIRST, "r0")
    workers.start(SECOND, "r0")
    try:
        _wait_progress(fleet, topics(fleet).done, 30)
        assert own_stack.stop_server("minio")
        time.sleep(20)
        own_stack.up()  # starts MinIO again on the same port
        _wait_progress(fleet, topics(fleet).done, 200, timeout=120)
        assert own_stack.stop_server("kafka")
        time.sleep(5)
        own_stack.up()
        wait_for(fleet, topics(fleet).done, len(ids), timeout=240)
        assert all(p.poll() is None for p in workers.procs.values()), "a worker gave up"
    finally:
        codes = workers.stop_all()
    assert all(c == 0 for c in codes.values()), codes
    check_exactly_once(fleet, ids)
