"""CommittedOffsets: the idle commit past transaction markers, and the lag gauge."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import REGISTRY

from streams.runner import offsets, transactions
from streams.runner.offsets import CommittedOffsets
from streams.runner.stage import TransientError
from streams.runner.transactions import TransactionalProducer
from tests.unit.streams.runner.fakes import (
    GROUP_METADATA,
    NO_OFFSET,
    FakeConsumer,
    FakeProducer,
    ProducerFactory,
)

INBOX = "px.enhance"
_stages = itertools.count()


class Clock:
    """Stands in for the `time` module inside streams.runner.offsets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(offsets, "time", fake)
    return fake


@pytest.fixture
def parts(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[CommittedOffsets, FakeConsumer, FakeProducer]]:
    monkeypatch.setattr(transactions, "TIMEOUT_S", 0.1)
    monkeypatch.setattr(transactions, "WEDGED_AFTER_S", 0.5)
    consumer = FakeConsumer(INBOX, [0, 1])
    factory = ProducerFactory()
    stage = f"offsets-test-{next(_stages)}"  # a label set of its own in the registry
    producer = TransactionalProducer(lambda: cast(Producer, factory()), stage)
    yield CommittedOffsets(stage, cast(Consumer, consumer), producer), consumer, factory.made[0]
    factory.release_all()


def lag(tracker: CommittedOffsets, partition: int) -> float | None:
    labels = {"stage": tracker.stage, "topic": INBOX, "partition": str(partition)}
    return REGISTRY.get_sample_value("pixelfleet_consumer_lag", labels)


def test_a_position_past_a_commit_marker_is_committed_without_records(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    # Our last transaction committed offset 10; its commit marker took offset 10 itself, so
    # the consumer's position is 11 with nothing left to read: the group lags by one.
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 5)])
    consumer.positions = {0: 11, 1: 5}
    tracker.commit_past_markers()
    assert producer.calls == [
        ("begin",),
        ("send_offsets", [(INBOX, 0, 11)], GROUP_METADATA),
        ("commit",),
    ]
    consumer.watermarks = {0: (0, 11), 1: (0, 5)}
    tracker.update_lag()
    assert (lag(tracker, 0), lag(tracker, 1)) == (0.0, 0.0)
    assert consumer.calls == []  # every partition's committed offset was known


def test_nothing_moved_commits_nothing(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 5)])
    consumer.positions = {0: 10, 1: 5}
    tracker.commit_past_markers()
    consumer.positions = {0: NO_OFFSET, 1: NO_OFFSET}  # not fetched yet
    clock.now += offsets.MARKER_COMMIT_EVERY_S
    tracker.commit_past_markers()
    assert producer.calls == []


def test_markers_are_checked_at_most_every_few_seconds(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 5)])
    consumer.positions = {0: 11, 1: 5}
    tracker.commit_past_markers()
    consumer.positions = {0: 13, 1: 5}
    clock.now += offsets.MARKER_COMMIT_EVERY_S - 0.1
    tracker.commit_past_markers()
    assert producer.names().count("commit") == 1
    clock.now += 0.1
    tracker.commit_past_markers()
    sent = [call[1] for call in producer.calls if call[0] == "send_offsets"]
    assert sent == [[(INBOX, 0, 11)], [(INBOX, 0, 13)]]


def test_partitions_without_a_known_offset_ask_the_group_coordinator(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    tracker.record([TopicPartition(INBOX, 1, 5)])
    consumer.group_committed = {0: 20}
    consumer.positions = {0: 21, 1: 5}
    tracker.commit_past_markers()
    assert consumer.calls == [("committed", [(INBOX, 0, NO_OFFSET)], 10)]
    assert [c for c in producer.calls if c[0] == "send_offsets"] == [
        ("send_offsets", [(INBOX, 0, 21)], GROUP_METADATA)
    ]


def test_a_partition_the_group_never_committed_is_left_alone(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    consumer.positions = {0: 4, 1: 7}  # no committed offset anywhere
    tracker.commit_past_markers()
    assert consumer.calls == [("committed", [(INBOX, 0, NO_OFFSET), (INBOX, 1, NO_OFFSET)], 10)]
    assert producer.calls == []


def test_a_failed_marker_commit_is_not_recorded_and_is_tried_again(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, producer = parts
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 5)])
    consumer.positions = {0: 11, 1: 5}
    producer.fail["send_offsets"] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator moved", retriable=True))
    ]
    with pytest.raises(TransientError):
        tracker.commit_past_markers()
    consumer.watermarks = {0: (0, 11)}
    tracker.update_lag()
    assert lag(tracker, 0) == 1.0  # still measured from 10
    clock.now += offsets.MARKER_COMMIT_EVERY_S
    tracker.commit_past_markers()
    tracker.update_lag()
    assert lag(tracker, 0) == 0.0
    assert producer.names() == ["begin", "send_offsets", "abort", "begin", "send_offsets", "commit"]


def test_update_lag_is_end_minus_committed_per_assigned_partition(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer],
) -> None:
    tracker, consumer, _ = parts
    consumer.partitions = [0, 1, 2, 3]
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 9)])
    tracker.record([TopicPartition(INBOX, 3, 4)])
    consumer.watermarks = {
        0: (2, 25),
        1: (0, 7),  # a cached end behind our commit: never a negative lag
        2: (0, 50),  # never committed on (the coordinator says): all it holds
        3: KafkaException(KafkaError(KafkaError._TRANSPORT)),
    }
    tracker.update_lag()
    assert [lag(tracker, p) for p in range(4)] == [15.0, 0.0, 50.0, None]
    assert consumer.calls == [("committed", [(INBOX, 2, NO_OFFSET)], offsets.LAG_ASK_TIMEOUT_S)]
    consumer.watermarks[0] = (2, 30)
    tracker.update_lag()
    assert lag(tracker, 0) == 20.0


def test_forgotten_partitions_lose_their_offset_and_their_gauge(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer],
) -> None:
    tracker, consumer, _ = parts
    tracker.record([TopicPartition(INBOX, 0, 10), TopicPartition(INBOX, 1, 9)])
    consumer.watermarks = {0: (0, 12), 1: (0, 12)}
    tracker.update_lag()
    assert (lag(tracker, 0), lag(tracker, 1)) == (2.0, 3.0)
    tracker.forget({(INBOX, 1), (INBOX, 7)})  # 7 never had a gauge: no error
    assert (lag(tracker, 0), lag(tracker, 1)) == (2.0, None)
    tracker.update_lag()  # still assigned in the fake, but its offset is gone
    assert lag(tracker, 1) is None


def test_a_stage_stuck_before_its_first_commit_shows_its_backlog(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    """KEDA counts a never-committed partition's whole content; so does the gauge, so an
    alert sees a stage that has not committed anything yet."""
    tracker, consumer, _ = parts
    consumer.watermarks = {0: (3, 40), 1: (0, 0)}
    consumer.group_committed = {}
    tracker.update_lag()
    assert (lag(tracker, 0), lag(tracker, 1)) == (37.0, 0.0)
    tracker.update_lag()  # asked once: the answer is kept until a commit changes it
    assert len(consumer.calls) == 1
    tracker.record([TopicPartition(INBOX, 0, 30)])
    tracker.update_lag()
    assert lag(tracker, 0) == 10.0


def test_a_partition_not_yet_asked_about_has_no_gauge_until_the_coordinator_answers(
    parts: tuple[CommittedOffsets, FakeConsumer, FakeProducer], clock: Clock
) -> None:
    tracker, consumer, _ = parts
    consumer.watermarks = {0: (0, 40), 1: (0, 8)}
    consumer.group_committed = {0: 35, 1: 8}
    tracker.record([TopicPartition(INBOX, 1, 8)])
    tracker.update_lag()
    assert (lag(tracker, 0), lag(tracker, 1)) == (5.0, 0.0)
    consumer.partitions = [0, 1, 2]
    consumer.watermarks[2] = (0, 9)
    consumer.group_committed[2] = 9
    clock.now += offsets.ASK_EVERY_S - 0.1
    tracker.update_lag()
    assert lag(tracker, 2) is None  # asked again only every few seconds
    clock.now += 0.1
    tracker.update_lag()
    assert lag(tracker, 2) == 0.0
