"""Which offsets may be committed: a record counts as handled once every endpoint it went to
has delivered it, dead-lettered it or dropped it.

Endpoints finish in any order, so the committable position of a partition is its oldest
offset still in hand (or one past the newest read, when none is). A crash redelivers only
what lies beyond that position: delivery is at least once, never less.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    # offset -> endpoints still to finish it; only offsets with work left are kept, oldest first.
    open: OrderedDict[int, int] = field(default_factory=OrderedDict)
    next_offset: int | None = None  # one past the newest offset read
    committed: int | None = None  # the last position handed out for commit


@dataclass(frozen=True)
class Ticket:
    """One record's claim, handed to each endpoint it goes to; `done` once per endpoint."""

    partition: _Partition
    offset: int
    # Which partition, by name: a rebalance names partitions so, and the endpoints withdraw
    # the queued events of those revoked by it (`Endpoint.withdraw`).
    tp: TopicPartition


class Ledger:
    """Thread-safe: the consumer adds records, the endpoints' threads finish them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._in_hand = 0

    def add(self, tp: TopicPartition, offset: int, endpoints: int) -> Ticket:
        with self._lock:
            part = self._parts.setdefault(tp, _Partition())
            part.next_offset = offset + 1
            if endpoints > 0:
                part.open[offset] = endpoints
                self._in_hand += endpoints
            return Ticket(part, offset, tp)

    def done(self, ticket: Ticket) -> None:
        with self._lock:
            part = ticket.partition
            left = part.open.get(ticket.offset)
            if left is None:
                return  # its partition was revoked meanwhile; the new owner reads it again
            self._in_hand -= 1
            if left <= 1:
                del part.open[ticket.offset]
            else:
                part.open[ticket.offset] = left - 1

    def holds(self, ticket: Ticket) -> bool:
        """Whether the ticket's record is still to be finished here: not once its partition
        was forgotten (revoked), even if the partition came back since (a new _Partition)."""
        with self._lock:
            return self._parts.get(ticket.tp) is ticket.partition and (
                ticket.offset in ticket.partition.open
            )

    def in_hand(self) -> int:
        """Deliveries not finished yet, all partitions together."""
        with self._lock:
            return self._in_hand

    def positions(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The committable position of each partition that moved since the last call."""
        moved: dict[TopicPartition, int] = {}
        with self._lock:
            for tp, part in self._parts.items():
                if only is not None and tp not in only:
                    continue
                if part.open:
                    position = next(iter(part.open))
                elif part.next_offset is not None:
                    position = part.next_offset
                else:
                    continue
                if position != part.committed:
                    part.committed = position
                    moved[tp] = position
        return moved

    def forget(self, tps: list[TopicPartition]) -> None:
        """Drops revoked partitions: their deliveries still under way finish, uncounted."""
        with self._lock:
            for tp in tps:
                part = self._parts.pop(tp, None)
                if part is not None:
                    self._in_hand -= sum(part.open.values())
                    part.open.clear()

    def unmark(self, moved: dict[TopicPartition, int]) -> None:
        """A commit of these positions failed: hand them out again next time."""
        with self._lock:
            for tp in moved:
                part = self._parts.get(tp)
                if part is not None:
                    part.committed = None
