"""In-memory stand-ins for confluent_kafka's Message, Producer and Consumer and for the
runner's BlobStore, for the runner's unit tests only: the integration tests use the real ones.

Every fake records what it was asked, so a test asserts the exact calls, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from schemas.events import Envelope, ImageRecord, ImageSubmitted, ObjectRef, Source, encode
from streams.runner.stage import BlobWrite, PermanentError

Offsets = list[tuple[str, int, int]]
NOW = "2026-01-02T03:04:05.678Z"
# librdkafka's "no committed offset" (OFFSET_INVALID).
NO_OFFSET = -1001


def triples(partitions: Sequence[TopicPartition]) -> Offsets:
    """TopicPartition compares by topic and partition only: compare these instead."""
    return [(tp.topic, tp.partition, tp.offset) for tp in partitions]


# -- events -------------------------------------------------------------------


def submission(image_id: str, correlation_id: str | None = "cid-1") -> ImageSubmitted:
    source = Source(object=ObjectRef(bucket="incoming", key=f"up/{image_id}.jpg"))
    return ImageSubmitted(
        image_id=image_id, source=source, submitted_at=NOW, correlation_id=correlation_id
    )


def envelope(
    image_id: str, route: list[str] | None = None, correlation_id: str | None = "cid-1"
) -> Envelope:
    submitted = submission(image_id, correlation_id)
    stages = route or ["validate", "categorize", "enhance", "compress"]
    record = ImageRecord(
        image_id=image_id,
        status="processing",
        updated_at=NOW,
        route=list(stages),
        current=submitted.source.object,
        correlation_id=correlation_id,
    )
    return Envelope(submitted=submitted, route=list(stages), record=record)


# -- Kafka ------------------------------------------------------------------


@dataclass
class FakeMessage:
    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None
    key_: bytes | None = None
    error_: KafkaError | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def error(self) -> KafkaError | None:
        return self.error_


def message(topic: str, partition: int, offset: int, image_id: str) -> FakeMessage:
    """A well-formed envelope for `image_id`, keyed by it."""
    return FakeMessage(topic, partition, offset, encode(envelope(image_id)), image_id.encode())


Call = tuple[Any, ...]


class FakeProducer:
    """Records ("begin",), ("produce", topic, key, value, headers), ("send_offsets", offsets,
    group), ("commit",), ("abort",), ("init",), ("poll", timeout).

    `fail[name]` holds exceptions that the next calls of `name` raise, one per call;
    `block[name]` makes `name` wait that many seconds (or until `unblock()`) first.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fail: dict[str, list[BaseException]] = {}
        self.block: dict[str, float] = {}
        self.raised: set[int] = set()  # indexes into `calls` of the calls that raised
        self._released = threading.Event()

    def unblock(self) -> None:
        self._released.set()

    def _enter(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.block:
            self._released.wait(self.block[name])
        pending = self.fail.get(name)
        if pending:
            self.raised.add(len(self.calls) - 1)
            raise pending.pop(0)

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def init_transactions(self, _timeout: float) -> None:
        self._enter("init")

    def begin_transaction(self) -> None:
        self._enter("begin")

    def produce(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> None:
        self._enter("produce", topic, key, value, headers)

    def poll(self, timeout: float) -> int:
        self._enter("poll", timeout)
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group: object, _timeout: float
    ) -> None:
        self._enter("send_offsets", triples(offsets), group)

    def commit_transaction(self, _timeout: float) -> None:
        self._enter("commit")

    def abort_transaction(self, _timeout: float) -> None:
        self._enter("abort")

    def produced(self) -> list[Call]:
        """The produce calls that went through (one refused with BufferError is retried)."""
        return [c for i, c in enumerate(self.calls) if c[0] == "produce" and i not in self.raised]


class ProducerFactory:
    """What TransactionalProducer calls for a (new) producer; `made` in order of creation."""

    def __init__(self) -> None:
        self.made: list[FakeProducer] = []

    def __call__(self) -> FakeProducer:
        producer = FakeProducer()
        self.made.append(producer)
        return producer

    def release_all(self) -> None:
        for producer in self.made:
            producer.unblock()


GROUP_METADATA = object()


class FakeConsumer:
    """Assignment, positions, committed offsets and watermarks as plain dictionaries;
    `queue` is what consume() hands out, `on_poll` runs inside poll() (a rebalance)."""

    def __init__(self, topic: str, partitions: Sequence[int]) -> None:
        self.topic = topic
        self.partitions = list(partitions)
        self.positions: dict[int, int] = {}
        self.group_committed: dict[int, int] = {}
        self.watermarks: dict[int, tuple[int, int] | Exception] = {}
        self.queue: list[FakeMessage] = []
        self.on_poll: Callable[[], None] | None = None
        self.calls: list[Call] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in self.partitions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, NO_OFFSET))
            for tp in partitions
        ]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls.append(("committed", triples(partitions), timeout))
        return [
            TopicPartition(
                tp.topic, tp.partition, self.group_committed.get(tp.partition, NO_OFFSET)
            )
            for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        found = self.watermarks.get(tp.partition, (NO_OFFSET, NO_OFFSET))
        if isinstance(found, Exception):
            raise found
        return found

    def consumer_group_metadata(self) -> object:
        return GROUP_METADATA

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append(("consume", num_messages))
        taken, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return taken

    def poll(self, _timeout: float) -> FakeMessage | None:
        if self.on_poll is not None:
            hook, self.on_poll = self.on_poll, None
            hook()
        return None

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", [tp.partition for tp in partitions]))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", [tp.partition for tp in partitions]))


# -- S3 ----------------------------------------------------------------------


@dataclass
class FakeBlobStore:
    """Blobs by image id; an image without one is missing (a permanent failure)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    fetched: list[list[str]] = field(default_factory=list)
    uploaded: list[BlobWrite] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def fetch_many(self, envelopes: Sequence[Envelope]) -> dict[int, bytes | PermanentError]:
        self.fetched.append([e.record.image_id for e in envelopes])
        out: dict[int, bytes | PermanentError] = {}
        for env in envelopes:
            blob = self.blobs.get(env.record.image_id)
            out[id(env)] = blob if blob is not None else PermanentError("source_missing", "gone")
        return out

    def upload(self, writes: Sequence[BlobWrite]) -> None:
        self.uploaded.extend(writes)

    def quarantine_many(self, envelopes: Sequence[Envelope]) -> list[ObjectRef | None]:
        self.quarantined.extend(e.record.image_id for e in envelopes)
        return [ObjectRef(bucket="quarantine", key=e.record.image_id) for e in envelopes]
