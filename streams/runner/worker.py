"""One stage worker: where a message is consumed, processed and moved on.

Lifecycle, each method on the worker's own thread unless it says otherwise:
  `run()`     blocks until `stop()`; prepares the stage (`StageSpec.prepare`), registers the
              transactional id (fencing a predecessor), subscribes, then loops over batches.
              Raises FatalKafkaError (fenced, or a fatal librdkafka error), StageHaltedError
              (too many permanent failures in a row) or the stage's StageSetupError.
  `stop()`    any thread, never blocks: the batch in hand finishes or aborts, then `run()`
              commits what is done, leaves the group and returns.
  `live()`, `ready()`   any thread, never block: the probes' answers.

One batch, in `_process()`:
  1. decode the messages and fetch their blobs (S3);
  2. run the stage function on them (inline, threads or the crash-isolating process pool)
     until the batch's deadline; what is not reached goes first into the next batch;
  3. upload the blobs the results wrote, quarantine rejected originals (S3), build records;
  4. in one transaction (`TransactionalProducer.commit`): produce the next events, metadata
     records and dead letters, send the consumed offsets, commit.
A transient failure aborts the batch and keeps its messages in hand to retry after a
backoff; nothing is committed that was not produced, so nothing is lost or duplicated.
The consuming side (batches in, heartbeats while one runs, rebalances) is `Intake`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, Message

from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.observe.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    IN_FLIGHT,
    RETRIES,
)
from streams.runner.accounting import HaltPolicy, Ledger
from streams.runner.backoff import Backoff
from streams.runner.batch import (
    Slot,
    attach_inputs,
    done_prefix,
    make_slots,
    next_offsets,
    records_of,
    upload_results,
    within_bytes,
)
from streams.runner.blobs import BlobStore
from streams.runner.executor import Executor, default_processes
from streams.runner.intake import Intake
from streams.runner.offsets import CommittedOffsets
from streams.runner.oversize import MESSAGE_MAX_BYTES
from streams.runner.sizing import BatchSizer
from streams.runner.stage import StageContext, StageSpec, TransientError
from streams.runner.transactions import FatalKafkaError, TransactionalProducer, kafka_error

log = logging.getLogger("pixelfleet.runner")

# A batch may use at most this share of the poll interval, so a slow batch never gets the
# consumer thrown out of its group.
POLL_INTERVAL_SHARE = 0.5
# The stage function stops starting new messages at this share of the budget; the rest is
# left for the uploads and the transaction.
RUN_SHARE = 0.6
FETCH_WAIT_MAX_MS = 100
# The smallest batch of a pool, per process (fleet_vs_loop: one a process left the CPUs
# 23 % idle, two 12 %).
POOL_MESSAGES_PER_PROCESS = 2
# Liveness: a loop may take three budgets (a batch, its retry, a rebalance) plus a minute.
LIVENESS_BUDGETS, LIVENESS_SLACK_S = 3, 60
# Producer: a short linger groups a batch's records per partition; the queue holds the
# largest batch's records (next event, metadata record, maybe dead letter each) many times.
PRODUCER_LINGER_MS = 5
PRODUCER_QUEUE_MESSAGES = 200_000
# Heartbeats at a fifth of the session timeout, never more often than every 500 ms.
HEARTBEATS_PER_SESSION, MIN_HEARTBEAT_MS = 5, 500


class StageWorker:
    def __init__(self, settings: FleetSettings, spec: StageSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.stage = spec.name
        self.topics = Topics(settings.topic_prefix)
        self.inbox = self.topics.inbox(self.stage)
        self.group = self.topics.group(self.stage)
        runner = settings.runner
        self.budget_s = min(
            runner.batch_budget_s,
            spec.batch_budget_s or runner.batch_budget_s,
            runner.max_poll_interval_ms / 1000 * POLL_INTERVAL_SHARE,
        )
        processes = default_processes(runner.pool_workers) if spec.cpu_bound else 0
        smallest = max(1, POOL_MESSAGES_PER_PROCESS * processes, spec.threads)
        self.sizer = BatchSizer(self.budget_s, runner.batch_max, smallest)
        self.backoff = Backoff(runner.backoff_initial_s, runner.backoff_max_s)
        self.ledger = Ledger(self.stage, HaltPolicy(runner.halt_after_failures))
        self.stats = self.ledger.stats
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._heartbeat = time.monotonic()
        ctx = StageContext(stage=self.stage, buckets=settings.buckets, params=spec.params)
        self.executor = Executor(
            spec.fn,
            ctx,
            processes=processes,
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
                "heartbeat.interval.ms": max(
                    MIN_HEARTBEAT_MS, runner.session_timeout_ms // HEARTBEATS_PER_SESSION
                ),
                "enable.auto.offset.store": False,
                "client.id": f"{self.group}.{runner.replica_id}",
                # The broker answers a fetch at once when records are there; this bounds
                # how long it holds one that waits for a transaction to commit.
                "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            },
        )
        producer_conf = {
            "transaction.timeout.ms": runner.transaction_timeout_ms,
            "linger.ms": PRODUCER_LINGER_MS,
            "compression.type": "lz4",
            "queue.buffering.max.messages": PRODUCER_QUEUE_MESSAGES,
            # What records_of measures each record against (streams.runner.oversize).
            "message.max.bytes": MESSAGE_MAX_BYTES,
        }
        transactional_id = f"{self.group}.{runner.replica_id}"
        self.producer = TransactionalProducer(
            lambda: clients.transactional_producer(
                settings.kafka, transactional_id, **producer_conf
            ),
            self.stage,
        )
        self.committed = CommittedOffsets(self.stage, self.consumer, self.producer)
        self.intake = Intake(
            self.consumer,
            self.stage,
            self.stats,
            self.committed,
            started=self._ready,
            stop=self._stop,
            beat=self._beat,
        )

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        quiet = time.monotonic() - self._heartbeat
        limit = self.budget_s * LIVENESS_BUDGETS + LIVENESS_SLACK_S
        return quiet < limit, f"{self.stage}: last loop {quiet:.0f} s ago (limit {limit:.0f} s)"

    def ready(self) -> tuple[bool, str]:
        return (
            self._ready.is_set(),
            f"{self.stage}: {'ready' if self._ready.is_set() else 'starting'}",
        )

    def run(self) -> None:
        if self.spec.prepare is not None:
            self.spec.prepare(self.spec.params)
        self.producer.init()
        # Everything alive now (modules, models, settings) lives as long as the worker: out
        # of the collector's scans, a batch's thousands of short-lived objects no longer
        # make each full collection walk the whole heap (runner_passthrough: +45 % events/s).
        gc.freeze()
        self.intake.subscribe(self.inbox)
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
                    log.warning(
                        "kafka error, will retry", extra={"stage": self.stage, "error": str(exc)}
                    )
                    self._sleep_alive(self.backoff.failed())
        finally:
            self._close()

    def _step(self) -> None:
        batch = self._next_batch()
        if batch:
            self._run_batch(batch)
            return
        if not self.intake.carry:
            try:
                self.committed.commit_past_markers()
            except TransientError as exc:
                log.info(
                    "idle offset commit skipped", extra={"stage": self.stage, "error": str(exc)}
                )
        self.committed.update_lag()

    def _close(self) -> None:
        # Leaving the group hands our partitions over at once instead of after a session timeout.
        self._ready.clear()
        try:
            self.consumer.close()
        finally:
            self.executor.close()
            self.blobs.close()
            self.producer.close()
        log.info("worker stopped", extra={"stage": self.stage, "committed": self.stats.committed})

    # -- batches ---------------------------------------------------------------

    def _next_batch(self) -> list[Message]:
        return self.intake.next_batch(self.sizer.size)

    def _run_batch(self, batch: list[Message]) -> None:
        started = time.monotonic()
        self.intake.batch_started()
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
            self.intake.batch_ended()
        elapsed = time.monotonic() - started
        self.sizer.observe(len(done), elapsed, asked=len(batch))
        BATCH_SECONDS.labels(self.stage).observe(elapsed)
        BATCH_SIZE.labels(self.stage).observe(len(done))
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(done))
        self.committed.update_lag()

    def _retry_later(self, batch: list[Message], kind: str, exc: Exception) -> None:
        """Keep the whole batch in hand and try again after a backoff; the group stays joined."""
        self.stats.retries += 1
        RETRIES.labels(self.stage, kind).inc()
        self.intake.carry = self.intake.batch_still_ours(batch) + self.intake.carry
        # The lag keeps being reported while one batch is retried (an S3 or broker outage):
        # left at its last figure, often 0, no lag alert would fire for the whole outage.
        self.committed.update_lag()
        delay = self.backoff.failed()
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

    def _sleep_alive(self, seconds: float) -> None:
        self.intake.sleep_alive(seconds)

    # -- one batch ---------------------------------------------------------------

    def _process(self, batch: list[Message], started: float) -> list[Slot]:
        """One batch, steps 1-4 of the module docstring; the slots it finished."""
        # 1. decode, fetch blobs (as many as fit the byte budget: the rest is carried over
        # below, like work the deadline cut off)
        slots = make_slots(batch, self.inbox, self.topics)
        if self.spec.reads_blob:
            limit = self.settings.runner.batch_max_bytes
            slots = slots[: within_bytes(slots, limit, self.spec.working_bytes)]
        attach_inputs(slots, self.blobs, self.spec.reads_blob, self.spec.admit)
        # 2. run the stage until the deadline; a prefix of the batch is finished
        items = [s.item for s in slots if s.item is not None]
        timed = self.executor.run(items, started + self.budget_s * RUN_SHARE, self.intake.keepalive)
        finished = done_prefix(slots, timed)
        done = [s for s in finished if self.intake.is_ours(s.partition_key)]
        # 3. blobs before the records that reference them
        quarantined = upload_results(done, self.blobs)
        messages = records_of(
            done, self.topics, self.stage, quarantined, self.settings.runner.crash_attempts
        )
        # After records_of, which may turn a success into a failure (a record too large).
        self.ledger.check_streak(done)
        # 4. records and consumed offsets in one transaction
        commit = next_offsets(done)
        if commit:
            try:
                self.producer.commit(messages, commit, self.consumer.consumer_group_metadata())
            except TransientError:
                if not self.committed.landed(commit):
                    raise
                log.warning(
                    "transaction given up on, but the coordinator had committed it",
                    extra={"stage": self.stage},
                )
        # Work cut off by the deadline goes first into the next batch.
        self.intake.carry = self.intake.batch_still_ours(
            batch[len(finished) :]
        ) + self.intake.still_ours(self.intake.carry)
        self.backoff.succeeded()
        self.committed.record(commit)
        self.ledger.account(done)
        return done
