"""Kafka and S3 clients built from the settings model, and nowhere else."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from minio import Minio

from streams.settings import KafkaSettings, S3Settings


def admin(kafka: KafkaSettings) -> AdminClient:
    conf: dict[str, Any] = dict(kafka.librdkafka())
    return AdminClient(conf)


def transactional_producer(kafka: KafkaSettings, transactional_id: str, **extra: Any) -> Producer:
    conf: dict[str, Any] = {
        **kafka.librdkafka(),
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        **extra,
    }
    return Producer(conf)


def consumer(kafka: KafkaSettings, group_id: str, **extra: Any) -> Consumer:
    conf: dict[str, Any] = {
        **kafka.librdkafka(),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }
    return Consumer(conf)


def s3(s3_settings: S3Settings) -> Minio:
    return Minio(
        s3_settings.host,
        access_key=s3_settings.access_key,
        secret_key=s3_settings.secret_key.get_secret_value(),
        secure=s3_settings.secure,
        region=s3_settings.region,
    )
