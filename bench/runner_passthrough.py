"""Events per second of one stage worker with transactions, against raw confluent-kafka.

    python bench/runner_passthrough.py [--events 100000] [--partitions 4] [--batch-max N]

Uses the stack named by PIXELFLEET_KAFKA_BOOTSTRAP / PIXELFLEET_S3_ENDPOINT, or starts
a throwaway local one. Both sides read the same small ImageSubmitted events:

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

It prints the rates and the ratios runner/raw and runner/quix; it asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaError

from schemas.events import Envelope, ImageSubmitted, ObjectRef, Source, encode
from streams.app import admin
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.devstack.stack import stack_for_tools
from streams.io import clients
from streams.runner.records import now_iso
from streams.runner.stage import StageContext, StageResult, StageSpec
from streams.runner.worker import StageWorker


def passthrough(envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
    return StageResult(envelope)


PASSTHROUGH = StageSpec("validate", passthrough, reads_blob=False)


def fill(settings: Settings, events: int) -> None:
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
        while True:
            try:
                producer.produce(topic, key=image_id.encode(), value=encode(event))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def raw_rate(settings: Settings, events: int) -> float:
    topics = Topics(settings.topic_prefix)
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.raw")
    producer = clients.producer(settings.kafka, **{"linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([topics.ingest])
    seen, started = 0, 0.0
    while seen < events:
        batch = consumer.consume(500, timeout=1.0)
        if batch and not started:
            started = time.perf_counter()
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(msg.error())
                continue
            while True:
                try:
                    producer.produce(topics.done, key=msg.key(), value=msg.value())
                    break
                except BufferError:
                    producer.poll(0.05)
            seen += 1
        producer.poll(0)
        if batch:
            consumer.commit(asynchronous=True)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


def runner_rate(settings: Settings, events: int) -> float:
    worker = StageWorker(settings, PASSTHROUGH)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    while worker.stats.committed == 0:
        time.sleep(0.001)
    started = time.perf_counter()
    first = worker.stats.committed
    while worker.stats.committed < events:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    worker.stop()
    thread.join(60)
    return (events - first) / elapsed


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


def quix_rate(settings: Settings, events: int) -> float:
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
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    line = next(x for x in done.stdout.splitlines() if x.startswith("events/s "))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-max", type=int, default=None, help="default: the settings'")
    parser.add_argument("--no-quix", action="store_true", help="skip the quix-streams side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, stack_for_tools(Path(tmp) / "stack") as base:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
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
        admin.ensure_topics(
            clients.admin(settings.kafka),
            Topics(prefix).to_create(("validate", "categorize"), args.partitions, 1),
        )
        print(f"filling {prefix}.ingest with {args.events} events ({args.partitions} partitions)")
        fill(settings, args.events)
        raw = raw_rate(settings, args.events)
        print(f"raw confluent-kafka consume+produce : {raw:10,.0f} events/s")
        ours = runner_rate(settings, args.events)
        print(f"pixelfleet runner, transactional    : {ours:10,.0f} events/s")
        print(f"ratio runner/raw                    : {ours / raw:10.2f}")
        if not args.no_quix:
            quix = quix_rate(settings, args.events)
            print(f"quix-streams {QUIX_VERSION}, exactly-once : {quix:10,.0f} events/s")
            print(f"ratio runner/quix                   : {ours / quix:10.2f} (target 1.5)")


if __name__ == "__main__":
    main()
