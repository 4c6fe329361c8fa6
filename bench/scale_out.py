"""Scaling one stage out on the same machine: compress with 1 and 2 workers, then 1 -> 3 -> 1.

    python bench/scale_out.py [--folder PHOTOS] [--count 24] [--step-s 20]

On real photographs (--folder, or a generated set of 3 to 24 MP photos as fleet_vs_loop
makes), restore off, on the local stack (the environment's, refused unless on this
machine, or a throwaway one), under a fresh prefix whose topics, consumer groups and
buckets are deleted at the end:

1. validate, categorize and enhance run until every image waits in compress's inbox; they
   are stopped then, so the trials below have the CPUs to themselves.
2. Each trial moves compress's consumer group past its inbox, starts its workers, waits
   until they hold every partition, then publishes the staged envelopes again and times
   the workers until every image is done again. Outputs have deterministic keys, so a
   trial overwrites the previous one's objects.
   * one worker, then two workers on the same cores: images/s and the ratio two/one;
   * one worker, two more joining after --step-s seconds (1 -> 3), and two of the three
     stopped with SIGTERM --step-s seconds later (3 -> 1): after each step, the longest
     time without a committed batch (the rebalance pause a user sees) in the --step-s
     seconds after it, next to the longest such gap in the --step-s seconds before it. A
     commit's time is when this bench's read_committed consumer received the done record,
     so each is late by up to one poll (0.5 s). Every image must be done exactly once per
     trial (counted by key), or the bench says so.

It prints the figures and asserts nothing; it fails when a worker does not get ready or
dies, when the workers do not hold every partition within 60 s, or a trial overruns.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchstack import fresh_fleet, loopback_stack, wait_ready
from confluent_kafka import KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.fleet_vs_loop import megapixels, photo_set
from schemas.events import Request
from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.config.topics import Topics
from streams.demo.workers import WorkerProcesses
from streams.io import clients
from streams.io.topic_reader import topic_end_offsets, topic_messages
from tests.integration.streams.runner.fleet import settings_env

UPSTREAM = ["validate", "categorize", "enhance"]
STAGE = "compress"
PARTITIONS = 12
WAIT_S = 900  # a trial that takes longer than this has failed
ASSIGN_WAIT_S = 60.0  # for the trial's workers to hold every partition


def dead_workers(workers: WorkerProcesses, logs: Path) -> None:
    """Fail at once when a worker of the trial exited (a retired one is no longer listed)."""
    dead = workers.dead()
    if dead:
        names = ", ".join(f"{w.stage} (exit {w.process.returncode})" for w in dead)
        raise RuntimeError(f"worker died: {names}; see {logs}")


def inbox_waiting(settings: Settings) -> int:
    """Records in compress's inbox (each image's envelope once; transaction markers aside)."""
    topic = Topics(settings.topic_prefix).inbox(STAGE)
    try:
        return len(topic_messages(settings, topic, timeout_s=30))
    except KafkaException:  # a leader moving (a busy broker): ask again on the next round
        return 0


def stage_upstream(settings: Settings, files: list[Path], logs: Path) -> None:
    workers = WorkerProcesses(UPSTREAM, settings_env(settings), logs)
    workers.start()
    try:
        submitter = Submitter(settings)
        for path in files:
            submitter.upload_and_submit(path, request=Request(restore="none"))
        submitter.flush()
        if submitter.errors:
            raise RuntimeError(f"submissions not delivered: {submitter.errors}")
        deadline = time.monotonic() + WAIT_S
        while inbox_waiting(settings) < len(files):
            if time.monotonic() > deadline or workers.dead():
                raise RuntimeError(f"upstream stages did not finish; see {logs}")
            time.sleep(1.0)
    finally:
        workers.stop()


Staged = list[tuple[bytes, bytes]]  # compress's inbox records: (key, value)


def staged_inbox(settings: Settings) -> Staged:
    topic = Topics(settings.topic_prefix).inbox(STAGE)
    return [(m.key() or b"", m.value() or b"") for m in topic_messages(settings, topic, 30)]


def skip_to_end(settings: Settings) -> None:
    """Compress's group past everything in its inbox. The group has no members between
    trials, so a plain commit under its id sets it."""
    topics = Topics(settings.topic_prefix)
    consumer = clients.consumer(settings.kafka, topics.group(STAGE))
    try:
        ends = topic_end_offsets(consumer, topics.inbox(STAGE))
        at_end = [TopicPartition(topics.inbox(STAGE), p, hi) for p, (_lo, hi) in ends.items()]
        consumer.commit(offsets=at_end, asynchronous=False)
    finally:
        consumer.close()


def publish(settings: Settings, staged: Staged) -> None:
    """The staged envelopes again, as enhance sent them: the same keys, so the same
    partitions."""
    producer = clients.producer(settings.kafka)
    for key, value in staged:
        producer.produce(Topics(settings.topic_prefix).inbox(STAGE), key=key, value=value)
    if producer.flush(30):  # a trial waiting for envelopes never sent would time out
        raise RuntimeError("the staged envelopes were not all acknowledged in 30 s")


def assigned(workers: WorkerProcesses) -> int:
    """Partitions the workers hold, from their own gauges."""
    total = 0.0
    for worker in workers.workers:
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            if family.name == "pixelfleet_assigned_partitions":
                total += sum(s.value for s in family.samples)
    return int(total)


class DoneTail:
    """The done topic from where it ends now: (key, time received) of each record after.

    A read_committed consumer: a record arrives once its batch's transaction committed, and
    the time noted is this process's clock when read() got it, late by up to one poll
    (0.5 s) plus whatever the trial's loop did in between; not the broker's time."""

    def __init__(self, settings: Settings) -> None:
        self.topic = Topics(settings.topic_prefix).done
        self.consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.bench-tail")
        ends = topic_end_offsets(self.consumer, self.topic)
        self.consumer.assign([TopicPartition(self.topic, p, hi) for p, (_lo, hi) in ends.items()])
        self.seen: list[tuple[str, float]] = []

    def read(self) -> None:
        for msg in self.consumer.consume(1000, timeout=0.5):
            if msg.error() is None:
                # When a consumer downstream could see it: after the commit, by our clock.
                self.seen.append(((msg.key() or b"").decode(), time.time()))

    def close(self) -> None:
        self.consumer.close()


def trial(
    settings: Settings,
    staged: Staged,
    logs: Path,
    start: int,
    steps: list[tuple[float, int]],
) -> tuple[float, list[tuple[str, float]], dict[str, tuple[float, float]]]:
    """Run compress from a rewound inbox with `start` workers; at each (seconds, delta)
    add or retire workers. Returns the seconds to done, the done records and when each
    step happened."""
    skip_to_end(settings)
    workers = WorkerProcesses([], settings_env(settings), logs)
    tail = DoneTail(settings)
    try:
        for _ in range(start):
            wait_ready(workers.add(STAGE))
        # Timed from a settled group: the work is published once every partition is held.
        deadline = time.monotonic() + ASSIGN_WAIT_S
        while True:
            dead_workers(workers, logs)  # before asking it: a dead worker's port is closed
            held = assigned(workers)
            if held >= PARTITIONS:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{start} {STAGE} workers hold {held} of {PARTITIONS} partitions after "
                    f"{ASSIGN_WAIT_S:.0f} s; see {logs}"
                )
            time.sleep(0.3)
        publish(settings, staged)
        started = time.time()
        marks: dict[str, float] = {}
        pending = list(steps)
        while len({key for key, _ in tail.seen}) < len(staged):
            if time.time() - started > WAIT_S:
                raise RuntimeError(f"compress did not finish; see {logs}")
            dead_workers(workers, logs)
            if pending and time.time() - started >= pending[0][0]:
                _, delta = pending.pop(0)
                before = len(workers.workers)
                if delta > 0:
                    for _ in range(delta):
                        workers.add(STAGE)
                else:
                    for worker in workers.workers[delta:]:
                        workers.retire(worker)
                marks[f"{before} -> {len(workers.workers)}"] = time.time()
            tail.read()
        elapsed = time.time() - started
        return (
            elapsed,
            [(k, t - started) for k, t in tail.seen],
            {step: (t - started, t) for step, t in marks.items()},
        )
    finally:
        workers.stop()
        tail.close()


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest time between commits (and from `start` to the first) within [start, end]."""
    inside = sorted(t for t in times if start <= t <= end)
    if not inside:
        return end - start
    points = [start, *inside]
    return max(b - a for a, b in itertools.pairwise(points))


def handovers(logs: Path, since: float) -> list[float]:
    """Per partition that moved after `since` (epoch seconds): the time from its revoke (or
    loss) at the old owner to its assignment at the new one, from the workers' JSON logs."""
    events: list[tuple[float, str, int]] = []
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            message = entry.get("msg")
            if message in ("partitions revoke", "partitions lost"):
                kind = "off"
            elif message == "partitions assigned":
                kind = "on"
            else:
                continue
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            if at >= since:
                events += [(at, kind, partition) for partition in entry.get("partitions", [])]
    gaps: list[float] = []
    off: dict[int, float] = {}
    for at, kind, partition in sorted(events):
        if kind == "off":
            off.setdefault(partition, at)
        elif partition in off:
            gaps.append(at - off.pop(partition))
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--step-s", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        files = photo_set(args.folder, args.count, 0, Path(tmp))
        mp = megapixels(files)
        print(f"{len(files)} photos, {mp:.0f} MP in all", flush=True)
        with (
            loopback_stack(Path(tmp) / "stack") as local,
            fresh_fleet(local, "scale", PARTITIONS) as settings,
        ):
            logs = Path(tmp) / "logs"
            stage_upstream(settings, files, logs)
            staged = staged_inbox(settings)
            print(f"{len(staged)} images wait in {STAGE}'s inbox", flush=True)
            rates = {}
            for workers in (1, 2):
                seconds, done, _ = trial(settings, staged, logs, workers, [])
                rates[workers] = len(files) / seconds
                print(
                    f"{STAGE} x{workers}: {seconds:6.1f} s  {rates[workers]:5.2f} images/s  "
                    f"{mp / seconds:5.1f} MP/s",
                    flush=True,
                )
            print(f"ratio two workers / one on the same cores: {rates[2] / rates[1]:.2f}")
            steps = [(args.step_s, +2), (2 * args.step_s, -2)]
            seconds, done, marks = trial(settings, staged, logs, 1, steps)
            per_key = Counter(key for key, _ in done)
            twice = sum(1 for n in per_key.values() if n > 1)
            print(
                f"{STAGE} 1 -> 3 -> 1 (steps every {args.step_s:g} s): {seconds:.1f} s, "
                f"{len(per_key)} of {len(files)} images done, {twice} done twice"
            )
            times = [t for _, t in done]
            for step, (at, wall) in marks.items():
                before = longest_gap(times, max(0.0, at - args.step_s), at)
                after = longest_gap(times, at, min(seconds, at + args.step_s))
                moved = handovers(logs, wall - 1.0)
                print(
                    f"  {step}: longest time without a commit {after:5.1f} s after the step, "
                    f"{before:5.1f} s in the {args.step_s:g} s before it; "
                    f"{len(moved)} partitions moved, unowned for at most "
                    f"{max(moved, default=0.0):.1f} s (mean {statistics.fmean(moved or [0]):.1f} s)"
                )


if __name__ == "__main__":
    main()
