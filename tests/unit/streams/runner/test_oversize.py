"""A record too large for the broker refuses its image, never the batch."""

from __future__ import annotations

import msgspec
import pytest

from processors import webhooks
from schemas.events import (
    CORRELATION_ID_MAX,
    Category,
    DeadLetter,
    ImageRecord,
    ObjectRef,
    Variant,
    decoder,
    encode,
)
from streams.config.topics import Topics
from streams.runner import oversize, records
from streams.runner.batch import Slot, records_of
from streams.runner.executor import Failure
from streams.runner.records import Origin, OutMessage
from streams.runner.stage import PermanentError, StageResult
from tests.unit.streams.runner.fakes import NOW, envelope, submission

TOPICS = Topics("px")
INBOX = "px.enhance"
LIMIT = oversize.MESSAGE_MAX_BYTES
BULK = {"pad": "x" * (LIMIT + 10)}


def _slot(image_id: str, value: bytes = b"{}") -> Slot:
    origin = Origin(INBOX, 0, 5, image_id.encode(), value)
    return Slot(origin=origin, started_at=NOW, envelope=envelope(image_id))


def _fit(out: list[OutMessage]) -> None:
    sizes = [oversize.wire_size(m) for m in out]
    assert max(sizes) <= LIMIT, sizes


def _record(out: list[OutMessage]) -> ImageRecord:
    """The last metadata record: the one of the image a test is about."""
    return decoder(ImageRecord).decode([m.value for m in out if m.topic == "px.metadata"][-1])


def _letter(out: list[OutMessage]) -> DeadLetter:
    return decoder(DeadLetter).decode(next(m.value for m in out if m.topic == "px.dlq"))


def test_wire_size_counts_key_value_headers_and_framing() -> None:
    message = OutMessage("t", b"key", b"v" * 100, [("h", b"12"), ("n", None)])
    assert oversize.wire_size(message) == oversize.FRAMING_BYTES + 3 + 100 + 3 + 1
    small = OutMessage("t", b"k", b"v", [])
    big = OutMessage("t", b"k", b"v" * LIMIT, [])
    bigger = OutMessage("u", b"k", b"v" * (LIMIT + 10), [])
    assert oversize.too_large([small]) == []
    assert oversize.too_large([small, big, bigger]) == [bigger, big]
    assert oversize.topics_of(oversize.too_large([small, big, bigger])) == {"t", "u"}


def test_a_success_whose_record_is_too_large_becomes_a_rejected_image() -> None:
    ok, bloated = _slot("img-ok"), _slot("img-big")
    for slot in (ok, bloated):
        assert slot.envelope is not None
        key = f"{slot.envelope.record.image_id}/thumb.webp"
        ref = ObjectRef(bucket="images", key=key)
        thumb = Variant(variant="thumb", format="webp", width=8, height=8, bytes=9, object=ref)
        slot.envelope.record.variants = [thumb]
        slot.outcome = StageResult(slot.envelope)
    assert bloated.envelope is not None
    bloated.envelope.record.enhancement = BULK
    out = records_of([ok, bloated], TOPICS, "enhance", {}, crash_attempts=3)
    _fit(out)
    assert [(m.topic, m.key) for m in out] == [
        ("px.compress", b"img-ok"),
        ("px.metadata", b"img-ok"),
        ("px.dlq", b"img-big"),
        ("px.metadata", b"img-big"),
        ("px.done", b"img-big"),
    ]
    assert isinstance(bloated.outcome, Failure)  # the ledger counts it as a dead letter
    assert (bloated.outcome.kind, bloated.outcome.reason_class) == ("permanent", "record_too_large")
    letter = _letter(out)
    assert letter.reason_class == "record_too_large" and "px.compress" in letter.reason
    assert (letter.original, letter.original_size) == ("{}", None)  # small: kept whole
    record = _record(out)
    assert record.status == "rejected" and record.enhancement is None  # slimmed
    assert [e.reason_class for e in record.errors] == ["record_too_large"]  # once, not twice
    assert record.stages["enhance"].outcome == "rejected"
    # The objects the stage wrote stay findable for delete and cleanup.
    assert [v.object.key for v in record.variants] == ["img-big/thumb.webp"]


def test_a_huge_undecodable_message_is_dead_lettered_without_its_bytes() -> None:
    slot = _slot("img-junk", value=b"\xff" * 900_000)  # base64 makes it 1.2 MB
    slot.envelope = None
    slot.outcome = Failure("permanent", "undecodable", "not an event")
    out = records_of([slot], TOPICS, "validate", {}, crash_attempts=3)
    _fit(out)
    letter = _letter(out)
    assert (letter.original, letter.original_size) == ("", 900_000)
    assert (letter.topic, letter.partition, letter.offset) == (INBOX, 0, 5)


def test_a_rejected_image_with_a_bulky_record_keeps_its_letter_and_a_slim_record() -> None:
    slot = _slot("img-bad", value=encode(envelope("img-bad")))
    assert slot.envelope is not None
    slot.envelope.record.original = BULK
    slot.outcome = Failure("permanent", "too_small", "3x3 px")
    out = records_of([slot], TOPICS, "validate", {}, crash_attempts=3)
    _fit(out)
    record = _record(out)
    assert record.original is None and record.status == "rejected"
    assert [e.reason_class for e in record.errors] == ["too_small"]
    # The letter was small enough: it keeps the original event.
    assert _letter(out).original_size is None
    assert _letter(out).original == slot.origin.value.decode()


def test_a_bulky_envelope_is_refused_and_its_letter_leaves_it_out() -> None:
    slot = _slot("img-huge")
    assert slot.envelope is not None
    slot.envelope.record.quality = {f"q{i}": 1.0 for i in range(100_000)}
    slot.origin = slot.origin._replace(value=encode(slot.envelope))
    slot.outcome = StageResult(slot.envelope)
    out = records_of([slot], TOPICS, "enhance", {}, crash_attempts=3)
    _fit(out)
    letter = _letter(out)
    assert (letter.reason_class, letter.original, letter.original_size) == (
        "record_too_large",
        "",
        len(slot.origin.value),
    )
    assert [e.reason_class for e in _record(out).errors] == ["record_too_large"]


@pytest.mark.parametrize("bulk", ["envelope", "record"])
def test_a_letter_without_its_original_still_names_category_and_correlation_id(
    bulk: str,
) -> None:
    """The `rejected` webhook reads both from the letter when the original is left out,
    whether the record was sent whole, slimmed or bare."""
    slot = _slot("img-cat")
    assert slot.envelope is not None
    slot.envelope.record.category = Category(name="photo", score=0.9, evidence=["x" * 2000])
    slot.envelope.record.quality = {f"q{i}": 1.0 for i in range(100_000)}
    if bulk == "record":  # even slimmed, the record stays too large: sent bare
        ref = ObjectRef(bucket="images", key="k" * 200)
        many = Variant(variant="v", format="webp", width=1, height=1, bytes=1, object=ref)
        slot.envelope.record.variants = [many] * 6000
    slot.origin = slot.origin._replace(value=encode(slot.envelope))
    slot.outcome = Failure("permanent", "too_small", "3x3 px")
    out = records_of([slot], TOPICS, "categorize", {}, crash_attempts=3)
    _fit(out)
    letter = _letter(out)
    assert (letter.original, letter.category, letter.correlation_id) == ("", "photo", "cid-1")
    record = _record(out)
    assert record.category == Category(name="photo", score=0.9)  # evidence left out
    assert record.correlation_id == "cid-1"
    letter_value = next(m.value for m in out if m.topic == "px.dlq")
    event = webhooks.from_dead_letter(letter_value)
    assert event.category == "photo"
    body = msgspec.json.decode(event.body)
    assert (body["correlation_id"], body["data"]["category"]) == ("cid-1", "photo")


def test_a_record_still_too_large_when_slimmed_is_sent_bare() -> None:
    slot = _slot("img-many")
    assert slot.envelope is not None
    ref = ObjectRef(bucket="images", key="k" * 200)
    many = Variant(variant="v", format="webp", width=1, height=1, bytes=1, object=ref)
    slot.envelope.record.variants = [many] * 6000  # slimming keeps variants: 1.5 MB
    slot.outcome = Failure("permanent", "too_small", "x" * 100_000)
    out = records_of([slot], TOPICS, "validate", {}, crash_attempts=3)
    _fit(out)
    record = _record(out)
    assert record.variants == [] and record.status == "rejected"
    # The reason is cut to what a record may hold, and said once.
    assert [len(e.reason) for e in record.errors] == [records.REASON_MAX]


def test_a_pool_stage_refused_for_size_is_recorded_with_what_it_wrote() -> None:
    slot = _slot("img-pool")
    # A pool stage hands back a copy of the envelope, made in its own process.
    result = envelope("img-pool")
    ref = ObjectRef(bucket="images", key="img-pool/web.webp")
    result.record.variants = [
        Variant(variant="web", format="webp", width=8, height=8, bytes=9, object=ref)
    ]
    result.record.enhancement = BULK
    slot.outcome = StageResult(result)
    out = records_of([slot], TOPICS, "compress", {}, crash_attempts=3)
    _fit(out)
    assert [v.object.key for v in _record(out).variants] == ["img-pool/web.webp"]


def test_a_correlation_id_past_its_limit_is_undecodable() -> None:
    value = encode(submission("img-cid", correlation_id="c" * (CORRELATION_ID_MAX + 1)))
    with pytest.raises(PermanentError) as caught:
        records.decode_input("px.ingest", TOPICS, value, NOW)
    assert caught.value.reason_class == "undecodable"
