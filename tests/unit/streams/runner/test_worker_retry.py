"""StageWorker without a broker: a failed batch is aborted and kept in hand to retry.

The worker is built by its own __init__ with `streams.runner.worker.clients` returning the
fakes, an inline executor (a stage that is not CPU-bound) and a fake blob store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import REGISTRY

from schemas.events import Envelope
from streams.config.settings import FleetSettings, RunnerSettings
from streams.runner import transactions
from streams.runner import worker as worker_module
from streams.runner.accounting import HaltPolicy
from streams.runner.blobs import BlobStore
from streams.runner.offsets import LAG_ASK_TIMEOUT_S
from streams.runner.stage import BlobWrite, StageContext, StageResult, StageSpec, TransientError
from streams.runner.worker import StageWorker
from tests.unit.streams.runner.fakes import (
    NO_OFFSET,
    FakeBlobStore,
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    ProducerFactory,
    message,
)

INBOX = "px.categorize"
IMAGES = ("img-a", "img-b", "img-c", "img-d")


def tag(envelope: Envelope, blob: bytes | None, _ctx: StageContext) -> StageResult:
    image_id = envelope.record.image_id
    return StageResult(envelope, blobs=[BlobWrite("work", f"{image_id}.png", blob or b"")])


@dataclass
class Rig:
    worker: StageWorker
    consumer: FakeConsumer
    factory: ProducerFactory
    store: FakeBlobStore
    sleeps: list[float]

    @property
    def producer(self) -> FakeProducer:
        return self.factory.made[-1]


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setattr(transactions, "TIMEOUT_S", 0.1)
    monkeypatch.setattr(transactions, "WEDGED_AFTER_S", 0.5)
    consumer, factory = FakeConsumer(INBOX, [0, 1]), ProducerFactory()
    fake_clients = SimpleNamespace(
        consumer=lambda *_, **__: consumer,
        transactional_producer=lambda *_, **__: factory(),
        s3=lambda _s3: None,
    )
    monkeypatch.setattr(worker_module, "clients", fake_clients)
    runner = RunnerSettings(
        replica_id="r1",
        batch_max=200,
        batch_budget_s=100.0,  # a 100 s budget: 50 s of it hold 200 fast messages
        backoff_initial_s=0.01,
        backoff_max_s=1.0,
        metrics_port=0,
    )
    settings = FleetSettings(topic_prefix="px", runner=runner)
    worker = StageWorker(settings, StageSpec(name="categorize", fn=tag))
    worker.blobs.close()
    store = FakeBlobStore(blobs={i: f"blob-{i}".encode() for i in IMAGES})
    worker.blobs = cast(BlobStore, store)
    sleeps: list[float] = []

    def sleep_alive(seconds: float) -> None:
        sleeps.append(seconds)
        StageWorker._sleep_alive(worker, seconds)

    monkeypatch.setattr(worker, "_sleep_alive", sleep_alive)
    yield Rig(worker, consumer, factory, store, sleeps)
    worker.executor.close()
    factory.release_all()


def _messages() -> tuple[list[FakeMessage], FakeMessage]:
    """A batch over partitions 0 and 1, and one message already carried after it."""
    a, b, c, d = IMAGES
    batch = [message(INBOX, 0, 5, a), message(INBOX, 1, 2, b), message(INBOX, 0, 6, c)]
    return batch, message(INBOX, 1, 3, d)


def _batch(*messages: FakeMessage) -> list[Message]:
    return cast(list[Message], list(messages))


def _retries() -> float:
    labels = {"stage": "categorize", "kind": "transient"}
    return REGISTRY.get_sample_value("pixelfleet_batch_retries_total", labels) or 0.0


def _lag(partition: int) -> float | None:
    labels = {"stage": "categorize", "topic": INBOX, "partition": str(partition)}
    return REGISTRY.get_sample_value("pixelfleet_consumer_lag", labels)


def _send_offsets(producer: FakeProducer) -> list[list[tuple[str, int, int]]]:
    return [call[1] for call in producer.calls if call[0] == "send_offsets"]


def test_a_failed_commit_keeps_the_batch_in_hand_and_the_retry_takes_it_first(rig: Rig) -> None:
    batch, carried = _messages()
    w, producer = rig.worker, rig.producer
    w.intake.carry = _batch(carried)  # e.g. polled during the batch's keepalive
    producer.fail["commit"] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator", txn_requires_abort=True))
    ]
    retries_before = _retries()
    rig.consumer.watermarks = {0: (0, 9), 1: (0, 4)}

    w._run_batch(_batch(*batch))

    assert [id(m) for m in w.intake.carry] == [id(m) for m in [*batch, carried]]
    assert (w.stats.retries, w.stats.batches, w.stats.committed) == (1, 0, 0)
    # The lag is reported while the batch waits for its retry: the group has committed
    # nothing here, so it is the whole of each partition.
    assert (_lag(0), _lag(1)) == (9.0, 4.0)
    assert _retries() - retries_before == 1
    assert w.backoff.failures_in_a_row == 1
    assert rig.sleeps == [0.02]  # the first failure waits twice backoff_initial_s
    # Whether the coordinator committed it after all is asked first (it had not); the
    # backoff sleeps with the whole assignment paused, then resumes it.
    asked = ("committed", [(INBOX, 0, 7), (INBOX, 1, 3)], 10)
    for_lag = ("committed", [(INBOX, 0, NO_OFFSET), (INBOX, 1, NO_OFFSET)], LAG_ASK_TIMEOUT_S)
    assert rig.consumer.calls == [asked, for_lag, ("pause", [0, 1]), ("resume", [0, 1])]
    assert producer.names() == ["begin", *["produce"] * 6, "send_offsets", "commit", "abort"]
    assert _send_offsets(producer) == [[(INBOX, 0, 7), (INBOX, 1, 3)]]
    assert w.sizer.size == 50  # an aborted batch teaches the sizer nothing

    again = w._next_batch()
    assert [id(m) for m in again] == [id(m) for m in [*batch, carried]]
    assert w.intake.carry == []
    assert rig.consumer.calls[-1] == ("consume", 46)  # topped up to the batch size

    w._run_batch(again)

    assert _send_offsets(producer)[1] == [(INBOX, 0, 7), (INBOX, 1, 4)]
    assert producer.names()[-2:] == ["send_offsets", "commit"]
    last_try = producer.calls[producer.names().index("abort") + 1 :]
    produced = Counter((c[1], c[2]) for c in last_try if c[0] == "produce")
    assert produced == {(t, i.encode()): 1 for t in ("px.enhance", "px.metadata") for i in IMAGES}
    assert (w.stats.retries, w.stats.batches, w.stats.committed) == (1, 1, 4)
    assert w.stats.batch_sizes == [4]
    assert w.backoff.failures_in_a_row == 0
    assert w.sizer.size == 200  # fast messages: the next batch may be batch_max
    # Blobs go up before every try: the retry uploaded them again under the same keys.
    first_try = [f"{i}.png" for i in IMAGES[:3]]
    assert [b.key for b in rig.store.uploaded] == [*first_try, *first_try, "img-d.png"]


def test_messages_of_a_partition_revoked_during_the_backoff_are_dropped(rig: Rig) -> None:
    batch, carried = _messages()
    w, consumer = rig.worker, rig.consumer
    w._ready.set()  # running: a revoke now is a rebalance
    w.intake.carry = _batch(carried)
    rig.producer.fail["send_offsets"] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator", retriable=True))
    ]

    def rebalance() -> None:
        consumer.partitions = [0]
        w.intake._on_revoke(cast(Consumer, consumer), [TopicPartition(INBOX, 1)])

    consumer.on_poll = rebalance  # the sleep's poll serves the rebalance
    w._run_batch(_batch(*batch))

    assert [(m.partition(), m.offset()) for m in w.intake.carry] == [(0, 5), (0, 6)]
    assert (w.stats.retries, w.stats.revoked) == (1, 1)
    again = w._next_batch()
    w._run_batch(again)
    assert _send_offsets(rig.producer)[-1] == [(INBOX, 0, 7)]
    assert w.stats.committed == 2


def test_a_partition_revoked_mid_batch_is_neither_committed_nor_carried(rig: Rig) -> None:
    batch, _ = _messages()
    w, consumer = rig.worker, rig.consumer

    def revoking(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
        if envelope.record.image_id == "img-a":
            w.intake._on_revoke(cast(Consumer, consumer), [TopicPartition(INBOX, 1)])
        return tag(envelope, blob, ctx)

    w.executor.fn = revoking
    w.intake.carry = _batch(message(INBOX, 1, 9, "img-d"))
    w._run_batch(_batch(*batch))

    produced = [(c[1], c[2]) for c in rig.producer.calls if c[0] == "produce"]
    assert produced == [
        ("px.enhance", b"img-a"),
        ("px.metadata", b"img-a"),
        ("px.enhance", b"img-c"),
        ("px.metadata", b"img-c"),
    ]
    assert _send_offsets(rig.producer) == [[(INBOX, 0, 7)]]
    assert w.intake.carry == []
    assert (w.stats.committed, w.stats.batch_sizes) == (2, [2])


def test_a_transient_stage_error_retries_without_opening_a_transaction(rig: Rig) -> None:
    batch, _ = _messages()
    w = rig.worker

    def flaky(_envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
        raise TransientError("S3 get failed")

    w.executor.fn = flaky
    retries_before = _retries()
    w._run_batch(_batch(*batch))
    w._run_batch(w._next_batch())
    assert rig.producer.calls == []
    assert [(m.partition(), m.offset()) for m in w.intake.carry] == [(0, 5), (1, 2), (0, 6)]
    assert (w.stats.retries, w.backoff.failures_in_a_row) == (2, 2)
    assert rig.sleeps == [0.02, 0.04]
    assert _retries() - retries_before == 2


def test_an_aborted_batch_does_not_count_its_failures_twice(rig: Rig) -> None:
    w = rig.worker
    w.ledger.policy = HaltPolicy(failures_in_a_row=5)
    garbage = [FakeMessage(INBOX, 0, offset, b"garbage", b"img-x") for offset in range(3)]
    rig.producer.fail["commit"] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator", txn_requires_abort=True))
    ]
    w._run_batch(_batch(*garbage))
    assert w.stats.retries == 1
    w._run_batch(w._next_batch())  # only 3 messages in a row failed: no halt at 5
    assert (w.stats.committed, w.stats.dead_lettered) == (3, 3)


def test_a_batch_takes_only_the_inputs_its_byte_budget_holds_and_carries_the_rest(
    rig: Rig,
) -> None:
    batch, _ = _messages()
    w, producer = rig.worker, rig.producer
    # Inputs without a recorded size count 8 MiB each: two fit in 16 MiB, the third waits.
    runner = w.settings.runner.model_copy(update={"batch_max_bytes": 16 * 1024 * 1024})
    w.settings = w.settings.model_copy(update={"runner": runner})

    w._run_batch(_batch(*batch))

    assert _send_offsets(producer) == [[(INBOX, 0, 6), (INBOX, 1, 3)]]
    assert [id(m) for m in w.intake.carry] == [id(batch[2])]
    assert rig.store.fetched == [["img-a", "img-b"]]
    w._run_batch(w._next_batch())
    assert _send_offsets(producer)[1] == [(INBOX, 0, 7)]
    assert w.stats.committed == 3 and w.intake.carry == []


def test_a_partition_revoked_and_given_back_mid_batch_is_not_committed_twice(rig: Rig) -> None:
    batch, _ = _messages()
    w, consumer = rig.worker, rig.consumer
    lost = [TopicPartition(INBOX, 1)]

    def rebalancing(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
        if envelope.record.image_id == "img-a":
            # Taken away and given back within one batch: the consumer starts partition 1
            # again from its committed offset, so this batch's message of it comes again.
            w.intake._on_revoke(cast(Consumer, consumer), lost)
            w.intake._on_assign(cast(Consumer, consumer), lost)
        return tag(envelope, blob, ctx)

    w.executor.fn = rebalancing
    w._run_batch(_batch(*batch))

    produced = [(c[1], c[2]) for c in rig.producer.calls if c[0] == "produce"]
    assert (INBOX, 1) not in {(t, p) for t, p, _ in _send_offsets(rig.producer)[0]}
    assert ("px.enhance", b"img-b") not in produced  # partition 1's message: not this batch's
    assert w.intake.carry == []  # nor carried: the consumer reads it again
    assert w.intake.is_ours((INBOX, 1))  # the next batch's messages of it are ours


def test_a_commit_given_up_on_that_the_coordinator_completed_is_not_run_again(rig: Rig) -> None:
    batch, _ = _messages()
    w, producer, consumer = rig.worker, rig.producer, rig.consumer
    producer.fail["commit"] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator", txn_requires_abort=True))
    ]
    # The call failed on our side, but the coordinator committed the transaction.
    consumer.group_committed = {0: 7, 1: 3}

    w._run_batch(_batch(*batch))

    assert (w.stats.retries, w.stats.batches, w.stats.committed) == (0, 1, 3)
    assert w.intake.carry == []  # done: nothing kept to run a second time
    assert producer.names().count("begin") == 1
