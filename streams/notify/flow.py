"""Which partitions the notify consumer holds, and whether they are paused.

The worker pauses every partition it holds while too many events are in hand, and resumes
them once half of those are finished. librdkafka keeps a partition's pause flag across a
revoke and a later assignment of the same partition, and a pause asked for in the assign
callback, before the assignment is applied, is lost for a partition it never held. So the
flag is never left to chance: a partition taken away is resumed as it goes (whoever gets
it next starts unpaused), and one assigned is assigned here at once, then paused or resumed
to match the others. Without that, a partition could come back paused while the worker
believes it reads it: the consumer polls, its health is green, and the lag grows unseen.

The group uses the cooperative-sticky assignor: a rebalance takes away only the partitions
that move, so the others keep their events in hand and their pause state.
"""

from __future__ import annotations

from typing import Protocol

from confluent_kafka import TopicPartition

ASSIGNMENT_STRATEGY = "cooperative-sticky"


class FlowConsumer(Protocol):
    """What this module asks of confluent_kafka.Consumer."""

    def incremental_assign(self, partitions: list[TopicPartition]) -> None: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...


class Flow:
    """The partitions held and the pause state, always applied to all of them alike."""

    def __init__(self, max_in_flight: int) -> None:
        self.limit = max_in_flight
        self.assigned: list[TopicPartition] = []
        self.paused = False

    def throttle(self, consumer: FlowConsumer, in_hand: int) -> None:
        """Pauses every partition while `limit` events are in hand; resumes them below half
        of it. The consumer keeps polling either way, so the group never sees it stall.

        With no partition held the state may flip freely: `assign` applies it to each
        partition that comes, whatever librdkafka remembers of it."""
        if not self.paused and in_hand >= self.limit:
            self.paused = True
            if self.assigned:
                consumer.pause(self.assigned)
        # Below half of it, counted exactly: `limit // 2` would ask for fewer than none in
        # hand at a limit of 1, and the partitions would stay paused for ever.
        elif self.paused and 2 * in_hand < self.limit:
            self.paused = False
            if self.assigned:
                consumer.resume(self.assigned)

    def assign(self, consumer: FlowConsumer, partitions: list[TopicPartition]) -> None:
        """The assign callback's part: the new partitions join those held, paused or not as
        they are. Assigned here rather than after the callback returns, since a pause of a
        partition not assigned yet does not hold."""
        consumer.incremental_assign(partitions)
        if partitions:
            (consumer.pause if self.paused else consumer.resume)(partitions)
        self.assigned = [*self.assigned, *partitions]

    def revoke(self, consumer: FlowConsumer, partitions: list[TopicPartition]) -> None:
        """The revoke (or lost) callback's part: resumed as they go, so none comes back
        paused should the group hand it to this worker again."""
        if partitions:
            consumer.resume(partitions)
        gone = {(p.topic, p.partition) for p in partitions}
        self.assigned = [p for p in self.assigned if (p.topic, p.partition) not in gone]
