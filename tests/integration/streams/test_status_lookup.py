"""`pixelfleet status IMAGE_ID` on a big transactional partition: it stops at the
partition's end (a commit marker that is never delivered) instead of its deadline, and
returns the image's newest record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from confluent_kafka.admin import NewTopic

from schemas.events import ImageRecord, encode
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import image_record, watermarks
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import ROOT, settings_env

RECORDS = 10_000
PER_TRANSACTION = 500
IMAGES = 1_000  # each image has ten versions; the target's newest is the last record


def _fill(settings: Settings, topic: str, target: str) -> str:
    """10,000 records in transactions of 500; the last one is the target's newest."""
    producer = clients.transactional_producer(settings.kafka, f"{topic}.filler")
    producer.init_transactions(30)
    newest = ""
    for start in range(0, RECORDS, PER_TRANSACTION):
        producer.begin_transaction()
        for n in range(start, start + PER_TRANSACTION):
            image_id = target if n % IMAGES == 0 or n == RECORDS - 1 else f"img-{n % IMAGES:04d}"
            stamp = f"2026-01-01T00:00:{n // 1000:02d}.{n % 1000:03d}Z"
            record = ImageRecord(image_id=image_id, status="processing", updated_at=stamp)
            producer.produce(topic, key=image_id.encode(), value=encode(record), partition=0)
            if image_id == target:
                newest = stamp
        producer.commit_transaction(30)
    return newest


def test_status_of_one_image_reads_to_the_partitions_end_and_returns_the_newest(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("pf")
    settings = Settings(kafka=stack.kafka, s3=stack.s3, topic_prefix=prefix)
    topic = Topics(prefix).metadata
    admin = clients.admin(settings.kafka)
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    target = "target-image"
    newest = _fill(settings, topic, target)
    consumer = clients.consumer(settings.kafka, f"{prefix}.check")
    try:
        low, high = watermarks(consumer, topic, 0)
    finally:
        consumer.close()
    # 20 transactions: the commit markers take offsets too, and the last offset is one.
    assert (low, high) == (0, RECORDS + RECORDS // PER_TRANSACTION)

    started = time.monotonic()
    found = image_record(settings, admin, target, timeout_s=30)
    seconds = time.monotonic() - started
    print(f"lookup in a {RECORDS}-record partition: {seconds:.2f} s")
    assert found.complete
    assert found.record is not None and found.record.updated_at == newest
    # It ended at the partition's end, not at its 30 s deadline.
    assert seconds < 15

    # The command says the same, and says nothing about an incomplete read.
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "status", target],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["updated_at"] == newest
    assert "warning" not in done.stderr
