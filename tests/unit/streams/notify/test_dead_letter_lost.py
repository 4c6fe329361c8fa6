"""A dead letter Kafka refused is never committed past: the worker stops, and the events
are delivered again after a restart. And a bad subscription's secret is never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import TopicPartition

from processors import webhooks
from streams.cli.notify import notify
from streams.config.notify import NotifySettings, WebhookSubscription
from streams.config.settings import FleetSettings
from streams.notify.delivery import Delivery, Outcome
from streams.notify.worker import DeadLetterLostError, NotifyWorker
from tests.unit.streams.notify import events

TP = ("p.done", 0)


class _RefusingProducer:
    """Takes dead letters and, at flush, reports each one refused (as Kafka does for a
    topic this worker may not write to), leaving nothing queued."""

    def __init__(self) -> None:
        self.queued: list[Any] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.queued.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for report in self.queued:
            report("TOPIC_AUTHORIZATION_FAILED", None)
        self.queued.clear()
        return 0  # what flush says once the refused messages left the queue


class _Consumer:
    def __init__(self) -> None:
        self.committed: list[Any] = []

    def commit(self, *, offsets: Any, asynchronous: bool) -> None:
        self.committed.append(offsets)


def _worker() -> NotifyWorker:
    sub = WebhookSubscription(name="crm", url="https://hooks.example.com/in", secret="s")  # type: ignore[arg-type]
    return NotifyWorker(FleetSettings(notify=NotifySettings(subscriptions=[sub])))


def test_a_refused_dead_letter_stops_the_worker_before_its_offset_is_committed() -> None:
    worker = _worker()
    producer, consumer = _RefusingProducer(), _Consumer()
    worker._producer = producer  # type: ignore[assignment]
    worker._consumer = consumer  # type: ignore[assignment]
    event = webhooks.from_done(events.done("img-1"))
    assert event is not None
    ticket = worker.ledger.add(TP, 41, endpoints=1)
    worker._finish("crm", Delivery(event, ticket, attempts=5), Outcome("dead", "http_4xx"))
    with pytest.raises(DeadLetterLostError, match="TOPIC_AUTHORIZATION_FAILED"):
        worker._commit()
    assert consumer.committed == []
    assert worker.ledger.positions() == {TP: 42}  # still to commit: nothing was lost


def test_a_bad_subscription_is_named_and_its_secret_never_printed(tmp_path: Path) -> None:
    secret = "whsec-0123456789abcdef0123456789abcdef"
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "notify:\n  subscriptions:\n"
        f"    - {{name: 'bad name!', url: 'https://hooks.example.com/in', secret: '{secret}'}}\n"
    )
    result = CliRunner().invoke(notify, [], env={"PIXELFLEET_CONFIG": str(config)})
    assert result.exit_code == 1
    assert "notify.subscriptions.0" in result.output and "name" in result.output
    assert secret not in result.output and secret[-8:] not in result.output


class _ClosingConsumer(_Consumer):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def resume(self, partitions: Any) -> None:
        pass


def test_a_dead_letter_lost_at_the_last_commit_still_leaves_the_group() -> None:
    """Else the group waits a whole session timeout before handing the partitions on."""
    worker = _worker()
    consumer = _ClosingConsumer()
    worker._producer = _RefusingProducer()  # type: ignore[assignment]
    worker._consumer = consumer  # type: ignore[assignment]
    event = webhooks.from_done(events.done("img-2"))
    assert event is not None
    ticket = worker.ledger.add(TP, 7, endpoints=1)
    worker._finish("crm", Delivery(event, ticket, attempts=5), Outcome("dead", "http_4xx"))
    with pytest.raises(DeadLetterLostError):
        worker._shutdown()
    assert consumer.closed and consumer.committed == []


def test_a_revoke_after_a_lost_letter_commits_nothing_and_the_next_commit_stops() -> None:
    """A revoke (closing the consumer revokes too) must neither commit past the lost
    letter nor raise from inside the consumer's callback; the loop's next commit stops
    the worker, though the partition that held the letter is gone."""
    worker = _worker()
    producer, consumer = _RefusingProducer(), _ClosingConsumer()
    worker._producer = producer  # type: ignore[assignment]
    worker._consumer = consumer  # type: ignore[assignment]
    event = webhooks.from_done(events.done("img-3"))
    assert event is not None
    ticket = worker.ledger.add(TP, 3, endpoints=1)
    worker._finish("crm", Delivery(event, ticket, attempts=5), Outcome("dead", "http_4xx"))
    producer.flush(0)  # the delivery report: refused
    worker._on_revoke(None, [TopicPartition(*TP)])
    assert consumer.committed == []
    with pytest.raises(DeadLetterLostError):
        worker._commit()


class _RevokingConsumer(_ClosingConsumer):
    """Closing revokes what it holds, running the worker's callback as librdkafka does;
    `before_revoke` is what happens on other threads just before."""

    def __init__(self, worker: NotifyWorker, before_revoke: Any) -> None:
        super().__init__()
        self.worker, self.before_revoke = worker, before_revoke

    def close(self) -> None:
        self.before_revoke()
        self.worker._on_revoke(self, [TopicPartition(*TP)])
        self.closed = True


def test_a_letter_lost_in_the_revokes_flush_lets_close_finish_and_is_reported() -> None:
    """An endpoint halted mid-attempt dead-letters its event after _shutdown's own commit;
    the revoke that closing runs flushes it, and Kafka refuses it there. The close still
    ends (leaving the group), the event's offset is not committed, and the loss is raised
    once the consumer is closed, so the worker exits failing as for any lost letter."""
    worker = _worker()
    producer = _RefusingProducer()
    event = webhooks.from_done(events.done("img-4"))
    assert event is not None
    ticket = worker.ledger.add(TP, 11, endpoints=1)

    def halted_attempt_ends() -> None:
        assert worker._lost is None  # nothing lost yet: refused at the revoke's flush
        worker._finish("crm", Delivery(event, ticket, attempts=2), Outcome("dead", "http_5xx"))

    consumer = _RevokingConsumer(worker, halted_attempt_ends)
    worker._producer = producer  # type: ignore[assignment]
    worker._consumer = consumer  # type: ignore[assignment]
    with pytest.raises(DeadLetterLostError, match="TOPIC_AUTHORIZATION_FAILED"):
        worker._shutdown()
    assert consumer.closed
    # _shutdown's own commit, before the attempt ended, left the event to be read again
    # (its offset, 11); the revoke committed nothing past it.
    assert [[(tp.topic, tp.partition, tp.offset) for tp in c] for c in consumer.committed] == [
        [(*TP, 11)]
    ]
    assert worker.ledger.positions() == {}  # forgotten with its partition: none to commit


def test_a_revoke_whose_flush_loses_a_letter_does_not_raise_and_commits_nothing() -> None:
    """A rebalance's revoke: the loss is left to the loop's next commit to stop the worker."""
    worker = _worker()
    producer, consumer = _RefusingProducer(), _ClosingConsumer()
    worker._producer = producer  # type: ignore[assignment]
    worker._consumer = consumer  # type: ignore[assignment]
    event = webhooks.from_done(events.done("img-5"))
    assert event is not None
    ticket = worker.ledger.add(TP, 20, endpoints=1)
    worker._finish("crm", Delivery(event, ticket, attempts=5), Outcome("dead", "http_4xx"))
    assert worker._lost is None  # still queued: refused only at the revoke's flush
    worker._on_revoke(None, [TopicPartition(*TP)])
    assert consumer.committed == []
    with pytest.raises(DeadLetterLostError):
        worker._commit()
