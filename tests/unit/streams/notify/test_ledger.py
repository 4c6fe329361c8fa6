"""The ledger: a partition commits up to its oldest event some endpoint still holds."""

from __future__ import annotations

from streams.notify.ledger import Ledger

TP = ("p.done", 0)


def test_a_partition_commits_up_to_its_oldest_unfinished_offset() -> None:
    ledger = Ledger()
    first = ledger.add(TP, 10, endpoints=2)
    second = ledger.add(TP, 11, endpoints=1)
    ledger.add(TP, 12, endpoints=0)  # nobody subscribed: finished at once
    assert ledger.in_hand() == 3
    assert ledger.positions() == {TP: 10}
    ledger.done(second)
    assert ledger.positions() == {}  # still 10: nothing moved
    ledger.done(first)
    assert ledger.positions() == {}
    ledger.done(first)
    assert ledger.positions() == {TP: 13}
    assert ledger.in_hand() == 0


def test_positions_of_some_partitions_only_and_again_after_a_failed_commit() -> None:
    ledger = Ledger()
    other = ("p.dlq", 4)
    ledger.add(TP, 0, endpoints=0)
    ledger.add(other, 7, endpoints=0)
    assert ledger.positions({other}) == {other: 8}
    moved = ledger.positions()
    assert moved == {TP: 1}
    ledger.unmark(moved)
    assert ledger.positions() == {TP: 1}


def test_a_revoked_partition_is_forgotten_and_late_finishes_count_nothing() -> None:
    ledger = Ledger()
    ticket = ledger.add(TP, 5, endpoints=2)
    ledger.forget([TP])
    assert ledger.in_hand() == 0 and ledger.positions() == {}
    ledger.done(ticket)
    ledger.done(ticket)
    assert ledger.in_hand() == 0
    # Assigned again: a fresh start from what the consumer reads next.
    ledger.add(TP, 5, endpoints=1)
    assert ledger.in_hand() == 1 and ledger.positions() == {TP: 5}
