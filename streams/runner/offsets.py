"""What a worker has committed, per partition: the lag gauge and commits past markers."""

from __future__ import annotations

import contextlib
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.observe.metrics import CONSUMER_LAG
from streams.runner.transactions import TransactionalProducer

Key = tuple[str, int]
# An idle worker checks for positions past markers this often: a commit is a transaction.
MARKER_COMMIT_EVERY_S = 2.0
# How long to wait for the group coordinator's committed offsets.
COMMITTED_TIMEOUT_S = 10
# How often the lag gauge asks the coordinator about partitions it has no offset for yet.
ASK_EVERY_S = 5.0
# Short: a gauge is not worth holding up a batch for while the coordinator moves.
LAG_ASK_TIMEOUT_S = 1.0


class CommittedOffsets:
    def __init__(self, stage: str, consumer: Consumer, producer: TransactionalProducer) -> None:
        self.stage = stage
        self.consumer = consumer
        self.producer = producer
        self._committed: dict[Key, int] = {}
        # Partitions the group has never committed on, as the coordinator said: their lag
        # is everything the topic still holds (the group starts at the earliest offset).
        self._never: set[Key] = set()
        self._last_marker_commit = 0.0
        self._last_asked = 0.0

    def record(self, commit: list[TopicPartition]) -> None:
        for tp in commit:
            self._committed[(tp.topic, tp.partition)] = tp.offset
            self._never.discard((tp.topic, tp.partition))

    def _ask(self, assignment: list[TopicPartition], timeout: float = COMMITTED_TIMEOUT_S) -> None:
        """Learn the committed offsets of assigned partitions we know nothing of yet."""
        unknown = [
            tp
            for tp in assignment
            if (tp.topic, tp.partition) not in self._committed
            and (tp.topic, tp.partition) not in self._never
        ]
        if not unknown:
            return
        for tp in self.consumer.committed(unknown, timeout=timeout):
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                continue
            if tp.offset >= 0:
                self._committed[key] = tp.offset
            else:
                self._never.add(key)

    def landed(self, commit: list[TopicPartition]) -> bool:
        """Whether the group's committed offsets are now exactly `commit`: a transaction
        given up on (its commit call overran, a new producer fenced it) may still have been
        completed by the coordinator, and then the batch is done, not to be run again.
        Before the batch every one of these partitions stood below its offset here."""
        try:
            got = self.consumer.committed(commit, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException:
            return False  # unknown: retrying is what was done before this check
        want = {(tp.topic, tp.partition): tp.offset for tp in commit}
        return len(got) == len(want) and all(
            tp.error is None and want.get((tp.topic, tp.partition)) == tp.offset for tp in got
        )

    def forget(self, gone: set[Key]) -> None:
        """Partitions that left us: their lag is the next owner's to report."""
        for topic, partition in gone:
            self._committed.pop((topic, partition), None)
            self._never.discard((topic, partition))
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.stage, topic, str(partition))

    def commit_past_markers(self) -> None:
        """Commit positions that only moved past transaction markers; call only when idle
        with no message in hand.

        A transaction's commit marker takes an offset after the last record. Committing
        `last record + 1` leaves the group one offset behind the end forever, which is lag to
        KEDA (no scale to zero). With no message in hand, every offset below the consumer's
        position was either committed by us or is a marker, so committing the position is safe.
        """
        now = time.monotonic()
        if now - self._last_marker_commit < MARKER_COMMIT_EVERY_S:
            return
        self._last_marker_commit = now
        assignment = self.consumer.assignment()
        self._ask(assignment)
        ahead = [
            TopicPartition(tp.topic, tp.partition, tp.offset)
            for tp in self.consumer.position(assignment)
            if tp.offset >= 0
            and tp.offset > self._committed.get((tp.topic, tp.partition), tp.offset)
        ]
        if ahead:
            self.producer.commit([], ahead, self.consumer.consumer_group_metadata())
            self.record(ahead)

    def update_lag(self) -> None:
        """End offset minus committed offset per assigned partition, from cached watermarks;
        for a partition never committed on, end minus start (what KEDA counts too), so a
        stage stuck before its first commit shows its backlog instead of nothing."""
        assignment = self.consumer.assignment()
        now = time.monotonic()
        if now - self._last_asked >= ASK_EVERY_S:
            self._last_asked = now
            with contextlib.suppress(KafkaException):
                self._ask(assignment, LAG_ASK_TIMEOUT_S)
        for tp in assignment:
            key = (tp.topic, tp.partition)
            committed = self._committed.get(key)
            if committed is None and key not in self._never:
                continue  # not known yet: no figure rather than a wrong one
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            start = committed if committed is not None else max(low or 0, 0)
            CONSUMER_LAG.labels(self.stage, tp.topic, str(tp.partition)).set(max(0, high - start))
