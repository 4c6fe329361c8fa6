"""Workers killed at random, stopped politely, and the services going away under load."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas.events import ImageRecord, decoder
from streams import clients
from streams.devstack.stack import DevStack
from streams.settings import KafkaSettings, S3Settings, Settings
from tests.integration.streams.runner.fleet import (
    fleet_settings,
    init_fleet,
    read_topic,
    start_process,
    stop_process,
    submit_ids,
    topics,
    wait_for,
)

MakeFleet = Callable[..., Settings]
FIRST = "tests.integration.streams.runner.stages:FIRST"
SECOND = "tests.integration.streams.runner.stages:SECOND"


class Workers:
    """Worker subprocesses by (spec, replica), restartable under the same replica id."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}

    def start(self, spec: str, replica: str) -> None:
        name = f"{spec.rsplit(':', 1)[1]}-{replica}.log"
        self.procs[(spec, replica)] = start_process(self.settings, spec, replica, self.logs / name)

    def kill(self, key: tuple[str, str]) -> None:
        proc = self.procs[key]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> dict[tuple[str, str], int]:
        return {key: stop_process(proc) for key, proc in self.procs.items()}


def _check_exactly_once(settings: Settings, ids: list[str]) -> None:
    t = topics(settings)
    done = read_topic(settings, t.done)
    assert Counter(r.key for r in done) == Counter(ids), "every image exactly once on done"
    assert all(json.loads(r.value)["status"] == "done" for r in done)
    middle = read_topic(settings, t.inbox("categorize"))
    assert Counter(r.key for r in middle) == Counter(ids), "every image exactly once in between"
    meta = read_topic(settings, t.metadata)
    # One committed record per stage per image: a replayed batch never shows twice.
    assert Counter(r.key for r in meta) == Counter({i: 2 for i in ids})
    latest: dict[str, ImageRecord] = {}
    for rec in sorted(meta, key=lambda r: (r.partition, r.offset)):
        latest[rec.key] = decoder(ImageRecord).decode(rec.value)
    assert {k: v.status for k, v in latest.items()} == dict.fromkeys(ids, "done")
    s3 = clients.s3(settings.s3)
    work = sorted(
        o.object_name or "" for o in s3.list_objects(settings.buckets.work, recursive=True)
    )
    final = sorted(
        o.object_name or "" for o in s3.list_objects(settings.buckets.images, recursive=True)
    )
    assert work == sorted(f"validate/{i}.txt" for i in ids)
    assert final == sorted(f"categorize/{i}.txt" for i in ids)


def _wait_progress(settings: Settings, topic: str, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_topic(settings, topic)) >= at_least:
            return
        time.sleep(0.5)
    raise AssertionError(f"no progress to {at_least} records on {topic} in {timeout} s")


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
    _check_exactly_once(fleet, ids)


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
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - started
        assert code == 0, (tmp_path / "FIRST-r0.log").read_text()[-3000:]
        assert took < fleet.runner.grace_s
        # A new worker takes over at once: the old one left the group, no session timeout.
        workers.start(FIRST, "r1")
        wait_for(fleet, topics(fleet).done, len(ids), timeout=120)
    finally:
        codes = workers.stop_all()
    assert all(c == 0 for k, c in codes.items() if k != (FIRST, "r0")), codes
    _check_exactly_once(fleet, ids)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[DevStack]:
    stack = DevStack(Settings().dev.model_copy(update={"data_dir": tmp_path / "stack"}))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def test_minio_outage_and_broker_restart_mid_run(own_stack: DevStack, tmp_path: Path) -> None:
    info = own_stack.up()
    base = Settings(
        kafka=KafkaSettings(bootstrap=info.bootstrap),
        s3=S3Settings(endpoint=info.s3_endpoint, access_key=info.access_key,
                      secret_key=SecretStr(info.secret_key)),
    )  # fmt: skip
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
    _check_exactly_once(fleet, ids)
