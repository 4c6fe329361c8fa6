"""Events per second of one stage worker with transactions, against raw confluent-kafka.

    python bench/runner_passthrough.py [--events 100000] [--partitions 4] [--batch-max N]
                                       [--wait-s 600] [--no-quix]

Uses the stack named by PIXELFLEET_KAFKA_BOOTSTRAP / PIXELFLEET_S3_ENDPOINT (refused unless
it is on this machine), or starts a throwaway local one. Every side reads the same small
ImageSubmitted events:

* raw: a consumer that produces every event to an output topic with an idempotent
  producer and commits offsets asynchronously: no transactions, no decoding;
* runner: pixelfleet's StageWorker with a passthrough stage: every batch decoded, an
  envelope and a full metadata record produced per event (two records out per event),
  and the consumed offsets committed inside one Kafka transaction.
* quix (unless --no-quix): a quix-streams Application with
  processing_guarantee="exactly-once" doing the same work (decode the JSON, produce two
  records per event), from bench/quix_passthrough.py in a virtual environment of its own
  (.venv-quix, made with `pip install quixstreams==QUIX_VERSION` on first use: quix-streams
  pins older confluent-kafka and pydantic than ours).

Every side is timed the same way, from outside: a read_committed consumer in a process of
its own (this script with --clock) follows the side's output topic from its end (raw: the
done topic; runner and quix: the metadata topic, one record per event on each) and notes
when records become visible. A side's rate is the events that became visible after the
first ones it saw, over the time from then to the last event: start-up, group joins and
the first transaction are outside every clock alike, and a record counts once a consumer
downstream could read it (for the transactional sides, once its transaction committed).
Each side has --wait-s seconds; a side that dies or runs out of time fails the bench. The
topics and consumer groups of the run are deleted at the end.

It prints the rates and the ratios runner/raw and runner/quix; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchstack import loopback_stack, new_prefix, remove_prefix
from confluent_kafka import KafkaError, Producer, TopicPartition

from schemas.events import Envelope, ImageSubmitted, ObjectRef, Source, encode
from streams.app import admin
from streams.app.settings import Settings
from streams.config.settings import KafkaSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import topic_end_offsets
from streams.runner.records import now_iso
from streams.runner.stage import StageContext, StageResult, StageSpec
from streams.runner.worker import StageWorker

CLOCK_START_S = 60.0  # for the clock process to start and follow its topic
STOP_S = 60.0  # for a side to stop once the clock has seen everything


def passthrough(envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
    return StageResult(envelope)


PASSTHROUGH = StageSpec("validate", passthrough, reads_blob=False)


def produce_by(
    producer: Producer, deadline: float, topic: str, key: bytes | None, value: bytes | None
) -> None:
    """produce(), waiting for room in a full queue until the deadline, not for ever."""
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: the producer's queue stayed full") from None
            producer.poll(0.05)


def flush_by(producer: Producer, deadline: float, what: str) -> None:
    left = producer.flush(max(1.0, deadline - time.monotonic()))
    if left:
        raise RuntimeError(f"{what}: {left} records still not acknowledged by the broker")


def fill(settings: Settings, events: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    producer = clients.producer(settings.kafka, **{"linger.ms": 20, "compression.type": "lz4"})
    topic = Topics(settings.topic_prefix).ingest
    bucket = settings.buckets.incoming
    for i in range(events):
        image_id = f"img-{i:08d}"
        event = ImageSubmitted(
            image_id=image_id,
            source=Source(object=ObjectRef(bucket=bucket, key=f"{image_id}/a.jpg")),
            submitted_at=now_iso(),
        )
        produce_by(producer, deadline, topic, image_id.encode(), encode(event))
    # The sides would wait for events that never came: fail here, saying why.
    flush_by(producer, deadline, f"filling {topic} with {events} events")


# -- the clock: one outside reader, the same for every side ------------------------------


def clock_main(bootstrap: str, topic: str, events: int, wait_s: float, result: Path) -> int:
    """The --clock process: follows `topic` from its end (read_committed) until `events`
    distinct keys are visible; writes {records, seconds} past the first visible ones."""
    consumer = clients.consumer(KafkaSettings(bootstrap=bootstrap), f"{topic}.clock")
    try:
        ends = topic_end_offsets(consumer, topic)
        if not ends:
            print(f"clock: no topic {topic}", file=sys.stderr)
            return 1
        consumer.assign([TopicPartition(topic, p, high) for p, (_low, high) in ends.items()])
        result.with_suffix(".ready").touch()
        keys: set[bytes | None] = set()
        first_at = now = 0.0
        first = 0
        deadline = time.monotonic() + wait_s
        while len(keys) < events:
            if time.monotonic() > deadline:
                print(f"clock: {len(keys)} of {events} in {wait_s:.0f} s", file=sys.stderr)
                return 1
            # Never more than is missing: the last call returns with the last record
            # instead of waiting out its timeout.
            batch = consumer.consume(min(1000, events - len(keys)), timeout=0.2)
            now = time.perf_counter()
            keys.update(m.key() for m in batch if m.error() is None)
            if not first and keys:
                # The whole first burst is outside the clock, not only the first call's
                # share of it: a transaction of 2,500 events read 1,000 at a time would
                # count 1,500 events as made in no time.
                while len(keys) < events:
                    more = consumer.consume(min(1000, events - len(keys)), timeout=0)
                    if not more:
                        break
                    keys.update(m.key() for m in more if m.error() is None)
                first_at, first = time.perf_counter(), len(keys)
    finally:
        consumer.close()
    result.write_text(json.dumps({"records": len(keys) - first, "seconds": now - first_at}))
    return 0


class OutputClock:
    """The clock process of one side; started before the side, so it misses nothing."""

    def __init__(self, settings: Settings, topic: str, events: int, wait_s: float) -> None:
        self.wait_s = wait_s
        self.events = events
        self.result = Path(tempfile.mkdtemp(prefix="clock-")) / "result.json"
        command = [sys.executable, __file__, "--clock", topic, str(events), str(wait_s)]
        command += [str(self.result), settings.kafka.bootstrap]
        self.proc = subprocess.Popen(command)
        deadline = time.monotonic() + CLOCK_START_S
        while not self.result.with_suffix(".ready").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the clock on {topic} did not start")
            time.sleep(0.05)

    def rate(self, trouble: Callable[[], str | None]) -> float:
        """Events/s once the clock has seen every event. `trouble` says why the side can no
        longer finish (it died, say), or None; then the bench fails at once, saying so."""
        deadline = time.monotonic() + self.wait_s + CLOCK_START_S
        while self.proc.poll() is None:
            why = trouble()
            if why is None and time.monotonic() > deadline:
                why = "the clock did not finish"
            if why is not None:
                self.close()
                raise RuntimeError(why)
            time.sleep(0.25)
        if self.proc.returncode:
            raise RuntimeError(f"the side did not finish in {self.wait_s:.0f} s (see above)")
        got = json.loads(self.result.read_text())
        if got["records"] <= 0 or got["seconds"] <= 0:
            raise RuntimeError("every event became visible at once: too few --events to time")
        if got["records"] < self.events / 2:
            # A few large transactions: most of the work is in the first burst, outside
            # the clock, and the rate says little.
            print(
                f"  warning: only {got['records']} of {self.events} events were timed (the rest "
                "became visible in the first burst); give more --events",
                flush=True,
            )
        return float(got["records"] / got["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.result.parent, ignore_errors=True)


class SideThread(threading.Thread):
    """A side's loop on a thread, its error kept for the clock's trouble check."""

    def __init__(self, body: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.body = body
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as exc:
            self.error = exc

    def trouble(self, must_run: bool) -> str | None:
        if self.error is not None:
            return f"the side failed: {type(self.error).__name__}: {self.error}"
        if must_run and not self.is_alive():
            return "the side stopped before every event was out"
        return None


# -- the sides ------------------------------------------------------------------------


def raw_loop(settings: Settings, events: int, wait_s: float) -> None:
    topics = Topics(settings.topic_prefix)
    deadline = time.monotonic() + wait_s
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.raw")
    producer = clients.producer(settings.kafka, **{"linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([topics.ingest])
    seen = 0
    try:
        while seen < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw: {seen} of {events} events in {wait_s:.0f} s")
            batch = consumer.consume(500, timeout=1.0)
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(error)
                    continue
                produce_by(producer, deadline, topics.done, msg.key(), msg.value())
                seen += 1
            producer.poll(0)
            if batch:
                consumer.commit(asynchronous=True)
        flush_by(producer, deadline, "raw")
    finally:
        consumer.close()


def raw_rate(settings: Settings, events: int, wait_s: float) -> float:
    clock = OutputClock(settings, Topics(settings.topic_prefix).done, events, wait_s)
    side = SideThread(lambda: raw_loop(settings, events, wait_s))
    side.start()
    try:
        return clock.rate(lambda: side.trouble(must_run=False))
    finally:
        clock.close()
        side.join(STOP_S)


def runner_rate(settings: Settings, events: int, wait_s: float) -> float:
    clock = OutputClock(settings, Topics(settings.topic_prefix).metadata, events, wait_s)
    try:
        worker = StageWorker(settings, PASSTHROUGH)
    except BaseException:
        clock.close()
        raise
    side = SideThread(worker.run)
    side.start()
    try:
        # The worker never stops by itself: a thread that ended is a worker that failed.
        return clock.rate(lambda: side.trouble(must_run=True))
    finally:
        clock.close()
        worker.stop()
        side.join(STOP_S)
        if side.is_alive():
            print(f"warning: the stage worker did not stop in {STOP_S:.0f} s", file=sys.stderr)


QUIX_VERSION = "3.28.1"
ROOT = Path(__file__).resolve().parents[1]
QUIX_VENV = ROOT / ".venv-quix"


def quix_python() -> Path:
    """The interpreter of .venv-quix, made (once) with quix-streams installed."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"]
        subprocess.run(pip, check=True)
    return python


def quix_rate(settings: Settings, events: int, wait_s: float, log: Path) -> tuple[float, str]:
    """The outside clock's rate, and the line quix_passthrough prints from its own count."""
    topics = Topics(settings.topic_prefix)
    command = [
        str(quix_python()),
        str(ROOT / "bench" / "quix_passthrough.py"),
        settings.kafka.bootstrap,
        topics.ingest,
        topics.inbox("categorize"),
        topics.metadata,
        str(events),
        f"{settings.topic_prefix}.quix",
    ]
    clock = OutputClock(settings, topics.metadata, events, wait_s)
    try:
        with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall quix
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    except BaseException:
        clock.close()
        raise

    def trouble() -> str | None:
        code = proc.poll()  # 0: it stopped after the last event, as it should
        if code in (None, 0):
            return None
        return f"quix exited {code}:\n{log.read_text(errors='replace')[-2000:]}"

    try:
        rate = clock.rate(trouble)
    finally:
        clock.close()
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    own = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("events/s ")]
    return rate, own[-1].split()[1] if own else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-max", type=int, default=None, help="default: the settings'")
    parser.add_argument("--no-quix", action="store_true", help="skip the quix-streams side")
    parser.add_argument(
        "--wait-s", type=float, default=600.0, help="the longest the filling or one side may take"
    )
    parser.add_argument("--clock", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clock:
        topic, events, wait_s, result, bootstrap = args.clock
        sys.exit(clock_main(bootstrap, topic, int(events), float(wait_s), Path(result)))
    with tempfile.TemporaryDirectory() as tmp, loopback_stack(Path(tmp) / "stack") as base:
        prefix = new_prefix("bench-")
        settings = base.model_copy(
            update={
                "topic_prefix": prefix,
                "topics": base.topics.model_copy(update={"partitions": args.partitions}),
                "runner": base.runner.model_copy(
                    update={
                        "metrics_port": 0,
                        "batch_max": args.batch_max or base.runner.batch_max,
                        "replica_id": "bench",
                    }
                ),
            }
        )
        try:
            admin.ensure_topics(
                clients.admin(settings.kafka),
                Topics(prefix).to_create(("validate", "categorize"), args.partitions, 1),
            )
            print(
                f"filling {prefix}.ingest with {args.events} events ({args.partitions} partitions)"
            )
            fill(settings, args.events, args.wait_s)
            raw = raw_rate(settings, args.events, args.wait_s)
            print(f"raw confluent-kafka consume+produce : {raw:10,.0f} events/s", flush=True)
            ours = runner_rate(settings, args.events, args.wait_s)
            print(f"pixelfleet runner, transactional    : {ours:10,.0f} events/s", flush=True)
            print(f"ratio runner/raw                    : {ours / raw:10.2f}")
            if not args.no_quix:
                log = Path(tmp) / "quix.log"
                quix, own = quix_rate(settings, args.events, args.wait_s, log)
                print(
                    f"quix-streams {QUIX_VERSION}, exactly-once : {quix:10,.0f} events/s "
                    f"(its own count, first to last event processed: {own}/s)"
                )
                print(f"ratio runner/quix                   : {ours / quix:10.2f} (target 1.5)")
        finally:
            remove_prefix(settings)


if __name__ == "__main__":
    main()
