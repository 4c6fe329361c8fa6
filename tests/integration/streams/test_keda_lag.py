"""The lag KEDA's kafka scaler computes for a stage (offsetResetPolicy earliest, as the
chart sets it) equals what `pixelfleet status` reports, on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import group_lag, topic_end_offsets
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import ROOT, fleet_settings, init_fleet, settings_env


def keda_lag(settings: Settings, topic: str, group: str) -> int:
    """KEDA v2.18's arithmetic, written from its kafka scaler: per partition, latest offset
    minus the committed offset, or the whole latest offset where the group committed none."""
    admin = clients.admin(settings.kafka)
    request = ConsumerGroupTopicPartitions(group)
    [future] = admin.list_consumer_group_offsets([request]).values()
    committed = {tp.partition: tp.offset for tp in future.result().topic_partitions}
    consumer = clients.consumer(settings.kafka, f"{group}.probe")
    try:
        ends = topic_end_offsets(consumer, topic)
    finally:
        consumer.close()
    total = 0
    for partition, (_low, latest) in ends.items():
        offset = committed.get(partition, -1)
        total += latest if offset < 0 else max(0, latest - offset)
    return total


def test_status_reports_the_lag_keda_computes(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    topics = Topics(fleet.topic_prefix)
    inbox, group = topics.inbox("categorize"), topics.group("categorize")
    producer = clients.producer(fleet.kafka)
    for partition, count in {0: 10, 1: 7, 2: 5}.items():  # partition 3 stays empty
        for i in range(count):
            producer.produce(inbox, key=f"k{i}", value=b"{}", partition=partition)
    assert producer.flush(30) == 0
    # The group has committed on partitions 0 and 2 only, as a worker that never got 1 and 3.
    member = clients.consumer(fleet.kafka, group)
    try:
        member.commit(
            offsets=[TopicPartition(inbox, 0, 4), TopicPartition(inbox, 2, 5)], asynchronous=False
        )
    finally:
        member.close()
    admin = clients.admin(fleet.kafka)
    # Retention moving the log start of a partition the group never committed.
    for future in admin.delete_records([TopicPartition(inbox, 1, 3)]).values():
        future.result()

    expected = (10 - 4) + 7 + 0 + 0  # KEDA counts partition 1 from 0, not from 3
    assert keda_lag(fleet, inbox, group) == expected
    assert group_lag(fleet, "categorize", inbox, group).lag == expected
    shown = subprocess.run(
        [sys.executable, "-m", "streams.cli", "status"],
        cwd=ROOT,
        env={**os.environ, **settings_env(fleet), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    row = next(line for line in shown.splitlines() if f" {inbox} " in line)
    assert row.replace("│", " ").split()[-1] == str(expected)
