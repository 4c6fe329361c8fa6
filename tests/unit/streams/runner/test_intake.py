"""Intake without a broker: the next batch is read ahead while one runs, and bounded.

The consumer is the plain-dictionary fake; what is asserted is which messages are in hand
and which calls reached the consumer (consume, pause, resume), in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.runner import intake as intake_module
from streams.runner.accounting import WorkerStats
from streams.runner.intake import Intake
from streams.runner.offsets import CommittedOffsets
from streams.runner.transactions import TransactionalProducer
from tests.unit.streams.runner.fakes import FakeConsumer, FakeMessage, message

INBOX = "px.fetch"


def _intake(consumer: FakeConsumer) -> Intake:
    fake = cast(Consumer, consumer)
    committed = CommittedOffsets("fetch", fake, cast(TransactionalProducer, None))
    return Intake(
        fake,
        "fetch",
        WorkerStats(),
        committed,
        started=threading.Event(),
        stop=threading.Event(),
        beat=lambda: None,
    )


def _queue(partition: int, first: int, count: int) -> list[FakeMessage]:
    offsets = range(first, first + count)
    return [message(INBOX, partition, offset, f"img-{partition}-{offset}") for offset in offsets]


def _running(intake: Intake, size: int) -> list[Message]:
    """A batch of `size` from partition 0, drawn from hand and started."""
    intake.carry = cast(list[Message], _queue(0, 0, size))
    batch = intake.next_batch(size)
    intake.batch_started()
    return batch


def _offsets(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition(), m.offset()) for m in messages]


def test_a_running_batch_reads_the_next_one_ahead_and_no_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", 0.0)
    consumer = FakeConsumer(INBOX, [0, 1])
    intake = _intake(consumer)
    intake.carry = cast(list[Message], _queue(0, 0, 3))  # the batch, in hand already
    batch = intake.next_batch(3)
    assert _offsets(batch) == [(0, 0), (0, 1), (0, 2)]
    consumer.queue = _queue(0, 3, 2) + _queue(1, 0, 4)  # what librdkafka has fetched since

    intake.batch_started()
    intake.keepalive()

    # As many as the batch in hand, in the order fetched; the rest stays with librdkafka.
    assert _offsets(intake.carry) == [(0, 3), (0, 4), (1, 0)]
    assert consumer.calls == [("consume", 3)]
    intake.keepalive()  # the hand full: paused
    intake.keepalive()  # paused: polls for heartbeats, takes nothing more
    assert consumer.calls == [("consume", 3), ("pause", [0, 1])]
    assert len(intake.carry) == 3 and len(consumer.queue) == 3

    intake.batch_ended()
    following = intake.next_batch(3)

    # The next batch is what was read ahead: no consume() between the two batches.
    assert _offsets(following) == [(0, 3), (0, 4), (1, 0)]
    assert consumer.calls[2:] == [("resume", [0, 1])]


def test_a_batch_short_of_its_read_ahead_keeps_consuming_unpaused() -> None:
    consumer = FakeConsumer(INBOX, [0])
    intake = _intake(consumer)
    _running(intake, 4)
    consumer.queue = _queue(0, 4, 1)
    intake.keepalive()
    consumer.queue = _queue(0, 5, 2)
    intake.keepalive()

    # consume() serves the poll interval and the callbacks while the hand has room.
    assert _offsets(intake.carry) == [(0, 4), (0, 5), (0, 6)]
    assert consumer.calls == [("consume", 4), ("consume", 3)]
    assert ("pause", [0]) not in consumer.calls


class LiveConsumer(FakeConsumer):
    """poll() hands out the queue too (nothing while paused), counted, and consume() may
    run a hook first, as librdkafka runs rebalance callbacks inside both, or raise."""

    def __init__(self, topic: str, partitions: list[int]) -> None:
        super().__init__(topic, partitions)
        self.polls = 0
        self.paused = False
        self.on_consume: list[Callable[[], None]] = []

    def poll(self, timeout: float) -> FakeMessage | None:
        self.polls += 1
        super().poll(timeout)
        return self.queue.pop(0) if self.queue and not self.paused else None

    def pause(self, partitions: list[TopicPartition]) -> None:
        super().pause(partitions)
        self.paused = True

    def resume(self, partitions: list[TopicPartition]) -> None:
        super().resume(partitions)
        self.paused = False

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if self.on_consume:
            self.on_consume.pop(0)()
        return super().consume(num_messages, timeout)


def _live(partitions: list[int]) -> tuple[LiveConsumer, Intake]:
    consumer = LiveConsumer(INBOX, partitions)
    return consumer, _intake(consumer)


def _lose(consumer: LiveConsumer, intake: Intake, partition: int) -> Callable[[], None]:
    return lambda: intake._on_lost(cast(Consumer, consumer), [TopicPartition(INBOX, partition)])


def _assign(consumer: LiveConsumer, intake: Intake, partition: int) -> Callable[[], None]:
    return lambda: intake._on_assign(cast(Consumer, consumer), [TopicPartition(INBOX, partition)])


def test_a_batch_served_from_hand_still_polls_first() -> None:
    # With each batch read ahead, the next one needs no message from the consumer; its
    # poll is what keeps the worker in its group across uploads, commit and blob fetches.
    consumer, intake = _live([0])
    intake.carry = cast(list[Message], _queue(0, 0, 4))
    assert _offsets(intake.next_batch(2)) == [(0, 0), (0, 1)]
    assert _offsets(intake.next_batch(2)) == [(0, 2), (0, 3)]
    assert (consumer.polls, consumer.calls) == (2, [])


def test_a_partition_lost_inside_the_read_ahead_call_stays_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The callback replaces the hand while consume() runs; the messages consumed are
    added to that new hand, not to the one read before the call."""
    monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", 60.0)
    consumer, intake = _live([0, 1])
    intake.carry = cast(list[Message], _queue(1, 4, 2) + _queue(0, 0, 2))
    intake.next_batch(4)
    intake.batch_started()
    consumer.queue = _queue(1, 6, 2)
    intake.keepalive()
    consumer.on_consume = [_lose(consumer, intake, 1)]
    consumer.queue = _queue(0, 2, 1)
    intake.keepalive()
    consumer.on_consume = [_assign(consumer, intake, 1)]
    consumer.queue = _queue(1, 4, 1)  # back, and read again from its committed offset
    intake.keepalive()

    # p1@6,7 were read ahead before the loss: kept, the next batch would have committed
    # p1 up to 8 with 4 and 5 never processed.
    assert _offsets(intake.carry) == [(0, 2), (1, 4)]


def test_a_partition_lost_inside_next_batchs_own_call_leaves_the_batch_too() -> None:
    consumer, intake = _live([0, 1])
    intake.carry = cast(list[Message], _queue(1, 20, 2))  # read ahead by the last batch
    consumer.on_consume = [_lose(consumer, intake, 1)]
    consumer.queue = _queue(0, 0, 2)

    batch = intake.next_batch(4)

    assert _offsets(batch) == [(0, 0), (0, 1)]


def test_an_error_in_next_batchs_call_keeps_the_hand() -> None:
    consumer, intake = _live([0])
    intake.carry = cast(list[Message], _queue(0, 5, 2))

    def broken() -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away"))

    consumer.on_consume = [broken]
    with pytest.raises(KafkaException):
        intake.next_batch(4)
    assert _offsets(intake.carry) == [(0, 5), (0, 6)]  # the next try starts from them


def test_the_hand_stays_bounded_however_often_keepalive_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The thread pool calls keepalive at every finished message: hundreds a batch.
    consumer, intake = _live([0])
    intake.carry = cast(list[Message], _queue(0, 0, 4))
    intake.next_batch(4)
    consumer.queue = _queue(0, 4, 100)
    for pause_after in (60.0, 0.0):  # within the first second, then after it
        monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", pause_after)
        intake.batch_started()
        for _ in range(50):
            intake.keepalive()
        assert len(intake.carry) == 4
    assert consumer.calls == [("consume", 4), ("pause", [0])]


def test_reading_ahead_stops_at_its_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    size = len(_queue(0, 0, 1)[0].value() or b"")
    monkeypatch.setattr(intake_module, "READ_AHEAD_MAX_BYTES", 2 * size)
    monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", 0.0)
    consumer, intake = _live([0])
    _running(intake, 10)
    consumer.queue = _queue(0, 10, 2)
    intake.keepalive()
    consumer.queue += _queue(0, 12, 8)
    intake.keepalive()

    assert len(intake.carry) == 2  # two records' worth, not the ten the size allows
    assert consumer.calls == [("consume", 10), ("pause", [0])]


def test_a_fast_batch_is_not_paused_even_with_its_read_ahead_in_hand() -> None:
    # A pause purges what librdkafka fetched; a batch under PAUSE_AFTER_S would pay that
    # round trip for nothing.
    consumer = FakeConsumer(INBOX, [0])
    intake = _intake(consumer)
    _running(intake, 2)
    consumer.queue = _queue(0, 2, 5)
    intake.keepalive()
    intake.keepalive()

    assert _offsets(intake.carry) == [(0, 2), (0, 3)]
    assert consumer.calls == [("consume", 2)]  # the second call had no room to fill
    intake.batch_ended()
    assert ("resume", [0]) not in consumer.calls


def test_work_cut_off_goes_before_what_was_read_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker puts a batch's unfinished messages in front of the carry: per partition,
    the offsets in hand stay in order."""
    monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", 0.0)
    consumer = FakeConsumer(INBOX, [0])
    intake = _intake(consumer)
    batch = _running(intake, 4)
    consumer.queue = _queue(0, 4, 4)
    intake.keepalive()
    intake.carry = intake.batch_still_ours(batch[2:]) + intake.still_ours(intake.carry)
    intake.batch_ended()

    assert _offsets(intake.next_batch(4)) == [(0, 2), (0, 3), (0, 4), (0, 5)]
    assert _offsets(intake.carry) == [(0, 6), (0, 7)]


def test_what_was_read_ahead_of_a_revoked_partition_is_dropped() -> None:
    consumer = FakeConsumer(INBOX, [0, 1])
    intake = _intake(consumer)
    intake.carry = cast(list[Message], _queue(0, 0, 2))
    intake.next_batch(4)
    intake.batch_started()
    consumer.queue = _queue(0, 2, 1) + _queue(1, 0, 1)
    intake.keepalive()
    intake._on_revoke(cast(Consumer, consumer), [TopicPartition(INBOX, 1)])

    assert _offsets(intake.carry) == [(0, 2)]
