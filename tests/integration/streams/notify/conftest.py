"""Fixtures of the notify tests: a topic prefix of its own per test, with its done and
dead-letter topics created on the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config.topics import Topics
from tests.integration.streams.notify.kit import PARTITIONS


@pytest.fixture
def prefix(kafka_admin: AdminClient) -> str:
    """A topic prefix of its own, with its done and dead-letter topics created."""
    name = f"notify{uuid.uuid4().hex[:8]}"
    topics = Topics(name)
    new = [
        NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
        for t in (topics.done, topics.dlq)
    ]
    for future in kafka_admin.create_topics(new).values():
        future.result(timeout=30)
    return name
