"""A quick proof that a stack is usable: one Kafka transaction and one S3 round trip."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic
from pydantic import SecretStr

from streams.config.settings import KafkaSettings, S3Settings
from streams.io import clients

SMOKE_TOPIC = "pixelfleet.smoke"
SMOKE_BUCKET = "pixelfleet-smoke"


def smoke_check(bootstrap: str, endpoint: str, access_key: str, secret_key: str) -> Iterator[str]:
    kafka = KafkaSettings(bootstrap=bootstrap)
    s3 = S3Settings(endpoint=endpoint, access_key=access_key, secret_key=SecretStr(secret_key))
    nonce = secrets.token_hex(8).encode()

    admin = clients.admin(kafka)
    if SMOKE_TOPIC not in admin.list_topics(timeout=10).topics:
        try:
            admin.create_topics([NewTopic(SMOKE_TOPIC, 1, 1)])[SMOKE_TOPIC].result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    producer = clients.transactional_producer(kafka, f"pixelfleet-smoke-{nonce.decode()}")
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(SMOKE_TOPIC, key=b"smoke", value=nonce)
    producer.commit_transaction(30)
    yield f"kafka {bootstrap}: committed a transaction on {SMOKE_TOPIC}"

    consumer = clients.consumer(kafka, f"pixelfleet-smoke-{nonce.decode()}")
    consumer.subscribe([SMOKE_TOPIC])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() == nonce:
                break
        else:
            raise RuntimeError(
                f"the committed message never reached a read_committed consumer on {SMOKE_TOPIC}"
            )
    finally:
        consumer.close()
    yield "kafka: read it back with isolation.level=read_committed"

    client = clients.s3(s3)
    if not client.bucket_exists(SMOKE_BUCKET):
        client.make_bucket(SMOKE_BUCKET)
    key = f"smoke/{nonce.decode()}"
    client.put_object(SMOKE_BUCKET, key, io.BytesIO(nonce), len(nonce))
    body = clients.read_object(client, SMOKE_BUCKET, key)
    client.remove_object(SMOKE_BUCKET, key)
    if body != nonce:
        raise RuntimeError(f"s3://{SMOKE_BUCKET}/{key} came back different from what was written")
    yield f"s3 {endpoint}: wrote, read and removed s3://{SMOKE_BUCKET}/{key}"
