"""Reading what the fleet produced: committed records of a topic up to its end, one image's
latest record, and a consumer group's lag as KEDA computes it.

`pixelfleet status`, the demo and the tests read topics through this module alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.events import ImageRecord, decoder
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.failures import OperationError
from streams.io.partitioner import partition_for

# One consume call: enough records to amortise the call, few enough to stay responsive.
READ_BATCH = 1000
# How long one consume call waits for records before the end-of-partition check runs again.
READ_WAIT_S = 0.5
# A partition without a leader yet (a topic created moments ago, a broker that just restarted)
# answers offset queries with one of these; asking again shortly after succeeds.
NOT_READY = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
LEADER_WAIT_S, LEADER_RETRY_S = 30.0, 0.5


@dataclass(frozen=True)
class StageLag:
    stage: str
    topic: str
    group: str
    end: int  # sum of end offsets
    committed: int  # sum of committed offsets (0 where none)
    lag: int


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """The low and high offsets of one partition, asking again while it has no leader (for
    at most LEADER_WAIT_S); any other error, or one that outlasts the wait, is raised."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return low, high
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            if code not in NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(LEADER_RETRY_S)


def topic_end_offsets(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    return {p: watermarks(consumer, topic, p) for p in meta.partitions}


def group_lag(settings: FleetSettings, stage: str, topic: str, group: str) -> StageLag:
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
    consumer: Consumer,
    topic: str,
    ends: dict[int, tuple[int, int]],
    timeout_s: float,
    on_message: Callable[[Message], None],
) -> bool:
    """Hand every committed record below the given end offsets to `on_message`; say whether
    every partition was read to its end before the deadline.

    Transaction markers take offsets but are never delivered, so a partition is finished
    when the consumer's position reaches its end, not when a record with that offset arrives.
    """
    left = {p: high for p, (low, high) in ends.items() if high > low}
    consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in left])
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        for message in consumer.consume(READ_BATCH, timeout=READ_WAIT_S):
            if message.error() is None:
                on_message(message)
        for tp in consumer.position([TopicPartition(topic, p) for p in list(left)]):
            if tp.offset >= left[tp.partition]:
                del left[tp.partition]
    return not left


def count_records(settings: FleetSettings, topic: str, max_offsets: int = 200_000) -> TopicCount:
    """Committed records in a topic. Transaction markers take offsets too, so offsets
    over-count; read the topic when that is cheap enough, else say the figure is rough."""
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.status-probe")
    try:
        ends = topic_end_offsets(consumer, topic)
        span = sum(high - low for low, high in ends.values())
        if span > max_offsets:
            return TopicCount(span, exact=False)
        seen = [0]

        def count(_message: Message) -> None:
            seen[0] += 1

        complete = read_to_end(consumer, topic, ends, timeout_s=60, on_message=count)
        return TopicCount(seen[0], exact=complete)
    finally:
        consumer.close()


class IncompleteReadError(OperationError):
    """A topic was not read to its end in time: what was read may miss records (its
    message says so, and what to do, to the person who ran the command)."""


def topic_messages(
    settings: FleetSettings, topic: str, timeout_s: float = 60, *, strict: bool = False
) -> list[Message]:
    """Every committed record of a topic up to the end offsets seen at the start. `strict`:
    raise IncompleteReadError rather than return a partial read (what an operation that
    deletes or re-sends must never act on)."""
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.reader")
    messages: list[Message] = []
    try:
        ends = topic_end_offsets(consumer, topic)
        complete = read_to_end(consumer, topic, ends, timeout_s, messages.append)
    finally:
        consumer.close()
    if strict and not complete:
        raise IncompleteReadError(
            f"{topic} was not read to its end within {timeout_s:.0f} s (is the broker slow "
            "or a partition without a leader?); nothing was changed: run the command again"
        )
    return sorted(messages, key=lambda m: (m.partition() or 0, m.offset() or 0))


def latest_records(settings: FleetSettings, *, strict: bool = False) -> dict[str, ImageRecord]:
    """The newest committed metadata record of every image (what compaction keeps); an
    image whose newest record is a tombstone is gone. `strict` as for topic_messages."""
    decode = decoder(ImageRecord).decode
    latest: dict[str, ImageRecord] = {}
    topic = Topics(settings.topic_prefix).metadata
    for message in topic_messages(settings, topic, strict=strict):
        value, key = message.value(), (message.key() or b"").decode()
        if value:
            latest[key] = decode(value)
        else:
            latest.pop(key, None)
    return latest


@dataclass(frozen=True)
class Lookup:
    """One image's newest record, and whether its partition was read to the end (when not,
    the record may be older than the newest one)."""

    record: ImageRecord | None
    complete: bool


def image_record(
    settings: FleetSettings, admin: AdminClient, image_id: str, timeout_s: float = 30
) -> Lookup:
    """The latest record of one image: read its one partition of the metadata topic."""
    topic = Topics(settings.topic_prefix).metadata
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaException(f"topic {topic} does not exist; run `pixelfleet init`")
    partition = partition_for(image_id.encode(), len(meta.partitions))
    key = image_id.encode()
    latest: list[bytes | None] = [None]

    def keep(message: Message) -> None:
        if message.key() == key:
            latest[0] = message.value()

    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.status-probe")
    try:
        end = watermarks(consumer, topic, partition)
        complete = read_to_end(consumer, topic, {partition: end}, timeout_s, keep)
    finally:
        consumer.close()
    value = latest[0]
    # A tombstone (no value) means the image was deleted: no record.
    return Lookup(decoder(ImageRecord).decode(value) if value else None, complete)
