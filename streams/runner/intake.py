"""The consuming side of a stage worker: batches in, heartbeats while one runs, rebalances.

`Intake` owns the worker's consumer between transactions. It hands out batches (what was
carried over first), keeps the group membership alive while a batch runs, and follows
rebalances: messages of a partition taken away are dropped from hand, since the next
owner starts from the committed offset. All of it runs on the worker's own thread; the
rebalance callbacks run inside poll() and consume().

While a batch runs, the next one is read ahead into hand (up to the size of the batch in
hand), and only then are the partitions paused, so polling returns no more. Pausing
purges what librdkafka had fetched, and after the resume its first fetch comes about
half a second later: read before the pause, the next batch starts the moment this one
commits (fetch_throughput: 9 batches of 111 URLs with 4.7 s of the 18 s run between
batches, before).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.observe.metrics import ASSIGNED_PARTITIONS, REBALANCES
from streams.runner.accounting import WorkerStats
from streams.runner.offsets import CommittedOffsets
from streams.runner.transactions import FatalKafkaError

log = logging.getLogger("pixelfleet.runner")

# How long a worker waits for a first message before its loop goes round again.
CONSUME_WAIT_S = 0.5
# Only a batch that has run this long pauses: a fast batch's next ones are already being
# fetched, and a pause would purge them.
PAUSE_AFTER_S = 1.0
# Reading ahead stops at this many bytes of records too, however few messages they are:
# records may approach a megabyte each, and batch_max is thousands.
READ_AHEAD_MAX_BYTES = 64 * 1024 * 1024


class Intake:
    def __init__(
        self,
        consumer: Consumer,
        stage: str,
        stats: WorkerStats,
        committed: CommittedOffsets,
        *,
        started: threading.Event,
        stop: threading.Event,
        beat: Callable[[], None],
    ) -> None:
        self.consumer = consumer
        self.stage = stage
        self.stats = stats
        self.committed = committed
        self._started = started  # set once the worker runs: a revoke before it is close()'s
        self._stop = stop
        self._beat = beat
        # Messages in hand: cut off by a batch's deadline or byte budget, or kept from an
        # aborted batch; they go first into the next batch.
        self.carry: list[Message] = []
        self._revoked: set[tuple[str, int]] = set()
        # Partitions taken away since the batch in hand was formed. An assignment does not
        # clear it: a partition revoked and given back mid-batch restarts from its
        # committed offset, so the batch's own messages of it will come again.
        self._revoked_in_batch: set[tuple[str, int]] = set()
        self._resume_needed = False
        self._paused = False
        self._batch_started = 0.0
        # How many messages to read ahead while a batch runs (the size of the batch in
        # hand), and the bytes of the records read ahead so far.
        self._read_ahead = 0
        self._ahead_bytes = 0

    def subscribe(self, topic: str) -> None:
        self.consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def is_ours(self, partition: tuple[str, int]) -> bool:
        """Whether the batch in hand may still commit this partition's messages."""
        return partition not in self._revoked and partition not in self._revoked_in_batch

    def still_ours(self, messages: list[Message]) -> list[Message]:
        """Those of the carried messages whose partition is still assigned."""
        return [m for m in messages if (m.topic(), m.partition()) not in self._revoked]

    def batch_still_ours(self, messages: list[Message]) -> list[Message]:
        """Those of the batch's own messages that no rebalance has taken away since it was
        formed (even if their partition came back: the consumer reads them again)."""
        gone = self._revoked | self._revoked_in_batch
        return [m for m in messages if (m.topic(), m.partition()) not in gone]

    # -- batches -----------------------------------------------------------------

    def next_batch(self, size: int) -> list[Message]:
        """The next batch: what is in hand first, topped up from the consumer.

        The consumer is called before the batch is drawn from hand, never after: a
        rebalance runs inside that call and drops the messages in hand of the partitions
        it takes, which it could not do to messages already drawn into the batch (they
        would commit offsets the partition's next reader reads again). An exception from
        the call leaves the hand as it was. And the call is made even when the hand holds
        the whole batch: it is the poll that keeps the worker in its group between the
        last keepalive of one batch and the first of the next (uploads, the commit, the
        next batch's blobs).
        """
        if self._resume_needed:
            self.resume()
        self._read_ahead, self._ahead_bytes = size, 0
        want = size - len(self.carry)
        if self._stop.is_set():
            pass
        elif want <= 0:
            self._poll_once()
        elif self.carry:
            got = self._good(self.consumer.consume(num_messages=want, timeout=0))
            self.carry += got
        else:
            # consume(n, t) waits for n messages or t seconds, so on a quiet inbox one
            # message waited the whole timeout. poll() returns with the first one; what is
            # already fetched then tops the batch up without waiting.
            first = self.consumer.poll(CONSUME_WAIT_S)
            if first is not None:
                got = [first]
                if want > 1:
                    got += self.consumer.consume(num_messages=want - 1, timeout=0)
                got = self._good(got)
                self.carry += got
        batch, self.carry = self.carry[:size], self.carry[size:]
        # Every message in hand now is of the current assignment (a revoke drops the
        # carried ones of its partitions, and librdkafka those it had fetched).
        self._revoked_in_batch = set()
        return batch

    def batch_started(self) -> None:
        self._batch_started = time.monotonic()
        self._paused = False

    def batch_ended(self) -> None:
        """After the batch is committed or kept in hand for its retry."""
        self._revoked_in_batch = set()
        if self._paused:
            self.resume()

    def keepalive(self) -> None:
        """Called while a batch is processed: serves heartbeats and rebalance callbacks,
        and reads the next batch ahead.

        What librdkafka has fetched is taken into hand, up to the size of the batch in
        hand (or READ_AHEAD_MAX_BYTES of records); once that much is held, and the batch
        has run PAUSE_AFTER_S, the partitions are paused, so polling returns no more (one
        that still arrives, from a partition assigned mid-batch, is kept too). The hand
        stays bounded however long the batch runs: past the first second every call
        consumes (with room) or polls (paused).
        """
        self._beat()
        if self._paused:
            self._poll_once()
            return
        room = self._read_ahead - len(self.carry)
        if room > 0 and self._ahead_bytes < READ_AHEAD_MAX_BYTES:
            # The call first, on a line of its own: a revoke inside it replaces the hand.
            got = self._good(self.consumer.consume(num_messages=room, timeout=0))
            self._ahead_bytes += sum(len(m.value() or b"") for m in got)
            self.carry += got
            return
        if time.monotonic() - self._batch_started >= PAUSE_AFTER_S:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
            self._poll_once()
        # Else the hand is full within the batch's first second: no call. next_batch
        # polled at most that long ago, and a poll here could only take more into hand.

    def sleep_alive(self, seconds: float) -> None:
        """Wait (a retry's backoff) while staying in the group, the partitions paused."""
        self.consumer.pause(self.consumer.assignment())
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                self._beat()
                self._poll_once()
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        finally:
            self.resume()

    def resume(self) -> None:
        """Nothing stays paused between batches.

        librdkafka keeps a partition's pause flag across a lost-and-reassigned cycle (a broker
        restart does that), so resuming only what was paused before could leave a
        re-assigned partition paused forever: resume the whole current assignment.
        """
        self._resume_needed = False
        self._paused = False
        self._batch_started = 0.0
        # How many messages to read ahead while a batch runs (the size of the batch in
        # hand), and the bytes of the records read ahead so far.
        self._read_ahead = 0
        self._ahead_bytes = 0
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)

    def _poll_once(self) -> None:
        msg = self.consumer.poll(0)  # a revoke inside it replaces the hand: call first
        if msg is not None:
            self.carry += self._good([msg])

    def _good(self, messages: list[Message]) -> list[Message]:
        """The messages that are records; an error among them is handled (a fatal one
        raises) and left out."""
        good = []
        for msg in messages:
            error = msg.error()
            if error is None:
                good.append(msg)
            else:
                self._consumer_error(error)
        return good

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise FatalKafkaError(f"consumer: {error}")
        log.warning("consumer error", extra={"stage": self.stage, "error": str(error)})

    # -- rebalance callbacks (run inside poll/consume) ------------------------------

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
        if self._started.is_set():  # close() revokes everything too; that is no rebalance
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
        self._revoked_in_batch |= gone
        self.carry = self.still_ours(self.carry)
        self.committed.forget(gone)
        REBALANCES.labels(self.stage, kind).inc()
        ASSIGNED_PARTITIONS.labels(self.stage).dec(len(partitions))
        log.info(
            f"partitions {kind}",
            extra={"stage": self.stage, "partitions": [tp.partition for tp in partitions]},
        )
