"""Raw messages into envelopes, and stage outcomes into the records a stage produces."""

from __future__ import annotations

import base64
import json

import pytest

from schemas.events import (
    DeadLetter,
    Envelope,
    ImageProcessed,
    ImageRecord,
    ObjectRef,
    StageState,
    decoder,
    encode,
)
from streams.config.topics import Topics
from streams.runner import records
from streams.runner.records import Origin
from streams.runner.stage import PermanentError
from tests.unit.streams.runner.fakes import NOW, envelope, submission

TOPICS = Topics("px")
LATER = "2026-01-02T03:04:09.000Z"
STATE = StageState(outcome="ok", started_at=NOW, seconds=0.25)


def test_a_submission_on_ingest_becomes_an_envelope_starting_at_validate() -> None:
    value = encode(submission("img-1", correlation_id="c-9"))
    got = records.decode_input("px.ingest", TOPICS, value, LATER)
    assert got.route == ["validate"]
    assert got.submitted.image_id == "img-1"
    record = got.record
    assert (record.image_id, record.status, record.updated_at) == ("img-1", "processing", LATER)
    assert record.route == ["validate"]
    assert record.current == ObjectRef(bucket="incoming", key="up/img-1.jpg")
    assert record.correlation_id == "c-9"


def test_other_inboxes_carry_envelopes_as_they_are() -> None:
    sent = envelope("img-2", route=["validate", "enhance", "compress"])
    got = records.decode_input("px.enhance", TOPICS, encode(sent), LATER)
    assert got == sent
    assert got.record.updated_at == NOW  # the caller's clock is for new records only


@pytest.mark.parametrize(
    ("inbox", "value"),
    [
        ("px.ingest", b"\xff\x00 not json"),
        ("px.enhance", b'{"image_id": "x"}'),
        ("px.ingest", b'{"image_id": "x", "route": []}'),  # neither kind of event
    ],
)
def test_garbage_is_a_permanent_undecodable_error(inbox: str, value: bytes) -> None:
    with pytest.raises(PermanentError) as caught:
        records.decode_input(inbox, TOPICS, value, LATER)
    assert caught.value.reason_class == "undecodable"
    assert caught.value.reason.startswith(f"not a valid event for {inbox}: ")


def test_success_sends_the_envelope_to_the_next_stage_of_its_route() -> None:
    env = envelope("img-4")  # validate, categorize, enhance, compress
    onward, meta = records.success(TOPICS, "categorize", env, STATE, LATER)
    assert (onward.topic, onward.key, meta.topic, meta.key) == (
        "px.enhance",
        b"img-4",
        "px.metadata",
        b"img-4",
    )
    assert onward.headers == [("pixelfleet-schema", b"envelope/1"), ("correlation-id", b"cid-1")]
    assert meta.headers == [("pixelfleet-schema", b"image_record/1"), ("correlation-id", b"cid-1")]
    sent = decoder(Envelope).decode(onward.value)
    assert sent.record.status == "processing"
    assert sent.record.stages == {"categorize": STATE}
    assert sent.record.updated_at == LATER
    assert decoder(ImageRecord).decode(meta.value) == sent.record


def test_success_at_the_last_stage_completes_the_image() -> None:
    env = envelope("img-5", route=["validate", "compress"], correlation_id=None)
    done, meta = records.success(TOPICS, "compress", env, STATE, LATER)
    assert (done.topic, meta.topic) == ("px.done", "px.metadata")
    # Without a correlation id only the schema header is sent.
    assert done.headers == [("pixelfleet-schema", b"image_processed/1")]
    assert meta.headers == [("pixelfleet-schema", b"image_record/1")]
    event = decoder(ImageProcessed).decode(done.value)
    assert (event.image_id, event.status, event.finished_at) == ("img-5", "done", LATER)
    record = decoder(ImageRecord).decode(meta.value)
    assert (record.status, record.route, list(record.stages)) == ("done", env.route, ["compress"])


def _origin(value: bytes, key: bytes | None = b"img-6") -> Origin:
    return Origin(topic="px.enhance", partition=3, offset=41, key=key, value=value)


def _fail(
    origin: Origin, env: Envelope | None, kind: str, quarantined: ObjectRef | None = None
) -> list[records.OutMessage]:
    state = StageState(outcome="rejected", started_at=NOW, seconds=0.5, attempts=2)
    return records.failure(
        TOPICS,
        "enhance",
        origin,
        env,
        kind=kind,
        reason_class="too_small",
        reason="3x3 px",
        state=state,
        quarantined=quarantined,
        now=LATER,
    )


def test_a_rejected_image_gets_a_dead_letter_a_record_and_a_done_event() -> None:
    env = envelope("img-6")
    kept = ObjectRef(bucket="quarantine", key="enhance/img-6/img-6.jpg")
    value = encode(env)
    out = _fail(_origin(value), env, "permanent", kept)
    assert [(m.topic, m.key) for m in out] == [
        ("px.dlq", b"img-6"),
        ("px.metadata", b"img-6"),
        ("px.done", b"img-6"),
    ]
    assert [m.headers[0][1] for m in out] == [
        b"dead_letter/1",
        b"image_record/1",
        b"image_processed/1",
    ]
    letter = decoder(DeadLetter).decode(out[0].value)
    assert (letter.image_id, letter.stage, letter.reason_class, letter.reason) == (
        "img-6",
        "enhance",
        "too_small",
        "3x3 px",
    )
    assert (letter.topic, letter.partition, letter.offset, letter.attempts) == (
        "px.enhance",
        3,
        41,
        2,
    )
    assert (letter.original, letter.original_encoding) == (value.decode(), "utf-8")
    assert letter.quarantined == kept
    record = decoder(ImageRecord).decode(out[1].value)
    assert record.status == "rejected"
    assert [(e.stage, e.reason_class, e.at) for e in record.errors] == [
        ("enhance", "too_small", LATER)
    ]
    assert record.stages["enhance"].outcome == "rejected"
    assert decoder(ImageProcessed).decode(out[2].value).status == "rejected"


@pytest.mark.parametrize("kind", ["crash", "error"])
def test_a_crash_or_a_bug_is_a_failure_of_ours(kind: str) -> None:
    env = envelope("img-7")
    out = _fail(_origin(encode(env), key=b"img-7"), env, kind)
    assert decoder(ImageRecord).decode(out[1].value).status == "failed"
    assert decoder(ImageProcessed).decode(out[2].value).status == "failed"
    assert decoder(DeadLetter).decode(out[0].value).quarantined is None


def test_an_unreadable_message_is_only_dead_lettered_in_base64_keyed_as_it_came() -> None:
    raw = b"\xff\xfe\x00binary"
    (only,) = _fail(_origin(raw, key=b"img-8"), None, "permanent")
    assert (only.topic, only.key) == ("px.dlq", b"img-8")
    assert only.headers == [("pixelfleet-schema", b"dead_letter/1")]
    letter = decoder(DeadLetter).decode(only.value)
    assert letter.image_id == "img-8"  # a key that is a valid image id names the image
    assert letter.original_encoding == "base64"
    assert base64.b64decode(letter.original) == raw


@pytest.mark.parametrize("key", [b"not an id!", b"\xff\xfe", None])
def test_a_key_that_is_no_image_id_leaves_the_dead_letter_anonymous(key: bytes | None) -> None:
    (only,) = _fail(_origin(b"{}", key=key), None, "permanent")
    letter = decoder(DeadLetter).decode(only.value)
    assert (letter.image_id, letter.original, letter.original_encoding) == ("", "{}", "utf-8")
    assert only.key == (key or b"")


def test_validate_reads_an_envelope_the_fetch_stage_sent_back_on_ingest() -> None:
    """A URL source comes back from fetch as an envelope on validate's inbox (ingest)."""
    sent = envelope("img-3")
    sent.route = ["fetch", "validate"]
    decoded = records.decode_input("px.ingest", TOPICS, encode(sent), NOW)
    assert decoded.route == ["fetch", "validate"]
    assert decoded.record.image_id == "img-3"


def _reason(inbox: str, value: bytes) -> str:
    with pytest.raises(PermanentError) as caught:
        records.decode_input(inbox, TOPICS, value, LATER)
    return caught.value.reason


def test_a_bad_submission_is_reported_with_its_own_error_not_the_envelope_s() -> None:
    bad = {"source": {"object": {"bucket": "bkt", "key": "k"}}, "submitted_at": NOW}
    reason = _reason("px.ingest", json.dumps({**bad, "image_id": "a b"}).encode())
    assert "`$.image_id`" in reason and "submitted" not in reason, reason
    # Not even a JSON object: what the submission's decoder says.
    assert "Expected `object`, got `array`" in _reason("px.ingest", b"[1]")


def test_a_bad_envelope_on_ingest_is_reported_with_the_envelope_s_error() -> None:
    sent = json.loads(encode(envelope("img-4")))
    del sent["route"]
    reason = _reason("px.ingest", json.dumps(sent).encode())
    assert "missing required field `route`" in reason, reason
