"""A rebalance takes partitions away: their events still queued at the endpoints are
withdrawn, not delivered, since the partitions' new owner reads and delivers them again.
Only the event an endpoint is attempting at that moment may arrive twice; it is tried no
more, and never dead-lettered here, since its new owner dead-letters it if need be."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from streams.config.notify import NotifySettings, WebhookSubscription
from streams.config.settings import FleetSettings
from streams.notify.delivery import Delivery, Endpoint, Outcome
from streams.notify.ledger import Ledger
from streams.notify.worker import NotifyWorker
from tests.unit.streams.notify import events
from tests.unit.streams.notify.fakes import Finished, Receiver, event, eventually

FAST = {"backoff_initial_s": 0.001, "backoff_max_s": 0.002, "breaker_failures": 1000}
URL = "https://hooks.example.com/in"


def _gauge(endpoint: str) -> float | None:
    return REGISTRY.get_sample_value("pixelfleet_notify_pending", {"endpoint": endpoint})


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class _Message:
    """What NotifyWorker._handle reads of a consumed record."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._where = (topic, partition, offset)
        self._value = value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def value(self) -> bytes:
        return self._value


class _Consumer:
    def __init__(self) -> None:
        self.committed: list[list[tuple[str, int, int]]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed.append([(o.topic, o.partition, o.offset) for o in offsets])

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.letters: list[bytes] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.letters.append(value)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_withdraw_takes_back_the_queued_events_of_those_partitions_only(
    halted: list[Endpoint],
) -> None:
    receiver, finished = Receiver(), Finished()
    sub = WebhookSubscription(name="withdrawing", url=URL, secret="k")  # type: ignore[arg-type]
    section = NotifySettings.model_validate(FAST)
    endpoint = Endpoint(sub, section, receiver, finished)  # type: ignore[arg-type]
    halted.append(endpoint)
    ledger = Ledger()
    # Not started yet: everything stays queued, interleaved across two partitions.
    for offset, tp in enumerate([("t", 0), ("t", 1), ("t", 0), ("t", 1), ("t", 0)]):
        endpoint.offer(event(f"{tp[1]}-{offset}"), ledger.add(tp, offset, 1))
    assert endpoint.withdraw({("t", 9)}) == 0
    assert endpoint.withdraw({("t", 0), ("u", 0)}) == 3
    assert endpoint.pending() == 2 and _gauge("withdrawing") == 2
    assert finished.outcomes == {}  # withdrawn: neither finished nor dead-lettered
    endpoint.start()
    outcomes = finished.wait(2)
    assert outcomes == {"1-1": (Outcome("delivered"), 1), "1-3": (Outcome("delivered"), 1)}
    assert receiver.attempts() == {event("1-1").event_id: 1, event("1-3").event_id: 1}
    assert eventually(lambda: endpoint.pending() == 0) and _gauge("withdrawing") == 0


@pytest.mark.parametrize("how", ["revoked", "lost"])
def test_a_partition_taken_away_leaves_its_queued_events_to_its_new_owner(
    halted: list[Endpoint], how: str
) -> None:
    receiver = Receiver(hold=True)  # the first POST waits: that event is in flight
    sub = WebhookSubscription(name="rebalanced", url=URL, secret="k")  # type: ignore[arg-type]
    settings = FleetSettings(notify=NotifySettings.model_validate({**FAST, "subscriptions": [sub]}))
    worker = NotifyWorker(settings, fetcher=receiver)  # type: ignore[arg-type]
    consumer, producer = _Consumer(), _Producer()
    worker._consumer = consumer  # type: ignore[assignment]
    worker._producer = producer  # type: ignore[assignment]
    (endpoint,) = worker.endpoints
    halted.append(endpoint)
    endpoint.start()
    done = worker.topics.done

    def read(partition: int, offset: int, image_id: str) -> None:
        message = _Message(done, partition, offset, events.done(image_id))
        worker._handle(message)  # type: ignore[arg-type]

    read(0, 0, "in-flight")
    assert receiver.entered.wait(4)
    read(0, 1, "queued-1")
    read(0, 2, "queued-2")
    read(1, 0, "kept")
    taken = [TopicPartition(done, 0)]
    if how == "revoked":
        worker._on_revoke(None, taken)
        # Committed up to the oldest unfinished event: the withdrawn ones are read again.
        assert consumer.committed == [[(done, 0, 0)]]
    else:
        worker._on_lost(None, taken)
        assert consumer.committed == []  # the partition is someone else's already
    assert endpoint.pending() == 2 and _gauge("rebalanced") == 2  # in flight, and "kept"
    receiver.release.set()

    assert eventually(lambda: endpoint.pending() == 0 and worker.ledger.in_hand() == 0)
    # The attempt in flight ended; the other partition's went on; the withdrawn ones
    # were never sent (the new owner sends them).
    assert receiver.attempts() == {event("in-flight").event_id: 1, event("kept").event_id: 1}
    assert producer.letters == [] and _gauge("rebalanced") == 0
    assert worker.ledger.positions() == {(done, 1): 1}


def _worker(receiver: Receiver, **notify: Any) -> tuple[NotifyWorker, _Producer]:
    sub = WebhookSubscription(name="rebalanced", url=URL, secret="k")  # type: ignore[arg-type]
    section = NotifySettings.model_validate({**FAST, **notify, "subscriptions": [sub]})
    worker = NotifyWorker(FleetSettings(notify=section), fetcher=receiver)  # type: ignore[arg-type]
    producer = _Producer()
    worker._consumer = _Consumer()  # type: ignore[assignment]
    worker._producer = producer  # type: ignore[assignment]
    return worker, producer


def test_an_event_being_retried_when_its_partition_moves_is_neither_retried_nor_dead_lettered(
    halted: list[Endpoint],
) -> None:
    # Every answer a 503: left alone, the event would be tried three times, then
    # dead-lettered here while its new owner dead-letters it too.
    receiver = Receiver(lambda _n: 503, hold=True)
    worker, producer = _worker(receiver, max_attempts=3)
    (endpoint,) = worker.endpoints
    halted.append(endpoint)
    endpoint.start()
    done = worker.topics.done
    worker._handle(_Message(done, 0, 0, events.done("retried")))  # type: ignore[arg-type]
    assert receiver.entered.wait(4)  # its first attempt is under way
    worker._on_revoke(None, [TopicPartition(done, 0)])
    receiver.release.set()

    assert eventually(lambda: endpoint.pending() == 0)
    assert receiver.attempts() == {event("retried").event_id: 1}  # the one under way only
    assert producer.letters == []
    assert (
        _sample(
            "pixelfleet_notify_dead_letters_total",
            endpoint="rebalanced",
            reason="retries_exhausted",
        )
        == 0
    )


def test_an_event_finished_after_its_partition_was_handed_over_is_left_to_the_new_owner() -> None:
    worker, producer = _worker(Receiver())
    done = worker.topics.done
    given_up = event("late")
    ticket = worker.ledger.add((done, 0), 7, 1)
    worker._on_revoke(None, [TopicPartition(done, 0)])
    # The same partition may even come back: the ticket is still of the old assignment.
    worker.ledger.add((done, 0), 7, 1)
    worker._finish("rebalanced", Delivery(given_up, ticket, attempts=8), Outcome("dead", "x"))
    assert producer.letters == []
    assert worker.ledger.in_hand() == 1  # the new reading of offset 7 is still to finish
