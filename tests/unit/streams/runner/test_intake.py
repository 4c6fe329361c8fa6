"""Intake without a broker: the next batch is read ahead while one runs, and bounded.

The consumer is the plain-dictionary fake; what is asserted is which messages are in hand
and which calls reached the consumer (consume, pause, resume), in order.
"""

from __future__ import annotations

import threading
from typing import cast

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

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
    assert consumer.calls == [("consume", 3), ("pause", [0, 1])]
    intake.keepalive()  # paused: polls for heartbeats, takes nothing more
    assert len(intake.carry) == 3 and len(consumer.queue) == 3

    intake.batch_ended()
    following = intake.next_batch(3)

    # The next batch is what was read ahead: no consume() between the two batches.
    assert _offsets(following) == [(0, 3), (0, 4), (1, 0)]
    assert consumer.calls[2:] == [("resume", [0, 1])]


def test_a_batch_short_of_its_read_ahead_keeps_consuming_unpaused() -> None:
    consumer = FakeConsumer(INBOX, [0])
    intake = _intake(consumer)
    intake.carry = cast(list[Message], _queue(0, 0, 4))
    intake.next_batch(4)
    intake.batch_started()
    consumer.queue = _queue(0, 4, 1)
    intake.keepalive()
    consumer.queue = _queue(0, 5, 2)
    intake.keepalive()

    # consume() serves the poll interval and the callbacks while the hand has room.
    assert _offsets(intake.carry) == [(0, 4), (0, 5), (0, 6)]
    assert consumer.calls == [("consume", 4), ("consume", 3)]
    assert ("pause", [0]) not in consumer.calls


class PollCounter(FakeConsumer):
    def __init__(self, topic: str, partitions: list[int]) -> None:
        super().__init__(topic, partitions)
        self.polls = 0

    def poll(self, timeout: float) -> FakeMessage | None:
        self.polls += 1
        return super().poll(timeout)


def test_every_keepalive_polls_or_consumes(monkeypatch: pytest.MonkeyPatch) -> None:
    # With each batch read ahead, the next one starts without a consumer call: a run of
    # batches whose keepalive took nothing (the hand full) went past max.poll.interval.ms
    # and lost the group (test_a_slow_stage_never_outlives_a_small_poll_interval).
    consumer = PollCounter(INBOX, [0])
    intake = _intake(consumer)
    intake.carry = cast(list[Message], _queue(0, 0, 4))
    intake.next_batch(2)
    for pause_after in (60.0, 0.0):  # the hand full, before and after the pause
        monkeypatch.setattr(intake_module, "PAUSE_AFTER_S", pause_after)
        intake.batch_started()
        for _ in range(3):
            intake.keepalive()
        intake.batch_ended()
    consumes = [c for c in consumer.calls if c[0] == "consume"]
    assert (consumes, consumer.polls) == ([], 6)
    assert len(intake.carry) == 2  # nothing more taken into hand


def test_a_fast_batch_is_not_paused_even_with_its_read_ahead_in_hand() -> None:
    # A pause purges what librdkafka fetched; a batch under PAUSE_AFTER_S would pay that
    # round trip for nothing.
    consumer = FakeConsumer(INBOX, [0])
    intake = _intake(consumer)
    intake.carry = cast(list[Message], _queue(0, 0, 2))
    intake.next_batch(2)
    intake.batch_started()
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
    intake.carry = cast(list[Message], _queue(0, 0, 4))
    batch = intake.next_batch(4)
    intake.batch_started()
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
