"""One batch of consumed messages: decode, fetch, and turn outcomes into produced records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition

from schemas.events import Envelope, ObjectRef, StageState
from streams.config.topics import Topics
from streams.runner import oversize, records
from streams.runner.blobs import BlobStore, input_ref
from streams.runner.executor import Failure, Outcome, Timed, WorkItem
from streams.runner.records import Origin, OutMessage
from streams.runner.stage import Admit, BlobWrite, PermanentError, StageResult


@dataclass(slots=True)
class Slot:
    """One consumed message on its way through a batch."""

    origin: Origin
    started_at: str
    envelope: Envelope | None = None
    item: WorkItem | None = None
    outcome: Outcome | None = None
    seconds: float = 0.0

    @property
    def partition_key(self) -> tuple[str, int]:
        return (self.origin.topic, self.origin.partition)

    @property
    def failure(self) -> Failure | None:
        return self.outcome if isinstance(self.outcome, Failure) else None


def make_slots(batch: list[Message], inbox: str, topics: Topics) -> list[Slot]:
    slots = []
    now = records.now_iso()  # one clock read per batch: this is the hot path
    for msg in batch:
        origin = Origin(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            msg.key(),
            msg.value() or b"",
        )
        slot = Slot(origin=origin, started_at=now)
        try:
            slot.envelope = records.decode_input(inbox, topics, origin.value, now)
        except PermanentError as exc:
            slot.outcome = Failure("permanent", exc.reason_class, exc.reason)
        slots.append(slot)
    return slots


# What an input of unknown size counts for (an object referenced without its size).
UNKNOWN_BLOB_BYTES = 8 * 1024 * 1024


def within_bytes(
    slots: list[Slot], limit: int, working: Callable[[Envelope], int | None] | None = None
) -> int:
    """How many slots, from the first, fit their inputs in `limit` bytes; at least one, so
    no input is ever too large to be processed. An input counts what the stage's `working`
    says it takes, else its blob's size."""
    total = 0
    for index, slot in enumerate(slots):
        size = _input_bytes(slot.envelope, working)
        if index and total + size > limit:
            return index
        total += size
    return len(slots)


def _input_bytes(
    envelope: Envelope | None, working: Callable[[Envelope], int | None] | None
) -> int:
    if envelope is None:
        return 0
    estimate = working(envelope) if working is not None else None
    if estimate is not None:
        return estimate
    ref = input_ref(envelope)
    return 0 if ref is None else UNKNOWN_BLOB_BYTES if ref.size is None else ref.size


def attach_inputs(
    slots: list[Slot], store: BlobStore, reads_blob: bool, admit: Admit | None = None
) -> None:
    """Give every decodable slot its work item, fetching its blob when the stage reads one.

    A slot the stage's `admit` sends elsewhere gets its outcome at once (skipped, forwarded)
    and neither a blob nor a call.
    """
    if admit is not None:
        for slot in slots:
            if slot.envelope is None:
                continue
            target = admit(slot.envelope)
            if target is not None:
                slot.outcome = StageResult(
                    slot.envelope, outcome="skipped", detail=f"sent to {target}", forward_to=target
                )
    wanted = [s for s in slots if s.envelope is not None and s.outcome is None]
    fetched = store.fetch_many([s.envelope for s in wanted if s.envelope]) if reads_blob else {}
    for slot in wanted:
        assert slot.envelope is not None
        blob: bytes | None = None
        if reads_blob:
            got = fetched[id(slot.envelope)]
            if isinstance(got, PermanentError):
                slot.outcome = Failure("permanent", got.reason_class, got.reason)
                continue
            blob = got
        ident = (slot.origin.topic, slot.origin.partition, slot.origin.offset)
        slot.item = WorkItem(ident, slot.envelope, blob)


def done_prefix(slots: list[Slot], timed: list[Timed]) -> list[Slot]:
    """The slots whose outcome is known: everything before the first work item not run."""
    done: list[Slot] = []
    results = iter(timed)
    for slot in slots:
        if slot.item is not None:
            result = next(results, None)
            if result is None:
                break
            slot.outcome, slot.seconds = result.outcome, result.seconds
        done.append(slot)
    return done


def next_offsets(done: list[Slot]) -> list[TopicPartition]:
    """The next offset to consume, per partition: what the transaction commits."""
    last: dict[tuple[str, int], int] = {}
    for slot in done:
        last[slot.partition_key] = max(last.get(slot.partition_key, -1), slot.origin.offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


# Where each rejected slot's original was kept, by id(slot); None: the original is gone.
Quarantined = dict[int, ObjectRef | None]


def upload_results(done: list[Slot], store: BlobStore) -> Quarantined:
    """Upload what the successes wrote and copy aside the original of each image that failed
    or was rejected (its dead letter points at the copy).

    Runs before the transaction: blobs are in S3 before any record references them.
    """
    writes: list[BlobWrite] = []
    for slot in done:
        if isinstance(slot.outcome, StageResult):
            writes.extend(slot.outcome.blobs)
    store.upload(writes)
    rejected = [s for s in done if s.failure is not None and s.envelope is not None]
    kept = store.quarantine_many([s.envelope for s in rejected if s.envelope])
    return {id(s): ref for s, ref in zip(rejected, kept, strict=True)}


def records_of(
    done: list[Slot], topics: Topics, stage: str, quarantined: Quarantined, crash_attempts: int
) -> list[OutMessage]:
    """Every record the finished slots produce: next events, metadata, dead letters.

    A record too large for the broker refuses its image rather than the batch (see
    streams.runner.oversize): the slot's outcome becomes that failure.
    """
    out: list[OutMessage] = []
    now = records.now_iso()
    for slot in done:
        if isinstance(slot.outcome, StageResult):
            result = slot.outcome
            state = StageState(
                outcome=result.outcome,
                started_at=slot.started_at,
                seconds=round(slot.seconds, 6),
                detail=result.detail,
            )
            made = records.success(
                topics, stage, result.envelope, state, now, forward_to=result.forward_to
            )
            big = oversize.too_large(made)
            if not big:
                out.extend(made)
                continue
            slot.outcome = Failure("permanent", oversize.REASON_CLASS, oversize.reason(big[0]))
            # The stage's own envelope (a pool stage's is a copy made in its process): its
            # record lists what the stage wrote, uploaded already, so delete and cleanup
            # find those objects. The input stays where it is (nothing is quarantined).
            slot.envelope = result.envelope
        out.extend(
            _failure_records(
                slot,
                topics,
                stage,
                quarantined=quarantined,
                crash_attempts=crash_attempts,
                now=now,
            )
        )
    return out


def _failure_records(
    slot: Slot,
    topics: Topics,
    stage: str,
    *,
    quarantined: Quarantined,
    crash_attempts: int,
    now: str,
) -> list[OutMessage]:
    failure = slot.failure
    assert failure is not None
    state = StageState(
        outcome="rejected" if failure.kind == "permanent" else "failed",
        started_at=slot.started_at,
        seconds=round(slot.seconds, 6),
        attempts=crash_attempts if failure.kind == "crash" else 1,
        detail=f"{failure.reason_class}: {failure.reason}"[: records.REASON_MAX],
    )

    def build(envelope: Envelope | None, keep_original: bool) -> list[OutMessage]:
        return records.failure(
            topics,
            stage,
            slot.origin,
            envelope,
            kind=failure.kind,
            reason_class=failure.reason_class,
            reason=failure.reason,
            state=state,
            quarantined=quarantined.get(id(slot)),
            now=now,
            keep_original=keep_original,
        )

    made = build(slot.envelope, True)
    over = oversize.topics_of(oversize.too_large(made))
    if not over:
        return made
    # Even the failure's records are too large: the letter leaves out the original event
    # (it stays in its topic), the record its bulky parts, whichever is over.
    envelope = slot.envelope
    if envelope is not None:
        envelope.record.errors.pop()  # the rebuild adds this failure's error again
        if over - {topics.dlq}:
            envelope = oversize.slimmed(envelope)
    made = build(envelope, topics.dlq not in over)
    if not oversize.too_large(made) or envelope is None:
        return made
    # Still too large (a record of many long parts): the least a rejected image's records
    # can say, which always fits, rather than a partition that never moves again.
    envelope.record.errors.pop()
    return build(oversize.bare(envelope), topics.dlq not in over)
