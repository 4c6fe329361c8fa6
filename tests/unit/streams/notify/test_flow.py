"""The pause state of the notify consumer's partitions across rebalances. librdkafka keeps
a partition's pause flag when it is revoked and assigned again, and drops a pause asked for
before the assignment is applied: the worker sets the flag of every partition it gets
itself. (tests/integration/streams/notify/test_notify.py proves it on the real broker.)"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from streams.notify.flow import Flow

Call = tuple[str, list[tuple[str, int]]]


class _Consumer:
    """Records the calls, in order, by partition."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _record(self, name: str, partitions: list[TopicPartition]) -> None:
        self.calls.append((name, [(p.topic, p.partition) for p in partitions]))

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._record("assign", partitions)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._record("pause", partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._record("resume", partitions)


def _tps(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition("t", n) for n in numbers]


def _named(*numbers: int) -> list[tuple[str, int]]:
    return [("t", n) for n in numbers]


def test_pauses_at_the_limit_and_resumes_below_half_of_it() -> None:
    consumer, flow = _Consumer(), Flow(10)
    flow.assign(consumer, _tps(0, 1))
    for in_hand in (9, 10, 11, 5):  # 5 is not below half of 10
        flow.throttle(consumer, in_hand)
    assert flow.paused
    flow.throttle(consumer, 4)
    assert not flow.paused
    assert consumer.calls == [
        ("assign", _named(0, 1)),
        ("resume", _named(0, 1)),
        ("pause", _named(0, 1)),
        ("resume", _named(0, 1)),
    ]


def test_a_partition_assigned_while_paused_is_assigned_then_paused() -> None:
    consumer, flow = _Consumer(), Flow(10)
    flow.assign(consumer, _tps(0))
    flow.throttle(consumer, 10)
    consumer.calls.clear()
    flow.assign(consumer, _tps(1))
    # Paused after it was assigned: a pause of a partition not assigned yet is lost.
    assert consumer.calls == [("assign", _named(1)), ("pause", _named(1))]
    assert [p.partition for p in flow.assigned] == [0, 1]


def test_a_partition_revoked_while_paused_is_resumed_and_comes_back_resumed() -> None:
    consumer, flow = _Consumer(), Flow(10)
    flow.assign(consumer, _tps(0, 1))
    flow.throttle(consumer, 10)
    consumer.calls.clear()
    flow.revoke(consumer, _tps(0, 1))  # everything taken: its events are forgotten
    assert consumer.calls == [("resume", _named(0, 1))]
    # Nothing held and nothing in hand: the state may flip, with no call to make.
    flow.throttle(consumer, 0)
    assert not flow.paused and consumer.calls == [("resume", _named(0, 1))]
    flow.assign(consumer, _tps(1))
    # Resumed explicitly, whatever flag librdkafka kept from before.
    assert consumer.calls[-2:] == [("assign", _named(1)), ("resume", _named(1))]


def test_the_pause_holds_for_what_stays_when_part_is_revoked() -> None:
    consumer, flow = _Consumer(), Flow(10)
    flow.assign(consumer, _tps(0, 1, 2))
    flow.throttle(consumer, 10)
    flow.revoke(consumer, _tps(1))  # a cooperative rebalance takes one partition only
    assert flow.paused and [p.partition for p in flow.assigned] == [0, 2]
    flow.throttle(consumer, 0)
    assert consumer.calls[-1] == ("resume", _named(0, 2))


def test_a_limit_of_one_resumes_once_the_event_is_done() -> None:
    """Half of 1 rounded down is 0, and nothing is ever fewer than no events in hand."""
    consumer, flow = _Consumer(), Flow(1)
    flow.assign(consumer, _tps(0))
    flow.throttle(consumer, 1)
    assert flow.paused
    flow.throttle(consumer, 0)
    assert not flow.paused
    assert consumer.calls[-1] == ("resume", _named(0))


def test_the_pause_keeps_its_hysteresis_at_small_limits() -> None:
    """Paused at the limit, resumed only below half of it: no pause and resume per event."""
    for limit, stays_paused, resumes in ((2, 1, 0), (3, 2, 1), (4, 2, 1), (5, 3, 2)):
        consumer, flow = _Consumer(), Flow(limit)
        flow.assign(consumer, _tps(0))
        flow.throttle(consumer, limit)
        flow.throttle(consumer, stays_paused)
        assert flow.paused, limit
        flow.throttle(consumer, resumes)
        assert not flow.paused, limit
