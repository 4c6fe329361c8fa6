"""The operations commands' own bookkeeping topics, and the transactional writer they share.

Three compacted topics, created on first use (and safe to create again):

- `<prefix>.dlq.redriven`, key `partition:offset` of a dead letter: which redrive re-sent it.
- `<prefix>.webhooks.redriven`, the same for the webhook dead letters `pixelfleet webhooks
  redrive` delivered.
- `<prefix>.erasures`, key image_id: the objects an erasure still has to delete. The entry
  is written in the same transaction as the image's metadata tombstone and replaced by a
  tombstone of its own once every object is gone, so a crash in between leaves a to-do
  list that the next `delete` or `cleanup` finishes first.

The first and the last are written only inside Kafka transactions under a fixed
transactional id per command: a second copy of a command fences the first, so two never
commit interleaved halves. A webhook redrive's mark follows an HTTP POST, which no Kafka
transaction can hold: it is written right after the receiver took the event (see
streams/ops/webhook_redrive.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streams.app.admin import ensure_topics
from streams.config.settings import FleetSettings
from streams.config.topics import COMPACTED, Topics, TopicSpec
from streams.io import clients
from streams.io.topic_reader import topic_messages
from streams.runner.records import OutMessage

# A transaction of an operations command holds at most this many records: small enough
# to commit in well under the transaction timeout, large enough to amortise the commit.
TRANSACTION_RECORDS = 500


def redriven_topic(prefix: str) -> str:
    return Topics(prefix).dlq_redriven


def webhooks_redriven_topic(prefix: str) -> str:
    return Topics(prefix).webhooks_redriven


def erasures_topic(prefix: str) -> str:
    return Topics(prefix).erasures


def ensure_ledgers(settings: FleetSettings, admin: AdminClient | None = None) -> list[str]:
    """Create the compacted bookkeeping topics where missing; the changes made.

    Always before a ledger is read: reading a topic that does not exist may make a broker
    with auto-creation on create it, with the wrong (deleting, not compacting) policy.
    """
    partitions = settings.topics.partitions
    specs = [
        TopicSpec(redriven_topic(settings.topic_prefix), partitions, COMPACTED),
        TopicSpec(webhooks_redriven_topic(settings.topic_prefix), partitions, COMPACTED),
        TopicSpec(erasures_topic(settings.topic_prefix), partitions, COMPACTED),
    ]
    return ensure_topics(admin or clients.admin(settings.kafka), specs)


def latest_by_key(settings: FleetSettings, topic: str) -> dict[str, bytes]:
    """The newest value of every key of a ledger topic (created first where missing); a key
    whose newest record is a tombstone is left out."""
    created = ensure_ledgers(settings)
    if any(change.startswith(f"created topic {topic} ") for change in created):
        return {}  # new, so empty; and its partitions may have no leader for a moment
    messages = topic_messages(settings, topic, strict=True)
    latest: dict[str, bytes] = {}
    for message in messages:
        key, value = (message.key() or b"").decode(), message.value()
        if value:
            latest[key] = value
        else:
            latest.pop(key, None)
    return latest


class TransactionalWriter:
    """Produces lists of records, each list in one transaction (split at TRANSACTION_RECORDS).

    The transactional id is fixed per command and fleet: a crashed run's open transaction
    is aborted by the next run's init, and a second concurrent run fences the first.
    """

    def __init__(self, settings: FleetSettings, name: str) -> None:
        transactional_id = f"{settings.topic_prefix}.ops.{name}"
        self.producer: Producer = clients.transactional_producer(
            settings.kafka, transactional_id, **{"linger.ms": 20}
        )
        self.producer.init_transactions(60)

    def commit(self, messages: Iterable[OutMessage]) -> None:
        """All of `messages` become visible together, or none do (the error goes up)."""
        self.producer.begin_transaction()
        try:
            for message in messages:
                self._produce(message)
            self.producer.commit_transaction(60)
        except (KafkaException, BufferError):
            self.producer.abort_transaction(60)
            raise

    def _produce(self, message: OutMessage) -> None:
        while True:
            try:
                self.producer.produce(
                    message.topic,
                    key=message.key,
                    value=message.value or None,  # b"": a tombstone
                    headers=message.headers,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def close(self) -> None:
        self.producer.flush(30)
