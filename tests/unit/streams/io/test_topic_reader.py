"""Offset queries wait out a partition that has no leader yet, and only that."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.io import topic_reader


class FlakyOffsets:
    """Answers get_watermark_offsets with the queued errors first, then with (low, high)."""

    def __init__(self, errors: list[int], answer: tuple[int, int] = (3, 17)) -> None:
        self.errors = errors
        self.answer = answer
        self.asked: list[TopicPartition] = []

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.asked.append(tp)
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return self.answer


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topic_reader, "LEADER_RETRY_S", 0.0)


def test_a_partition_electing_its_leader_is_asked_again_until_it_answers() -> None:
    consumer = FlakyOffsets([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert topic_reader.watermarks(consumer, "t", 2) == (3, 17)  # type: ignore[arg-type]
    assert [(tp.topic, tp.partition) for tp in consumer.asked] == [("t", 2)] * 3


def test_any_other_error_is_raised_at_once() -> None:
    consumer = FlakyOffsets([KafkaError._TRANSPORT])
    with pytest.raises(KafkaException) as raised:
        topic_reader.watermarks(consumer, "t", 0)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError._TRANSPORT
    assert len(consumer.asked) == 1


def test_a_leader_that_never_comes_is_raised_after_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(topic_reader, "LEADER_WAIT_S", 0.0)
    consumer = FlakyOffsets([KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException) as raised:
        topic_reader.watermarks(consumer, "t", 0)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION
    assert len(consumer.asked) < 1000
