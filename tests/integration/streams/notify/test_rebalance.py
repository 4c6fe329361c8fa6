"""The notify worker through rebalances on the real broker: partitions it paused (too many
events in hand) move to another member of its group and come back, and every event is
still delivered once the receiver answers again. librdkafka keeps a partition's pause flag
across a revoke and a later assignment; a worker that lost track of it would poll on,
healthy, while those partitions were never read again."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Consumer

from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import watermarks
from streams.notify.flow import ASSIGNMENT_STRATEGY
from streams.notify.worker import group, webhooks_dlq
from tests.conftest import Stack
from tests.integration.streams.notify.kit import (
    PARTITIONS,
    SECRET,
    committed_everything,
    done_record,
    eventually,
    fleet_settings,
    letter_record,
    running,
    subscription,
)
from tests.integration.streams.notify.receivers import Receiver

PER_PARTITION = 4
POLLS = 120  # of the joining consumer, 0.5 s each at most


def _publish_everywhere(stack: Stack, prefix: str) -> set[str]:
    """PER_PARTITION events on every partition of both topics; their image ids."""
    topics = Topics(prefix)
    producer = clients.producer(stack.kafka)
    ids: set[str] = set()
    for topic, record in ((topics.done, done_record), (topics.dlq, letter_record)):
        for partition in range(PARTITIONS):
            for n in range(PER_PARTITION):
                image_id = f"{topic.rsplit('.', 1)[1]}-{partition}-{n}"
                producer.produce(
                    topic, key=image_id.encode(), value=record(image_id), partition=partition
                )
                ids.add(image_id)
    assert producer.flush(30) == 0
    return ids


def _member(stack: Stack, prefix: str) -> Consumer:
    """Another member of the worker's group: it commits nothing, and what it reads is
    ignored, so the partitions it held are read again by the worker from their last
    commit once it leaves."""
    member = Consumer(
        {
            **stack.kafka.librdkafka(),
            "group.id": group(prefix),
            "client.id": f"member-{uuid.uuid4().hex[:6]}",
            "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            # A member that stops polling is dropped from the group after this long.
            "max.poll.interval.ms": 6000,
        }
    )
    topics = Topics(prefix)
    member.subscribe([topics.done, topics.dlq])
    return member


def _poll_until_assigned(member: Consumer) -> list[tuple[str, int]]:
    for _ in range(POLLS):
        member.consume(100, 0.5)
        if member.assignment():
            break
    return [(p.topic, p.partition) for p in member.assignment()]


def _delivered(receiver: Receiver) -> set[str]:
    """The image ids of the events the receiver took."""
    return {r.body["image_id"] for r in receiver.snapshot() if r.status == 204}


def _letters(stack: Stack, prefix: str) -> int:
    consumer = Consumer({**stack.kafka.librdkafka(), "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        return sum(
            high - low
            for low, high in (
                watermarks(consumer, webhooks_dlq(prefix), p) for p in range(PARTITIONS)
            )
        )
    finally:
        consumer.close()


def test_partitions_paused_through_a_rebalance_are_read_again(stack: Stack, prefix: str) -> None:
    released = threading.Event()
    # 503 until released: nothing finishes, so the worker stays paused throughout.
    receiver = Receiver(SECRET, lambda _n: 204 if released.is_set() else 503)
    settings = fleet_settings(
        stack,
        prefix,
        [subscription("slow", receiver)],
        max_in_flight=4,
        max_attempts=10_000,
        retry_budget_s=300.0,
        breaker_failures=10_000,
    )
    ids = _publish_everywhere(stack, prefix)
    with receiver, running(settings) as worker:
        assert eventually(lambda: worker.paused and len(receiver.snapshot()) > 0, 30)
        first = _member(stack, prefix)
        try:
            assert _poll_until_assigned(first), "the first member was never given a partition"
            # The first member polls no more: the next rebalance waits for it to rejoin
            # (or to be dropped), so the worker holds no partition for seconds meanwhile.
            second = _member(stack, prefix)
            try:
                assert _poll_until_assigned(second), "the second member was never given one"
            finally:
                second.close()
        finally:
            first.close()
        assert worker.revocations >= 1
        # Back to the worker: every partition of both topics is its own again.
        assert eventually(lambda: worker.ready()[1].startswith(f"{2 * PARTITIONS} partitions"), 30)
        released.set()
        assert eventually(lambda: _delivered(receiver) == ids, 60), sorted(
            ids - _delivered(receiver)
        )
        assert eventually(lambda: committed_everything(stack, prefix), 15)
    assert all(r.signature_ok for r in receiver.snapshot())
    # An event being retried when its partition moved was left to the next owner, not
    # dead-lettered by the one it left.
    assert _letters(stack, prefix) == 0
