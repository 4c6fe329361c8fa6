"""TransactionalProducer against a fake librdkafka producer: call order, aborts, retries,
fatal errors and the replacement of a wedged producer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import cast

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.runner import transactions
from streams.runner.records import OutMessage
from streams.runner.stage import TransientError
from streams.runner.transactions import FatalKafkaError, TransactionalProducer
from tests.unit.streams.runner.fakes import GROUP_METADATA, FakeProducer, ProducerFactory

MESSAGES = [
    OutMessage("px.enhance", b"img-1", b"e1", [("pixelfleet-schema", b"envelope/1")]),
    OutMessage("px.metadata", b"img-1", b"r1", [("pixelfleet-schema", b"image_record/1")]),
    OutMessage("px.dlq", b"img-2", b"d2", []),
]
OFFSETS = [TopicPartition("px.categorize", 0, 8), TopicPartition("px.categorize", 3, 2)]
SENT = ("send_offsets", [("px.categorize", 0, 8), ("px.categorize", 3, 2)], GROUP_METADATA)


def _retriable(code: int = KafkaError._TIMED_OUT) -> KafkaException:
    return KafkaException(KafkaError(code, "try again", retriable=True))


def _abortable() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort it", txn_requires_abort=True))


def _fatal() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))


@pytest.fixture
def factory() -> Iterator[ProducerFactory]:
    made = ProducerFactory()
    yield made
    made.release_all()  # let any thread still blocked in a fake call end


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "TIMEOUT_S", 0.1)
    monkeypatch.setattr(transactions, "WEDGED_AFTER_S", 0.2)
    monkeypatch.setattr(transactions, "ABORT_RETRY_S", 0.0)
    monkeypatch.setattr(transactions, "INIT_RETRY_S", 0.0)


def _producer(factory: ProducerFactory) -> tuple[TransactionalProducer, FakeProducer]:
    txn = TransactionalProducer(lambda: cast(Producer, factory()), "categorize")
    return txn, factory.made[0]


def test_a_commit_begins_produces_sends_offsets_and_commits_in_that_order(
    factory: ProducerFactory,
) -> None:
    txn, fake = _producer(factory)
    txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.calls == [
        ("begin",),
        ("produce", "px.enhance", b"img-1", b"e1", [("pixelfleet-schema", b"envelope/1")]),
        ("produce", "px.metadata", b"img-1", b"r1", [("pixelfleet-schema", b"image_record/1")]),
        ("produce", "px.dlq", b"img-2", b"d2", []),
        SENT,
        ("commit",),
    ]
    assert len(factory.made) == 1


def test_a_retriable_error_aborts_and_raises_transient(factory: ProducerFactory) -> None:
    txn, fake = _producer(factory)
    fake.fail["send_offsets"] = [_retriable()]
    with pytest.raises(TransientError, match="transaction aborted"):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names() == ["begin", "produce", "produce", "produce", "send_offsets", "abort"]
    assert txn.producer is cast(Producer, fake)


def test_an_abort_that_finds_no_open_transaction_is_done(factory: ProducerFactory) -> None:
    txn, fake = _producer(factory)
    fake.fail["begin"] = [_retriable()]
    fake.fail["abort"] = [KafkaException(KafkaError(KafkaError._STATE, "no transaction"))]
    with pytest.raises(TransientError):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names() == ["begin", "abort"]


def test_a_busy_coordinator_is_asked_to_abort_again(factory: ProducerFactory) -> None:
    txn, fake = _producer(factory)
    fake.fail["produce"] = [_retriable()]
    fake.fail["abort"] = [_retriable(), _retriable()]
    with pytest.raises(TransientError):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names() == ["begin", "produce", "abort", "abort", "abort"]


@pytest.mark.parametrize("failing", ["produce", "send_offsets", "commit"])
def test_a_fatal_error_raises_fatal_without_aborting(
    factory: ProducerFactory, failing: str
) -> None:
    txn, fake = _producer(factory)
    fake.fail[failing] = [_fatal()]
    with pytest.raises(FatalKafkaError, match="fenced"):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names()[-1] == failing
    assert "abort" not in fake.names()


def test_a_full_queue_is_drained_by_poll_and_the_record_produced_again(
    factory: ProducerFactory,
) -> None:
    txn, fake = _producer(factory)
    fake.fail["produce"] = [BufferError("queue full"), BufferError("queue full")]
    txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names() == [
        "begin",
        *["produce", "poll"] * 2,
        "produce",
        "produce",
        "produce",
        "send_offsets",
        "commit",
    ]
    assert [c for c in fake.calls if c[0] == "poll"] == [("poll", 0.05)] * 2
    assert [(c[1], c[2]) for c in fake.produced()] == [(m.topic, m.key) for m in MESSAGES]


def test_a_wedged_call_replaces_the_producer_and_raises_transient(
    factory: ProducerFactory,
) -> None:
    txn, stuck = _producer(factory)
    stuck.block["send_offsets"] = 5.0  # far past WEDGED_AFTER_S
    started = time.monotonic()
    with pytest.raises(TransientError, match="transaction abandoned"):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert time.monotonic() - started < 1.0
    assert len(factory.made) == 2
    fresh = factory.made[1]
    assert txn.producer is cast(Producer, fresh)
    # The new producer registers the same transactional id, which fences the stuck one and
    # aborts its open transaction: nobody calls abort on the stuck producer.
    assert fresh.calls == [("init",)]
    assert stuck.names() == ["begin", "produce", "produce", "produce", "send_offsets"]
    txn.commit(MESSAGES[:1], OFFSETS, GROUP_METADATA)  # the retry goes through the new one
    assert fresh.names() == ["init", "begin", "produce", "send_offsets", "commit"]


def test_a_wedged_abort_replaces_the_producer_too(factory: ProducerFactory) -> None:
    txn, stuck = _producer(factory)
    stuck.fail["commit"] = [_abortable()]
    stuck.block["abort"] = 5.0
    with pytest.raises(TransientError, match="transaction aborted"):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert len(factory.made) == 2
    assert txn.producer is cast(Producer, factory.made[1])
    assert factory.made[1].calls == [("init",)]


def test_a_retriable_commit_is_retried_until_it_succeeds(factory: ProducerFactory) -> None:
    txn, fake = _producer(factory)
    fake.fail["commit"] = [_retriable()] * 3
    txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names()[-5:] == ["send_offsets", "commit", "commit", "commit", "commit"]
    assert "abort" not in fake.names()


def test_a_commit_that_keeps_timing_out_gives_up_after_commit_tries(
    factory: ProducerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transactions, "COMMIT_TRIES", 3)
    txn, fake = _producer(factory)
    fake.fail["commit"] = [_retriable()] * 10
    with pytest.raises(TransientError, match="commit_transaction kept timing out"):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names().count("commit") == 3
    assert fake.names()[-1] == "abort"


def test_a_commit_that_requires_an_abort_is_not_retried(factory: ProducerFactory) -> None:
    txn, fake = _producer(factory)
    fake.fail["commit"] = [_abortable()]
    with pytest.raises(TransientError):
        txn.commit(MESSAGES, OFFSETS, GROUP_METADATA)
    assert fake.names()[-3:] == ["send_offsets", "commit", "abort"]


def test_init_retries_until_the_coordinator_answers_and_fails_on_a_fatal_error(
    factory: ProducerFactory,
) -> None:
    txn, fake = _producer(factory)
    fake.fail["init"] = [_retriable(), _retriable()]
    txn.init()
    assert fake.names() == ["init", "init", "init"]
    fake.fail["init"] = [_fatal()]
    with pytest.raises(FatalKafkaError, match="init_transactions"):
        txn.init()
