"""One stage worker: consume a batch, process it, upload, and move it on in one transaction.

Lifecycle: `run()` until `stop()` (or SIGTERM via the CLI). Each batch is
  poll -> decode and fetch blobs -> run the stage -> upload blobs ->
  begin transaction -> produce next events, metadata records, dead letters ->
  send the consumed offsets -> commit.
A transient failure aborts the batch and keeps its messages in hand to retry after a
backoff; nothing is committed that was not produced, so nothing is lost or duplicated.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.observe.metrics import (
    ASSIGNED_PARTITIONS,
    BATCH_SECONDS,
    BATCH_SIZE,
    IN_FLIGHT,
    REBALANCES,
    RETRIES,
)
from streams.runner.accounting import Ledger
from streams.runner.batch import Slot, attach_inputs, done_prefix, make_slots, offsets, outputs
from streams.runner.blobs import BlobStore
from streams.runner.executor import Executor, default_processes
from streams.runner.offsets import CommittedOffsets
from streams.runner.stage import StageContext, StageSpec, TransientError
from streams.runner.transactions import FatalKafkaError, TransactionalOutput, kafka_error

log = logging.getLogger("pixelfleet.runner")


class StageWorker:
    def __init__(self, settings: FleetSettings, spec: StageSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.stage = spec.name
        self.topics = Topics(settings.topic_prefix)
        self.inbox = self.topics.inbox(self.stage)
        self.group = self.topics.group(self.stage)
        runner = settings.runner
        self.budget_s = min(runner.batch_budget_s, runner.max_poll_interval_ms / 1000 * 0.5)
        self.batch_size = min(runner.batch_max, 50)
        self.ledger = Ledger(self.stage, settings.runner.halt_after_failures)
        self.stats = self.ledger.stats
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._heartbeat = time.monotonic()
        self._carry: list[Message] = []
        self._revoked: set[tuple[str, int]] = set()
        self._retries_in_a_row = 0
        self._resume_needed = False
        self._paused = False
        self._batch_started = 0.0
        self._per_message_s = 0.0
        ctx = StageContext(stage=self.stage, buckets=settings.buckets, params=spec.params)
        self.executor = Executor(
            spec.fn,
            ctx,
            processes=default_processes(runner.pool_workers) if spec.cpu_bound else 0,
            threads=spec.threads,
            crash_attempts=runner.crash_attempts,
            message_timeout_s=runner.message_timeout_s,
            memory_limit_mb=runner.memory_limit_mb,
        )
        self.blobs = BlobStore(
            clients.s3(settings.s3), settings.buckets, self.stage, runner.io_threads
        )
        self.consumer: Consumer = clients.consumer(
            settings.kafka,
            self.group,
            **{
                "partition.assignment.strategy": "cooperative-sticky",
                "max.poll.interval.ms": runner.max_poll_interval_ms,
                "session.timeout.ms": runner.session_timeout_ms,
                "heartbeat.interval.ms": max(500, runner.session_timeout_ms // 5),
                "enable.auto.offset.store": False,
                "client.id": f"{self.group}.{runner.replica_id}",
            },
        )
        producer_conf = {
            "transaction.timeout.ms": runner.transaction_timeout_ms,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200_000,
        }
        transactional_id = f"{self.group}.{runner.replica_id}"
        self.output = TransactionalOutput(
            lambda: clients.transactional_producer(
                settings.kafka, transactional_id, **producer_conf
            ),
            self.stage,
        )
        self.offsets = CommittedOffsets(self.stage, self.consumer, self.output)

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def live(self) -> tuple[bool, str]:
        quiet = time.monotonic() - self._heartbeat
        limit = self.budget_s * 3 + 60
        return quiet < limit, f"{self.stage}: last loop {quiet:.0f} s ago (limit {limit:.0f} s)"

    def ready(self) -> tuple[bool, str]:
        return (
            self._ready.is_set(),
            f"{self.stage}: {'ready' if self._ready.is_set() else 'starting'}",
        )

    def run(self) -> None:
        if self.spec.prepare is not None:
            self.spec.prepare(self.spec.params)
        self.output.init()
        self.consumer.subscribe(
            [self.inbox],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._ready.set()
        log.info(
            "worker started", extra={"stage": self.stage, "topic": self.inbox, "group": self.group}
        )
        try:
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                try:
                    self._step()
                except KafkaException as exc:
                    # Broker restarts and coordinator moves surface here; only a fatal error
                    # (e.g. a fenced producer) ends the worker.
                    if kafka_error(exc).fatal():
                        raise FatalKafkaError(str(exc)) from exc
                    self._retries_in_a_row += 1
                    log.warning(
                        "kafka error, will retry", extra={"stage": self.stage, "error": str(exc)}
                    )
                    self._sleep_alive(self._backoff())
        finally:
            self._close()

    def _step(self) -> None:
        batch = self._next_batch()
        if batch:
            self._run_batch(batch)
            return
        if not self._carry:
            try:
                self.offsets.commit_past_markers()
            except TransientError as exc:
                log.info(
                    "idle offset commit skipped", extra={"stage": self.stage, "error": str(exc)}
                )
        self.offsets.update_lag()

    def _backoff(self) -> float:
        runner = self.settings.runner
        return float(
            min(
                runner.backoff_max_s,
                runner.backoff_initial_s * 2 ** min(self._retries_in_a_row, 10),
            )
        )

    def _close(self) -> None:
        # Leaving the group hands our partitions over at once instead of after a session timeout.
        self._ready.clear()
        try:
            self.consumer.close()
        finally:
            self.executor.close()
            self.blobs.close()
            self.output.close()
        log.info("worker stopped", extra={"stage": self.stage, "committed": self.stats.committed})

    # -- rebalance callbacks (run inside poll/consume) ------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned += 1
        self._resume_needed = True  # the assignment is applied after this callback returns
        REBALANCES.labels(self.stage, "assign").inc()
        for tp in partitions:
            self._revoked.discard((tp.topic, tp.partition))
        ASSIGNED_PARTITIONS.labels(self.stage).inc(len(partitions))
        log.info(
            "partitions assigned",
            extra={"stage": self.stage, "partitions": [tp.partition for tp in partitions]},
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._ready.is_set():  # close() revokes everything too; that is no rebalance
            self.stats.revoked += 1
        self._drop(partitions, "revoke")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.lost += 1
        self._drop(partitions, "lost")

    def _drop(self, partitions: list[TopicPartition], kind: str) -> None:
        # Messages of these partitions in hand are not ours to commit any more: the next
        # owner starts from the committed offset, so dropping them loses nothing.
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._revoked |= gone
        self._carry = self._still_ours(self._carry)
        self.offsets.forget(gone)
        REBALANCES.labels(self.stage, kind).inc()
        ASSIGNED_PARTITIONS.labels(self.stage).dec(len(partitions))
        log.info(
            f"partitions {kind}",
            extra={"stage": self.stage, "partitions": [tp.partition for tp in partitions]},
        )

    # -- batches ---------------------------------------------------------------

    def _next_batch(self) -> list[Message]:
        if self._resume_needed:
            self._resume()
        batch, self._carry = self._carry[: self.batch_size], self._carry[self.batch_size :]
        want = self.batch_size - len(batch)
        if want > 0 and not self._stop.is_set():
            for msg in self.consumer.consume(num_messages=want, timeout=0.2 if batch else 0.5):
                error = msg.error()
                if error is None:
                    batch.append(msg)
                else:
                    self._consumer_error(error)
        return batch

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise FatalKafkaError(f"consumer: {error}")
        log.warning("consumer error", extra={"stage": self.stage, "error": str(error)})

    def _keepalive(self) -> None:
        """Called while a batch is processed: serves heartbeats and rebalance callbacks.

        Only once a batch has run for a second: pausing purges librdkafka's prefetched
        messages, which would cost every fast batch a fetch round trip. Once paused, poll
        returns no messages; one that still arrives (a partition assigned mid-batch) is
        kept for the next batch.
        """
        now = time.monotonic()
        if now - self._batch_started < 1.0:
            return
        self._heartbeat = now
        if not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        self._poll_once()

    def _poll_once(self) -> None:
        msg = self.consumer.poll(0)
        if msg is not None:
            error = msg.error()
            if error is None:
                self._carry.append(msg)
            else:
                self._consumer_error(error)

    def _run_batch(self, batch: list[Message]) -> None:
        started = self._batch_started = time.monotonic()
        self._paused = False
        IN_FLIGHT.labels(self.stage).set(len(batch))
        try:
            done = self._process(batch, started)
        except TransientError as exc:
            self._retry_later(batch, "transient", exc)
            return
        except KafkaException as exc:
            self._retry_later(batch, "kafka", exc)
            return
        finally:
            IN_FLIGHT.labels(self.stage).set(0)
            if self._paused:
                self._resume()
        elapsed = time.monotonic() - started
        self._adapt(len(done), elapsed)
        BATCH_SECONDS.labels(self.stage).observe(elapsed)
        BATCH_SIZE.labels(self.stage).observe(len(done))
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(done))
        self.offsets.update_lag()

    def _resume(self) -> None:
        """Nothing stays paused between batches.

        librdkafka keeps a partition's pause flag across a lost-and-reassigned cycle (a broker
        restart does that), so resuming only what was paused before could leave a
        re-assigned partition paused forever: resume the whole current assignment.
        """
        self._resume_needed = False
        self._paused = False
        self._batch_started = 0.0
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)

    def _retry_later(self, batch: list[Message], kind: str, exc: Exception) -> None:
        """Keep the whole batch in hand and try again after a backoff; the group stays joined."""
        self.stats.retries += 1
        self._retries_in_a_row += 1
        RETRIES.labels(self.stage, kind).inc()
        self._carry = self._still_ours(batch) + self._carry
        delay = self._backoff()
        log.warning(
            "batch aborted, will retry",
            extra={
                "stage": self.stage,
                "kind": kind,
                "error": str(exc),
                "retry_in_s": round(delay, 2),
            },
        )
        self._sleep_alive(delay)

    def _still_ours(self, messages: list[Message]) -> list[Message]:
        return [m for m in messages if (m.topic(), m.partition()) not in self._revoked]

    def _sleep_alive(self, seconds: float) -> None:
        self.consumer.pause(self.consumer.assignment())
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                self._heartbeat = time.monotonic()
                self._poll_once()
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        finally:
            self._resume()

    def _adapt(self, processed: int, elapsed: float) -> None:
        # Size the next batch so that it takes about half the budget at the measured rate.
        if processed == 0:
            return
        per_message = elapsed / processed
        self._per_message_s = (
            per_message
            if not self._per_message_s
            else 0.7 * self._per_message_s + 0.3 * per_message
        )
        target = int(self.budget_s * 0.5 / max(self._per_message_s, 1e-6))
        self.batch_size = max(1, min(self.settings.runner.batch_max, target))

    # -- one batch ---------------------------------------------------------------

    def _process(self, batch: list[Message], started: float) -> list[Slot]:
        slots = make_slots(batch, self.inbox, self.topics)
        attach_inputs(slots, self.blobs, self.spec.reads_blob)
        items = [s.item for s in slots if s.item is not None]
        timed = self.executor.run(items, started + self.budget_s * 0.6, self._keepalive)
        finished = done_prefix(slots, timed)
        done = [s for s in finished if s.partition_key not in self._revoked]
        self.ledger.check_streak(done)
        messages = outputs(
            done, self.topics, self.stage, self.blobs, self.settings.runner.crash_attempts
        )
        commit = offsets(done)
        if commit:
            self.output.commit(messages, commit, self.consumer.consumer_group_metadata())
        # Work cut off by the deadline goes first into the next batch.
        self._carry = self._still_ours(batch[len(finished) :] + self._carry)
        self._retries_in_a_row = 0
        self.offsets.record(commit)
        self.ledger.account(done)
        return done
