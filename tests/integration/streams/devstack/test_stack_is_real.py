"""The session stack is a real Kafka broker and a real S3 server, with their real semantics."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from minio import Minio

from streams.io import clients
from tests.conftest import Stack


def _drain(
    consumer: Consumer, expect: int, timeout_s: float = 30
) -> list[tuple[bytes, bytes, int]]:
    """(key, value, offset) of every record until `expect` arrived or the topic went quiet."""
    got: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            # Once enough arrived, wait a little longer to prove nothing more comes.
            if len(got) >= expect:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 2:
                    break
            continue
        assert msg.error() is None, msg.error()
        got.append((msg.key(), msg.value(), msg.offset()))
    return got


def test_transaction_commit_is_visible_and_abort_is_not(
    stack: Stack, new_topic: Callable[..., str], new_group: Callable[[], str]
) -> None:
    topic = new_topic()
    producer = clients.transactional_producer(stack.kafka, new_group())
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=f"img-{i}".encode(), value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, key=b"img-x", value=b"aborted-x")
    producer.produce(topic, key=b"img-y", value=b"aborted-y")
    producer.flush(30)  # the aborted records really reach the log before the abort
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, key=b"img-5", value=b"committed-5")
    producer.commit_transaction(30)

    committed = clients.consumer(stack.kafka, new_group())
    committed.subscribe([topic])
    seen = _drain(committed, expect=6)
    committed.close()
    assert [(k, v) for k, v, _ in seen] == [
        (f"img-{i}".encode(), f"committed-{i}".encode()) for i in range(6)
    ]

    uncommitted = clients.consumer(
        stack.kafka, new_group(), **{"isolation.level": "read_uncommitted"}
    )
    uncommitted.subscribe([topic])
    raw = _drain(uncommitted, expect=8)
    uncommitted.close()
    assert sorted(v for _, v, _ in raw) == sorted(
        [f"committed-{i}".encode() for i in range(6)] + [b"aborted-x", b"aborted-y"]
    )
    # Commit/abort markers take offsets too: the committed view has gaps where they sit.
    offsets = [o for _, _, o in seen]
    assert offsets[:5] == [0, 1, 2, 3, 4]
    assert offsets[5] > 7


def test_compacted_topic_has_compact_cleanup_policy(
    new_topic: Callable[..., str], kafka_admin: AdminClient
) -> None:
    topic = new_topic(
        partitions=3, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    )
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["min.compaction.lag.ms"].value == "0"
    meta = kafka_admin.list_topics(topic, timeout=10).topics[topic]
    assert len(meta.partitions) == 3


def test_committed_offsets_survive_a_consumer_restart(
    stack: Stack, new_topic: Callable[..., str], new_group: Callable[[], str]
) -> None:
    topic, group = new_topic(), new_group()
    producer = clients.transactional_producer(stack.kafka, new_group())
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=f"k{i}".encode(), value=str(i).encode())
    producer.commit_transaction(30)

    first = clients.consumer(stack.kafka, group)
    first.subscribe([topic])
    read: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(read) < 4 and time.monotonic() < deadline:
        msg = first.poll(0.5)
        if msg is not None and msg.error() is None:
            read.append(msg.value())
            last = msg
    assert read == [b"0", b"1", b"2", b"3"]
    first.commit(message=last, asynchronous=False)
    first.close()

    second = clients.consumer(stack.kafka, group)
    committed = second.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 4
    second.subscribe([topic])
    rest = [v for _, v, _ in _drain(second, expect=6)]
    second.close()
    assert rest == [str(i).encode() for i in range(4, 10)]


def test_minio_round_trip_of_a_5_mb_object(s3_client: Minio, new_bucket: Callable[[], str]) -> None:
    bucket = new_bucket()
    payload = os.urandom(5 * 1024 * 1024)
    s3_client.put_object(
        bucket,
        "big/object.bin",
        io.BytesIO(payload),
        len(payload),
        content_type="application/octet-stream",
    )
    stat = s3_client.stat_object(bucket, "big/object.bin")
    assert stat.size == len(payload)
    body = clients.read_object(s3_client, bucket, "big/object.bin")
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert [o.object_name for o in s3_client.list_objects(bucket, recursive=True)] == [
        "big/object.bin"
    ]
