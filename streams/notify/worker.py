"""The `notify` consumer group: reads `<prefix>.done` and `<prefix>.dlq`, hands each event to
the endpoints that subscribed to it, commits what they finished.

The consumer never waits on an endpoint: it polls every half second whatever the endpoints
do (so the group never takes it for dead and rebalances), pauses its partitions while too
many events are in hand, and commits each partition up to its oldest unfinished event.
Delivery is at least once: a crash, or a partition moving to another replica, sends the
unfinished events again, with the same event id. An event is finished (dead-lettered,
counted, its offset released) only while its partition is still this worker's: once a
rebalance took the partition, its new owner reads the event again and finishes it there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from processors import webhooks
from processors.webhooks import NotAnEventError, WebhookEvent
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.netguard import Refused, check_url
from streams.io.safe_http import SafeFetcher
from streams.notify.delivery import Delivery, Endpoint, Outcome
from streams.notify.flow import ASSIGNMENT_STRATEGY, Flow
from streams.notify.ledger import Ledger
from streams.notify.setup import NotifySetupError, build_fetcher, group, webhooks_dlq
from streams.observe.metrics import NOTIFY_DEAD_LETTERS, NOTIFY_DROPPED

# What callers imported from here before setup.py took the pieces the redrive shares.
__all__ = [
    "DeadLetterLostError",
    "NotifySetupError",
    "NotifyWorker",
    "build_fetcher",
    "group",
    "webhooks_dlq",
]

log = logging.getLogger("pixelfleet.notify")

POLL_S = 0.5
BATCH = 500
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


class DeadLetterLostError(RuntimeError):
    """Kafka refused a webhook dead letter: the worker stops rather than commit past it."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NotifyWorker:
    def __init__(
        self,
        settings: FleetSettings,
        *,
        fetcher: SafeFetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.dlq_topic = webhooks_dlq(settings.topic_prefix)
        self.fetcher = fetcher or build_fetcher(settings)
        self.ledger = Ledger()
        self.endpoints = self._endpoints(clock)
        self._stop = threading.Event()
        # Set once the consumer has subscribed, cleared as the worker shuts down: before
        # and after, it takes no events, and the probe must not say it does.
        self._ready = threading.Event()
        self._not_ready = "starting"  # what the probe says while _ready is clear
        self._heartbeat = time.monotonic()
        self._flow = Flow(settings.notify.max_in_flight)
        # Held while a rebalance hands partitions over (withdraw, commit, forget) and while
        # an event is finished, so no event of a partition being handed over is finished
        # after the commit that left it to the new owner: that owner finishes it again.
        self._handover = threading.Lock()
        self.revocations = 0  # partitions taken away (a rebalance), for logs and tests
        self._lost: str | None = None  # why a dead letter was not stored, once one was not
        # Made by `run`: building the worker checks the settings and connects to nothing.
        self._producer: Producer
        self._consumer: Consumer

    def _endpoints(self, clock: Callable[[], float]) -> list[Endpoint]:
        made = []
        for sub in self.settings.notify.subscriptions:
            try:
                # Checked now so a typo or a refused address stops the start, not each event
                # (names are resolved and vetted again at every attempt).
                check_url(sub.url, self.fetcher.policy)
                endpoint = Endpoint(
                    sub, self.settings.notify, self.fetcher, self._finish, clock=clock
                )
            except Refused as exc:
                raise NotifySetupError(f"subscription {sub.name}: {exc}") from exc
            except ValueError as exc:  # the secret
                raise NotifySetupError(str(exc)) from exc
            made.append(endpoint)
        return made

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self._heartbeat
        broken = [f"endpoint {e.name}: {e.broken}" for e in self.endpoints if e.broken]
        if broken:
            return False, "; ".join(broken)
        ok = age < 60
        return ok, f"last poll {age:.1f}s ago"

    @property
    def paused(self) -> bool:
        """Whether the partitions are paused: too many events in hand."""
        return self._flow.paused

    def ready(self) -> tuple[bool, str]:
        if not self._ready.is_set():
            return False, self._not_ready
        state = ", paused" if self._flow.paused else ""
        held = len(self._flow.assigned)
        return True, f"{held} partitions, {self.ledger.in_hand()} events in hand{state}"

    def ensure_dlq_topic(self) -> None:
        """Creates `<prefix>.webhooks.dlq` when it is missing (like `pixelfleet init` would)."""
        admin = clients.admin(self.settings.kafka)
        topic = NewTopic(
            self.dlq_topic,
            num_partitions=self.settings.topics.partitions,
            replication_factor=-1,  # the broker's default, as `pixelfleet init` does
            config={"retention.ms": str(DLQ_RETENTION_MS)},
        )
        future = admin.create_topics([topic])[self.dlq_topic]
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def run(self) -> None:
        """Consumes until `stop`; then drains (up to `notify.drain_s`), commits, leaves."""
        if not self.endpoints:
            log.warning("no webhook subscriptions in notify.subscriptions: nothing to deliver")
        self.ensure_dlq_topic()
        kafka, runner = self.settings.kafka, self.settings.runner
        self._producer = clients.producer(kafka, **{"linger.ms": 5})
        self._consumer = clients.consumer(
            kafka,
            group(self.settings.topic_prefix),
            **{
                # As the stages: a rebalance takes only the partitions that move, so the
                # others keep their deliveries under way (streams/notify/flow.py).
                "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
                "max.poll.interval.ms": runner.max_poll_interval_ms,
                "session.timeout.ms": runner.session_timeout_ms,
            },
        )
        for endpoint in self.endpoints:
            endpoint.start()
        self._consumer.subscribe(
            [self.topics.done, self.topics.dlq],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._ready.set()
        log.info(
            "notify worker consuming",
            extra={"group": group(self.settings.topic_prefix), "endpoints": len(self.endpoints)},
        )
        last_commit = time.monotonic()
        failed = True
        try:
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                for message in self._consumer.consume(BATCH, POLL_S):
                    self._handle(message)
                self._throttle()
                self._producer.poll(0)
                if time.monotonic() - last_commit >= self.settings.notify.commit_interval_s:
                    self._commit()
                    last_commit = time.monotonic()
            failed = False
        finally:
            # Failing already (maybe from a lost dead letter): that error is the one to see.
            self._shutdown(report_lost=not failed)

    def _shutdown(self, *, report_lost: bool = True) -> None:
        self._ready.clear()  # draining now: no new events are taken
        self._not_ready = "stopping"
        end = time.monotonic() + self.settings.notify.drain_s
        for endpoint in self.endpoints:
            endpoint.close()
        for endpoint in self.endpoints:
            endpoint.join(max(end - time.monotonic(), 0))
        for endpoint in self.endpoints:
            endpoint.halt()
        try:
            if self._lost is None:  # else the events are to be delivered again: no commit
                self._commit()
        finally:
            # Even when that commit found a dead letter lost: leaving the group now hands
            # the partitions over at once, not after a session timeout. Closing revokes
            # them, which commits once more what finished since (_on_revoke).
            try:
                self._consumer.close()
            finally:
                self._producer.flush(10)
                for endpoint in self.endpoints:
                    # An attempt under way ends within its request timeout.
                    endpoint.join(self.settings.notify.request_timeout_s + 1)
                self.fetcher.close()
        if report_lost and self._lost is not None:
            # Lost since the loop's last commit and not raised yet: before the commit above
            # (skipped), or in the flush of the revoke that closing ran (_on_revoke).
            raise self._lost_error()
        log.info("notify worker stopped")

    # --- consuming ----------------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning(f"consumer error: {error}")
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return  # only error events lack them
        event = self._event(topic, message.value() or b"")
        targets = [e for e in self.endpoints if event is not None and e.wants(event)]
        ticket = self.ledger.add((topic, partition), offset, len(targets))
        for endpoint in targets:
            assert event is not None
            endpoint.offer(event, ticket)

    def _event(self, topic: str, value: bytes) -> WebhookEvent | None:
        try:
            if topic == self.topics.dlq:
                return webhooks.from_dead_letter(value)
            return webhooks.from_done(value)
        except NotAnEventError as exc:
            # Not ours to fix and nobody to tell: the stages wrote it; skip it.
            log.warning(f"skipping a record of {topic}: {exc}", extra={"topic": topic})
            return None

    def _throttle(self) -> None:
        """Pauses every partition while too many events are in hand; polling goes on."""
        self._flow.throttle(self._consumer, self.ledger.in_hand())

    def _commit(self, only: set[tuple[str, int]] | None = None) -> None:
        moved = self.ledger.positions(only)
        # An event is finished after its dead letter was produced, so flushing now stores
        # every dead letter of what `moved` covers before its offset is committed.
        if moved and self._producer.flush(5) > 0:
            self.ledger.unmark(moved)
            log.warning("webhook dead letters not acknowledged yet; commit postponed")
            return
        # flush() also counts a message Kafka refused as gone from its queue: only the
        # delivery reports say whether each dead letter was stored. Checked even when
        # nothing moved: a rebalance may have taken the partition of the lost letter.
        if self._lost is not None:
            self.ledger.unmark(moved)
            raise self._lost_error()
        if not moved:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in moved.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.ledger.unmark(moved)
            log.warning(f"commit failed, retried at the next interval: {exc}")

    def _lost_error(self) -> DeadLetterLostError:
        return DeadLetterLostError(
            f"a webhook dead letter was not stored in {self.dlq_topic} ({self._lost}); "
            "stopping without committing, so the events since the last commit are "
            "delivered again after a restart. Check that the topic exists and that "
            "this worker may write to it."
        )

    def _on_assign(self, consumer: object, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": [str(p) for p in partitions]})
        self._flow.assign(self._consumer, partitions)

    def _on_revoke(self, consumer: object, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        if gone:
            self.revocations += 1
            log.info("partitions revoked", extra={"partitions": sorted(gone)})
        with self._handover:
            # First, so the endpoints start no more of them while the commit flushes. The
            # withdrawn events stay unfinished: the commit stops before the oldest of them.
            self._withdraw(gone)
            # A letter lost before or during this commit's flush: nothing is committed, and
            # raising from the consumer's callback would break consumer.close() (or the
            # rebalance); the loop's next commit, or _shutdown once closed, reports it.
            with contextlib.suppress(DeadLetterLostError):
                self._commit(gone)
            self.ledger.forget(sorted(gone))
        self._flow.revoke(self._consumer, partitions)

    def _on_lost(self, consumer: object, partitions: list[TopicPartition]) -> None:
        # Already someone else's: a commit would be refused. The new owner reads again from
        # the last commit, so what is under way here is delivered twice (at least once).
        gone = {(p.topic, p.partition) for p in partitions}
        self.revocations += 1
        log.warning("partitions lost", extra={"partitions": sorted(gone)})
        with self._handover:
            self._withdraw(gone)
            self.ledger.forget(sorted(gone))
        self._flow.revoke(self._consumer, partitions)

    def _withdraw(self, gone: set[tuple[str, int]]) -> None:
        """The endpoints take back their events of these partitions: the new owner reads
        them again from the last commit, so delivering them here would send each twice. An
        attempt under way ends, and is neither tried again nor finished; it alone may
        arrive twice."""
        withdrawn = sum(endpoint.withdraw(gone) for endpoint in self.endpoints)
        if withdrawn:
            log.info(
                f"{withdrawn} webhook deliveries withdrawn: their partitions moved",
                extra={"partitions": sorted(gone)},
            )

    # --- the endpoints' side ------------------------------------------------------------

    def _dead_letter_stored(self, error: KafkaError | None, _message: Message) -> None:
        """Delivery report of a dead letter (on the thread that polls the producer)."""
        if error is not None and self._lost is None:
            self._lost = str(error)
            log.error(f"webhook dead letter not stored in {self.dlq_topic}: {error}")

    def _finish(self, endpoint: str, delivery: Delivery, outcome: Outcome) -> None:
        """Called on an endpoint's thread (or the consumer's, for an event refused at once)."""
        with self._handover:
            if not self.ledger.holds(delivery.ticket):
                # Its partition moved since: the new owner reads the event again and
                # finishes it, so a dead letter written here would be its second.
                return
            self._finish_held(endpoint, delivery, outcome)

    def _finish_held(self, endpoint: str, delivery: Delivery, outcome: Outcome) -> None:
        event = delivery.event
        if outcome.kind == "dead":
            record = webhooks.dead_letter(
                event,
                endpoint=endpoint,
                reason=outcome.reason,
                last_status=delivery.last_status,
                last_error=delivery.last_error,
                attempts=delivery.attempts,
                given_up_at=_now(),
            )
            self._produce(event.image_id.encode(), record)
            NOTIFY_DEAD_LETTERS.labels(endpoint, outcome.reason).inc()
            log.warning(
                f"webhook event {event.event_id} for {endpoint} dead-lettered: {outcome.reason}",
                extra={
                    "endpoint": endpoint,
                    "image_id": event.image_id,
                    "status": delivery.last_status,
                    "error": delivery.last_error,
                },
            )
        elif outcome.kind == "dropped":
            NOTIFY_DROPPED.labels(endpoint).inc()
        self.ledger.done(delivery.ticket)

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(
                    self.dlq_topic, value=value, key=key, on_delivery=self._dead_letter_stored
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let deliveries drain
