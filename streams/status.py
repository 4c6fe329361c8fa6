"""What `pixelfleet status` reports: lag per stage (the same sum KEDA computes), DLQ size,
and one image's current record from the compacted metadata topic."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.events import ImageRecord, decoder
from streams import clients
from streams.partitioner import partition_for
from streams.settings import Settings
from streams.topics import STAGES, Topics


@dataclass(frozen=True)
class StageLag:
    stage: str
    topic: str
    group: str
    end: int  # sum of end offsets
    committed: int  # sum of committed offsets (0 where none)
    lag: int


def topic_end_offsets(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        for p in meta.partitions
    }


def group_lag(settings: Settings, stage: str, topic: str, group: str) -> StageLag:
    """End offset minus committed offset, summed over partitions: the figure KEDA's kafka
    scaler computes with offsetResetPolicy earliest, which the chart's autoscaling uses.

    A partition the group never committed counts its whole end offset, as KEDA does, even
    where retention has moved the log start past 0 (the true backlog is then smaller).
    """
    consumer = clients.consumer(settings.kafka, group)
    try:
        ends = topic_end_offsets(consumer, topic)
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    end_sum = committed_sum = lag = 0
    for tp in committed:
        _low, high = ends[tp.partition]
        at = tp.offset if tp.offset >= 0 else 0
        end_sum += high
        committed_sum += max(tp.offset, 0)
        lag += max(0, high - at)
    return StageLag(stage, topic, group, end_sum, committed_sum, lag)


@dataclass(frozen=True)
class TopicCount:
    records: int
    exact: bool  # False: offsets were too many to read; the figure counts markers too


def read_to_end(
    consumer: Consumer, topic: str, ends: dict[int, tuple[int, int]], timeout_s: float
) -> tuple[list[Message], bool]:
    """Every committed record below the given end offsets, and whether all were reached.

    Transaction markers take offsets but are never delivered, so a partition is finished
    when the consumer's position reaches its end, not when a record with that offset arrives.
    """
    left = {p: high for p, (low, high) in ends.items() if high > low}
    consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in left])
    records: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        records.extend(m for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
        for tp in consumer.position([TopicPartition(topic, p) for p in list(left)]):
            if tp.offset >= left[tp.partition]:
                del left[tp.partition]
    return records, not left


def count_records(settings: Settings, topic: str, max_offsets: int = 200_000) -> TopicCount:
    """Committed records in a topic. Transaction markers take offsets too, so offsets
    over-count; read the topic when that is cheap enough, else say the figure is rough."""
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.status-probe")
    try:
        ends = topic_end_offsets(consumer, topic)
        span = sum(high - low for low, high in ends.values())
        if span > max_offsets:
            return TopicCount(span, exact=False)
        records, complete = read_to_end(consumer, topic, ends, timeout_s=60)
        return TopicCount(len(records), exact=complete)
    finally:
        consumer.close()


def topic_messages(settings: Settings, topic: str, timeout_s: float = 60) -> list[Message]:
    """Every committed record of a topic up to the end offsets seen at the start."""
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.reader")
    try:
        messages, _complete = read_to_end(
            consumer, topic, topic_end_offsets(consumer, topic), timeout_s
        )
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition() or 0, m.offset() or 0))


def latest_records(settings: Settings) -> dict[str, ImageRecord]:
    """The newest committed metadata record of every image (what compaction keeps)."""
    decode = decoder(ImageRecord).decode
    latest: dict[str, ImageRecord] = {}
    for message in topic_messages(settings, Topics(settings.topic_prefix).metadata):
        value = message.value()
        if value:
            latest[(message.key() or b"").decode()] = decode(value)
    return latest


def fleet_status(settings: Settings) -> tuple[list[StageLag], TopicCount, TopicCount]:
    """Lag of every stage, the number of dead letters, and of completions."""
    topics = Topics(settings.topic_prefix)
    lags = [group_lag(settings, s, topics.inbox(s), topics.group(s)) for s in STAGES]
    return lags, count_records(settings, topics.dlq), count_records(settings, topics.done)


def image_record(
    settings: Settings, admin: AdminClient, image_id: str, timeout_s: float = 30
) -> ImageRecord | None:
    """The latest record of one image: read its one partition of the metadata topic."""
    topic = Topics(settings.topic_prefix).metadata
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaException(f"topic {topic} does not exist; run `pixelfleet init`")
    partition = partition_for(image_id.encode(), len(meta.partitions))
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.status-probe")
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, partition, low)])
        latest: bytes | None = None
        position = low
        deadline = time.monotonic() + timeout_s
        while position < high - 1 and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is not None:
                    continue
                position = msg.offset() or position
                if msg.key() == image_id.encode():
                    latest = msg.value()
    finally:
        consumer.close()
    return decoder(ImageRecord).decode(latest) if latest else None
