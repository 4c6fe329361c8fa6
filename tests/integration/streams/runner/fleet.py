"""Helpers for runner tests: a fleet on unique topics and buckets, workers, and readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schemas.events import ImageSubmitted, ObjectRef, Source
from streams.app import admin
from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import latest_records, topic_messages
from streams.runner.records import now_iso
from streams.runner.stage import StageSpec
from streams.runner.worker import StageWorker

ROOT = Path(__file__).resolve().parents[4]


def fleet_settings(base: Settings, prefix: str, **runner: object) -> Settings:
    buckets = base.buckets.model_copy(
        update={
            "incoming": f"{prefix}-in",
            "work": f"{prefix}-work",
            "images": f"{prefix}-img",
            "quarantine": f"{prefix}-q",
        }
    )
    runner_settings = base.runner.model_copy(
        update={"metrics_port": 0, "batch_budget_s": 5.0, "backoff_max_s": 2.0, **runner}
    )
    topics = base.topics.model_copy(update={"partitions": 4})
    return base.model_copy(
        update={
            "topic_prefix": prefix,
            "buckets": buckets,
            "runner": runner_settings,
            "topics": topics,
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `pixelfleet worker` see exactly these settings."""
    env = {
        "PIXELFLEET_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "PIXELFLEET_S3_ENDPOINT": settings.s3.endpoint,
        "PIXELFLEET_S3_ACCESS_KEY": settings.s3.access_key,
        "PIXELFLEET_S3_SECRET_KEY": settings.s3.secret_key.get_secret_value(),
        "PIXELFLEET_TOPIC_PREFIX": settings.topic_prefix,
    }
    for group in ("buckets", "runner", "topics"):
        for name, value in getattr(settings, group).model_dump().items():
            env[f"PIXELFLEET_{group.upper()}_{name.upper()}"] = str(value)
    return env


def init_fleet(settings: Settings) -> None:
    admin.init(settings, clients.admin(settings.kafka), clients.s3(settings.s3))


def submit_ids(settings: Settings, image_ids: Iterable[str]) -> list[str]:
    """Publish one event per id, pointing at an object of the incoming bucket."""
    submitter = Submitter(settings)
    ids = list(image_ids)
    for image_id in ids:
        ref = ObjectRef(bucket=settings.buckets.incoming, key=f"{image_id}/original.bin")
        submitter.submit(
            ImageSubmitted(image_id=image_id, source=Source(object=ref), submitted_at=now_iso())
        )
    submitter.flush()
    return ids


@dataclass
class ThreadWorker:
    """A stage worker on a thread of the test process: fast to start, easy to inspect."""

    worker: StageWorker
    thread: threading.Thread = field(init=False)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 60) -> None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


def start_thread(settings: Settings, spec: StageSpec, replica: str = "r0") -> ThreadWorker:
    runner = settings.runner.model_copy(update={"replica_id": replica})
    return ThreadWorker(StageWorker(settings.model_copy(update={"runner": runner}), spec))


def start_process(
    settings: Settings, spec_ref: str, replica: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "PIXELFLEET_RUNNER_REPLICA_ID": replica}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--spec", spec_ref],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


@dataclass(frozen=True)
class Record:
    key: str
    value: bytes
    partition: int
    offset: int


def read_topic(settings: Settings, topic: str, timeout: float = 30) -> list[Record]:
    """Every committed record of a topic, read until the end offsets seen at the start."""
    return [
        Record((m.key() or b"").decode(), m.value() or b"", m.partition() or 0, m.offset() or 0)
        for m in topic_messages(settings, topic, timeout)
    ]


def wait_for(settings: Settings, topic: str, count: int, timeout: float = 120) -> list[Record]:
    """The records of topic once `count` distinct keys are there; fails after timeout."""
    deadline = time.monotonic() + timeout
    records: list[Record] = []
    while time.monotonic() < deadline:
        records = read_topic(settings, topic)
        if len({r.key for r in records}) >= count:
            return records
        time.sleep(0.5)
    keys = len({r.key for r in records})
    raise AssertionError(f"{topic}: {keys} of {count} keys after {timeout:.0f} s")


def run_until_done(
    settings: Settings, specs: Iterable[StageSpec], count: int, timeout: float = 120
) -> list[Record]:
    """Runs the stages on threads until `count` images are on the done topic, stops them,
    and fails if any worker raised; returns the done records."""
    workers = [start_thread(settings, spec) for spec in specs]
    try:
        done = wait_for(settings, topics(settings).done, count, timeout)
    finally:
        for worker in workers:
            worker.stop()
    assert all(w.error is None for w in workers), [w.error for w in workers]
    return done


def topics(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


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


def check_exactly_once(settings: Settings, ids: list[str]) -> None:
    t = topics(settings)
    done = read_topic(settings, t.done)
    assert Counter(r.key for r in done) == Counter(ids), "every image exactly once on done"
    assert all(json.loads(r.value)["status"] == "done" for r in done)
    middle = read_topic(settings, t.inbox("categorize"))
    assert Counter(r.key for r in middle) == Counter(ids), "every image exactly once in between"
    meta = read_topic(settings, t.metadata)
    # One committed record per stage per image: a replayed batch never shows twice.
    assert Counter(r.key for r in meta) == Counter({i: 2 for i in ids})
    latest = latest_records(settings)
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
