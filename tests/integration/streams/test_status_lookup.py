"""`pixelfleet status IMAGE_ID` on a big transactional partition: it stops at the
partition's end (a commit marker that is never delivered) instead of its deadline, and
returns the image's newest record. A catalog that says it has no record is checked against
the topic."""

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
from tests.support.http_servers import LoopbackServer

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


def _one_partition_fleet(stack: Stack, prefix: str) -> tuple[Settings, str]:
    """Settings under the test's own prefix, and its metadata topic of one partition."""
    settings = Settings(kafka=stack.kafka, s3=stack.s3, topic_prefix=prefix)
    topic = Topics(prefix).metadata
    admin = clients.admin(settings.kafka)  # held until the futures resolve
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    return settings, topic


def test_status_of_one_image_reads_to_the_partitions_end_and_returns_the_newest(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    settings, topic = _one_partition_fleet(stack, unique_name("pf"))
    prefix = settings.topic_prefix
    admin = clients.admin(settings.kafka)
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


def test_status_reads_the_topic_when_the_catalog_has_no_record(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    settings, topic = _one_partition_fleet(stack, unique_name("pf"))
    record = ImageRecord(image_id="just-written", status="done", updated_at="2026-01-01T00:00Z")
    producer = clients.producer(settings.kafka)
    producer.produce(topic, key=b"just-written", value=encode(record))
    assert producer.flush(30) == 0

    def status(catalog_url: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **settings_env(settings), "PIXELFLEET_CATALOG_URL": catalog_url}
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", "status", "just-written"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    with LoopbackServer() as catalog:
        # A catalog still catching up: its own not_found for an image the topic holds.
        catalog.route(
            "/v1/images/just-written",
            lambda h: h.send(404, b'{"error": "not_found"}', content_type="application/json"),
        )
        behind = status(catalog.url("/"))
        # A URL that already ends in /v1: /v1/v1/images/... is no route of the catalog.
        doubled = status(catalog.url("/v1"))
        assert catalog.paths() == ["/v1/images/just-written", "/v1/v1/images/just-written"]
    for answer in (behind, doubled):
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["status"] == "done"
    assert "the catalog has no record of just-written; reading the metadata topic" in (
        behind.stderr
    )
    assert "warning: the catalog could not be asked" in doubled.stderr
