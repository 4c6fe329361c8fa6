"""Kafka and S3 clients built from the settings model, and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import urllib3
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from minio import Minio

from streams.config.settings import KafkaSettings, S3Settings


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(_base(kafka))


# The Java client's hash: an image's key lands on the same partition whoever produces it.
PARTITIONER = "murmur2_random"
# librdkafka's own log lines go through Python logging (JSON lines in a worker).
LIBRDKAFKA_LOG = logging.getLogger("pixelfleet.librdkafka")


def _base(kafka: KafkaSettings) -> dict[str, Any]:
    return {**kafka.librdkafka(), "logger": LIBRDKAFKA_LOG}


def producer(kafka: KafkaSettings, **extra: Any) -> Producer:
    """An idempotent producer: retries never duplicate or reorder a partition's records."""
    conf: dict[str, Any] = {
        **_base(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": PARTITIONER,
        **extra,
    }
    return Producer(conf)


def transactional_producer(kafka: KafkaSettings, transactional_id: str, **extra: Any) -> Producer:
    return producer(kafka, **{"transactional.id": transactional_id, **extra})


def consumer(kafka: KafkaSettings, group_id: str, **extra: Any) -> Consumer:
    conf: dict[str, Any] = {
        **_base(kafka),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }
    return Consumer(conf)


def s3(s3_settings: S3Settings) -> Minio:
    # Bounded timeouts and a few quick retries: an S3 outage must surface as an error the
    # runner can retry, not as a call that hangs for minutes.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        maxsize=32,
        retries=urllib3.Retry(
            total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504], allowed_methods=None
        ),
    )
    return Minio(
        s3_settings.host,
        access_key=s3_settings.access_key,
        secret_key=s3_settings.secret_key.get_secret_value(),
        secure=s3_settings.secure,
        region=s3_settings.region,
        http_client=http,
    )


def read_object(client: Minio, bucket: str, key: str) -> bytes:
    """The whole object. The response is closed and its connection goes back to the pool
    whatever happens, so a failed read never leaks a connection."""
    response = client.get_object(bucket, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()
