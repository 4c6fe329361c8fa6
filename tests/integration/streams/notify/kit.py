"""Helpers of the notify tests: the worker on a thread of the test process against the real
broker, records to publish, and reading back topics and committed offsets."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from confluent_kafka import Consumer, TopicPartition

from schemas.events import Category, DeadLetter, ImageProcessed, encode
from streams.config.notify import NotifySettings, WebhookSubscription
from streams.config.settings import FleetSettings, RunnerSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import watermarks
from streams.notify.worker import NotifyWorker, group
from tests.conftest import Stack
from tests.integration.streams.notify.receivers import Receiver

SECRET = b"integration-secret"
PARTITIONS = 3
STOP_S = 30.0

# Short everything: a test's whole story (breaker, retries, budget) fits in seconds.
FAST: dict[str, Any] = {
    "allow_networks": ("127.0.0.0/8",),
    "connect_timeout_s": 0.5,
    "read_timeout_s": 1.0,
    "request_timeout_s": 1.0,
    "max_attempts": 5,
    "retry_budget_s": 20.0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "breaker_failures": 3,
    "breaker_reset_s": 1.0,
    "commit_interval_s": 0.2,
    "drain_s": 2.0,
}


def subscription(name: str, receiver: Receiver, **fields: Any) -> WebhookSubscription:
    return WebhookSubscription(
        name=name,
        url=receiver.url,
        secret=SECRET.decode(),
        **fields,  # type: ignore[arg-type]
    )


def fleet_settings(
    stack: Stack, prefix: str, subs: list[WebhookSubscription], **notify: Any
) -> FleetSettings:
    ports = tuple(int(s.url.split(":")[2].split("/")[0]) for s in subs)
    section = NotifySettings(
        subscriptions=tuple(subs), **{"allowed_ports": ports, **FAST, **notify}
    )
    runner = RunnerSettings(metrics_port=0, session_timeout_ms=6000, max_poll_interval_ms=6000)
    return FleetSettings(kafka=stack.kafka, topic_prefix=prefix, notify=section, runner=runner)


@contextmanager
def running(settings: FleetSettings) -> Iterator[NotifyWorker]:
    worker = NotifyWorker(settings)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="notify-test", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(STOP_S)
        assert not thread.is_alive(), "the notify worker did not stop"
        assert not errors, errors


def done_record(
    image_id: str, *, category: str | None = "rings", duplicate_of: str | None = None
) -> bytes:
    return encode(
        ImageProcessed(
            image_id=image_id,
            status="done",
            finished_at="2026-12-02T10:00:00.000Z",
            category=Category(name=category, score=0.9) if category else None,
            duplicate_of=duplicate_of,
        )
    )


def rejected_done_record(image_id: str) -> bytes:
    return encode(
        ImageProcessed(image_id=image_id, status="rejected", finished_at="2026-12-02T10:00:00Z")
    )


def letter_record(image_id: str) -> bytes:
    return encode(
        DeadLetter(
            image_id=image_id,
            stage="validate",
            reason_class="undecodable",
            reason="cannot identify image file",
            topic="x.ingest",
            partition=0,
            offset=1,
            attempts=1,
            at="2026-12-02T10:00:01.000Z",
            original="{}",
        )
    )


def publish(stack: Stack, records: list[tuple[str, str, bytes]]) -> None:
    """(topic, key, value) records, flushed."""
    producer = clients.producer(stack.kafka)
    for topic, key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def read_topic(
    stack: Stack, topic: str, count: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The first `count` records of a topic, JSON-decoded; fewer when the time runs out."""
    consumer = Consumer(
        {
            **stack.kafka.librdkafka(),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    end = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < end:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            found.append(msgspec.json.decode(message.value() or b"{}"))
    finally:
        consumer.close()
    return found


def committed_everything(stack: Stack, prefix: str) -> bool:
    """Whether the notify group's committed offsets reach the end of both topics."""
    topics = Topics(prefix)
    consumer = Consumer({**stack.kafka.librdkafka(), "group.id": group(prefix)})
    try:
        parts = [TopicPartition(t, p) for t in (topics.done, topics.dlq) for p in range(PARTITIONS)]
        committed = consumer.committed(parts, timeout=10)
        for part in committed:
            _low, high = watermarks(consumer, part.topic, part.partition)
            if high > 0 and part.offset != high:
                return False
        return True
    finally:
        consumer.close()


def eventually(check: Callable[[], bool], timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()
