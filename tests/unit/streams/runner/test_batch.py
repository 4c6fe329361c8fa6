"""One batch's bookkeeping: slots, inputs, the finished prefix, offsets, uploads, records."""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from schemas.events import DeadLetter, Envelope, ObjectRef, decoder
from streams.config.topics import Topics
from streams.runner.batch import (
    UNKNOWN_BLOB_BYTES,
    Quarantined,
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
from streams.runner.executor import Failure, Timed, WorkItem
from streams.runner.records import Origin
from streams.runner.stage import BlobWrite, StageResult
from tests.unit.streams.runner.fakes import (
    NOW,
    FakeBlobStore,
    FakeMessage,
    envelope,
    message,
    triples,
)

TOPICS = Topics("px")
INBOX = "px.enhance"


def _slots(*messages: FakeMessage) -> list[Slot]:
    return make_slots(cast(list[Message], list(messages)), INBOX, TOPICS)


def _store(fake: FakeBlobStore) -> BlobStore:
    return cast(BlobStore, fake)


def _slot(topic: str, partition: int, offset: int, image_id: str = "img") -> Slot:
    origin = Origin(topic, partition, offset, image_id.encode(), b"")
    return Slot(origin=origin, started_at=NOW, envelope=envelope(image_id))


def test_make_slots_decodes_each_message_and_fails_garbage_for_good() -> None:
    good, bad = message(INBOX, 2, 7, "img-1"), FakeMessage(INBOX, 2, 8, b"garbage", b"img-2")
    first, second = _slots(good, bad)
    assert first.origin == Origin(INBOX, 2, 7, b"img-1", good.value_ or b"")
    assert first.envelope is not None and first.envelope.record.image_id == "img-1"
    assert first.outcome is None and first.partition_key == (INBOX, 2)
    assert second.envelope is None
    assert isinstance(second.outcome, Failure)
    assert (second.outcome.kind, second.outcome.reason_class) == ("permanent", "undecodable")
    assert first.started_at == second.started_at  # one clock read per batch


def test_attach_inputs_fetches_blobs_and_fails_the_missing_ones() -> None:
    store = FakeBlobStore(blobs={"img-1": b"JPEG-1"})
    slots = _slots(
        message(INBOX, 0, 3, "img-1"),
        FakeMessage(INBOX, 0, 4, b"garbage"),
        message(INBOX, 1, 9, "img-gone"),
    )
    attach_inputs(slots, _store(store), reads_blob=True)
    assert store.fetched == [["img-1", "img-gone"]]  # undecodable slots ask for nothing
    first, garbage, gone = slots
    assert first.item is not None
    assert (first.item.ident, first.item.blob) == ((INBOX, 0, 3), b"JPEG-1")
    assert garbage.item is None
    assert gone.item is None
    assert gone.outcome == Failure("permanent", "source_missing", "gone")


def test_attach_inputs_fetches_nothing_for_a_stage_that_reads_no_blob() -> None:
    store = FakeBlobStore()
    slots = _slots(message(INBOX, 0, 3, "img-1"), message(INBOX, 0, 4, "img-2"))
    attach_inputs(slots, _store(store), reads_blob=False)
    assert store.fetched == []
    assert [(s.item.ident, s.item.blob) for s in slots if s.item] == [
        ((INBOX, 0, 3), None),
        ((INBOX, 0, 4), None),
    ]


def _with_item(slot: Slot) -> Slot:
    assert slot.envelope is not None
    slot.item = WorkItem((slot.origin.topic, 0, slot.origin.offset), slot.envelope, None)
    return slot


def test_done_prefix_stops_at_the_first_item_not_run() -> None:
    ran, decided, ran_too, cut, decided_after = (
        _with_item(_slot(INBOX, 0, 1)),
        _slot(INBOX, 0, 2),  # no item: its outcome was known before running
        _with_item(_slot(INBOX, 0, 3)),
        _with_item(_slot(INBOX, 0, 4)),
        _slot(INBOX, 0, 5),
    )
    decided.outcome = Failure("permanent", "undecodable", "x")
    first = StageResult(envelope("a"))
    second = Failure("error", "KeyError", "k")
    slots = [ran, decided, ran_too, cut, decided_after]
    done = done_prefix(slots, [Timed(first, 0.5), Timed(second, 1.5)])
    assert done == [ran, decided, ran_too]
    assert (ran.outcome, ran.seconds, ran_too.outcome, ran_too.seconds) == (first, 0.5, second, 1.5)
    assert cut.outcome is None
    assert done_prefix(slots, []) == []


def test_next_offsets_commits_the_highest_offset_plus_one_per_partition_sorted() -> None:
    done = [
        _slot("px.other", 0, 0),
        _slot(INBOX, 1, 5),
        _slot(INBOX, 0, 7),
        _slot(INBOX, 1, 3),
    ]
    assert triples(next_offsets(done)) == [(INBOX, 0, 8), (INBOX, 1, 6), ("px.other", 0, 1)]
    assert next_offsets([]) == []


def _outcomes() -> tuple[list[Slot], list[BlobWrite]]:
    writes = [BlobWrite("work", "a/1.png", b"one"), BlobWrite("images", "a/2.webp", b"two")]
    ok, plain, rejected, undecodable = (
        _slot(INBOX, 0, 10, "img-ok"),
        _slot(INBOX, 0, 11, "img-plain"),
        _slot(INBOX, 0, 12, "img-bad"),
        _slot(INBOX, 0, 13, "img-garbled"),
    )
    assert ok.envelope and plain.envelope
    ok.outcome = StageResult(ok.envelope, blobs=writes)
    plain.outcome = StageResult(plain.envelope, outcome="skipped")
    rejected.outcome = Failure("permanent", "too_small", "3x3 px")
    undecodable.envelope = None
    undecodable.outcome = Failure("permanent", "undecodable", "x")
    return [ok, plain, rejected, undecodable], writes


def test_upload_results_uploads_what_succeeded_and_quarantines_rejected_originals() -> None:
    store = FakeBlobStore()
    done, writes = _outcomes()
    kept = upload_results(done, _store(store))
    assert store.uploaded == writes
    assert store.quarantined == ["img-bad"]  # no envelope, no original to keep
    assert kept == {id(done[2]): ObjectRef(bucket="quarantine", key="img-bad")}


def test_records_of_turns_each_outcome_into_its_records() -> None:
    done, _ = _outcomes()
    crashed = _slot(INBOX, 0, 14, "img-crash")
    crashed.outcome = Failure("crash", "worker_crashed", "died 3 times")
    done.append(crashed)
    kept: Quarantined = {id(done[2]): ObjectRef(bucket="quarantine", key="img-bad")}
    out = records_of(done, TOPICS, "enhance", kept, crash_attempts=3)
    assert [(m.topic, m.key) for m in out] == [
        ("px.compress", b"img-ok"),
        ("px.metadata", b"img-ok"),
        ("px.compress", b"img-plain"),
        ("px.metadata", b"img-plain"),
        ("px.dlq", b"img-bad"),
        ("px.metadata", b"img-bad"),
        ("px.done", b"img-bad"),
        ("px.dlq", b"img-garbled"),  # undecodable: the image id is the key it came with
        ("px.dlq", b"img-crash"),
        ("px.metadata", b"img-crash"),
        ("px.done", b"img-crash"),
    ]
    letters = [decoder(DeadLetter).decode(m.value) for m in out if m.topic == "px.dlq"]
    assert [(d.offset, d.attempts, d.reason_class) for d in letters] == [
        (12, 1, "too_small"),
        (13, 1, "undecodable"),
        (14, 3, "worker_crashed"),
    ]
    assert [d.quarantined for d in letters] == [kept[id(done[2])], None, None]
    plain = decoder(Envelope).decode(out[2].value).record.stages["enhance"]
    assert (plain.outcome, plain.started_at, plain.attempts) == ("skipped", NOW, 1)


def _sized(image_id: str, size: int | None) -> Slot:
    slot = _slot(INBOX, 0, 1, image_id)
    assert slot.envelope is not None
    slot.envelope.record.current = ObjectRef(bucket="work", key=image_id, size=size)
    return slot


def test_within_bytes_keeps_the_inputs_that_fit_and_always_the_first() -> None:
    mb = 1024 * 1024
    slots = [_sized("a", 40 * mb), _sized("b", 50 * mb), _sized("c", 20 * mb)]
    assert within_bytes(slots, 100 * mb) == 2  # c would make 110 MB
    assert within_bytes(slots, 110 * mb) == 3
    assert within_bytes([_sized("huge", 900 * mb), *slots], 100 * mb) == 1
    # An input of unknown size counts for UNKNOWN_BLOB_BYTES; no input counts for nothing.
    unknown = [_sized(f"u{i}", None) for i in range(20)]
    assert within_bytes(unknown, 10 * UNKNOWN_BLOB_BYTES) == 10
    garbage = Slot(origin=Origin(INBOX, 0, 9, b"g", b""), started_at=NOW)
    assert within_bytes([garbage] * 5, 1) == 5


def test_within_bytes_counts_what_the_stage_says_an_input_holds() -> None:
    mb = 1024 * 1024
    slots = [_sized(name, 1 * mb) for name in "abcd"]
    # Small blobs, but the stage knows each decodes to 144 MB: one per 256 MiB batch.
    assert within_bytes(slots, 256 * mb, lambda _envelope: 144 * mb) == 1
    assert within_bytes(slots, 256 * mb, lambda _envelope: 72 * mb) == 3
    # An input the stage cannot tell about counts its blob.
    assert within_bytes(slots, 256 * mb, lambda _envelope: None) == 4
