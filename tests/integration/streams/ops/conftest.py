from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException

from streams.app.settings import Settings
from streams.config.topics import STAGES, Topics
from streams.io import clients
from streams.io.topic_reader import topic_end_offsets
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import fleet_settings, init_fleet

READY_TIMEOUT_S = 60


def _wait_for_leaders(settings: Settings) -> None:
    """Until every topic of the fleet answers for its offsets: a topic created a moment ago
    may still be electing its partitions' leaders, and a read then fails."""
    t = Topics(settings.topic_prefix)
    names = [*(t.inbox(s) for s in STAGES), t.done, t.dlq, t.metadata]
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.ready")
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while names:
            try:
                if topic_end_offsets(consumer, names[0]):
                    names.pop(0)
                    continue
            except KafkaException:
                pass
            assert time.monotonic() < deadline, f"{names[0]} has no leaders after 60 s"
            time.sleep(0.2)
    finally:
        consumer.close()


@pytest.fixture
def fleet(stack: Stack, unique_name: Callable[[str], str]) -> Settings:
    """A fleet on its own topics and buckets, initialised with `pixelfleet init`, its
    topics ready to read."""
    settings = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(settings)
    _wait_for_leaders(settings)
    return settings
