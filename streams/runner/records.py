"""Turning stage outcomes into the records a stage produces, and raw messages into envelopes."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from schemas.events import (
    SCHEMA_VERSION,
    DeadLetter,
    Envelope,
    ErrorInfo,
    ImageProcessed,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Request,
    StageState,
    decoder,
    encode,
)
from streams.config.topics import INGEST_STAGE, Topics
from streams.runner.stage import PermanentError

SCHEMA_HEADER = "pixelfleet-schema"
CORRELATION_HEADER = "correlation-id"
Headers = list[tuple[str, str | bytes | None]]
_IMAGE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# A failure's reason is ours to write, but may quote what it read (an exception's text):
# cut, so no reason makes a record too large for the broker. A dead letter's key is the
# key a message came with when it names no image: cut too.
REASON_MAX, KEY_MAX = 4096, 256

_submitted = decoder(ImageSubmitted)
_DEFAULT_REQUEST = Request()
_envelope = decoder(Envelope)


class _Shape(msgspec.Struct):
    """Only whether a JSON object has a `submitted` key, whatever it holds (Raw takes any
    value unread; msgspec allows no union with it, so absent is an empty Raw)."""

    submitted: msgspec.Raw = msgspec.Raw(b"")


_shape = msgspec.json.Decoder(_Shape)


def _has_submitted(value: bytes) -> bool:
    try:
        return len(_shape.decode(value).submitted) > 0
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False  # not even a JSON object: the submission's error says so


# NamedTuples, not frozen dataclasses: several are built per message, and a frozen
# dataclass pays object.__setattr__ for each field.
class OutMessage(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: Headers


class Origin(NamedTuple):
    """Where a consumed message came from, for dead letters and logs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def iso_time(at: datetime) -> str:
    """The contract's timestamp form: UTC, milliseconds, a trailing Z."""
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_time(datetime.now(UTC))


def decode_input(inbox: str, topics: Topics, value: bytes, now: str) -> Envelope:
    """The ingest topic carries submissions from upstream, and envelopes the fleet sends
    back to validate (a fetched URL source); every other inbox carries envelopes."""
    try:
        if inbox == topics.ingest:
            try:
                submitted = _submitted.decode(value)
            except msgspec.ValidationError:
                # Not a submission: one of ours, or neither. Only a message shaped like an
                # envelope is read as one; otherwise the submission's own error is the one
                # worth reporting ("image_id must match ..."), not the envelope's
                # "missing required field 'submitted'".
                if _has_submitted(value):
                    return _envelope.decode(value)
                raise
            record = ImageRecord(
                image_id=submitted.image_id,
                status="processing",
                updated_at=now,
                route=[INGEST_STAGE],
                current=submitted.source.object,
                correlation_id=submitted.correlation_id,
                request=None if submitted.request == _DEFAULT_REQUEST else submitted.request,
            )
            return Envelope(submitted=submitted, route=[INGEST_STAGE], record=record)
        return _envelope.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PermanentError("undecodable", f"not a valid event for {inbox}: {exc}") from exc


# The schema header of each kind, built once: headers are made for every record produced.
_SCHEMA: dict[str, tuple[str, bytes]] = {}


def _headers(kind: str, correlation_id: str | None) -> Headers:
    schema = _SCHEMA.get(kind)
    if schema is None:
        schema = _SCHEMA[kind] = (SCHEMA_HEADER, f"{kind}/{SCHEMA_VERSION}".encode())
    if correlation_id:
        return [schema, (CORRELATION_HEADER, correlation_id.encode())]
    return [schema]


def _finish_record(record: ImageRecord, stage: str, state: StageState, now: str) -> None:
    record.stages[stage] = state
    record.updated_at = now


def success(
    topics: Topics,
    stage: str,
    envelope: Envelope,
    state: StageState,
    now: str,
    *,
    forward_to: str | None = None,
) -> list[OutMessage]:
    """The next event (or the completion event) and the full metadata record.

    `forward_to` sends the envelope to that stage's inbox instead of the route's next one.
    """
    record = envelope.record
    record.route = list(envelope.route)
    _finish_record(record, stage, state, now)
    next_topic = topics.inbox(forward_to) if forward_to else topics.after(stage, envelope.route)
    key = record.image_id.encode()
    cid = envelope.submitted.correlation_id
    if next_topic == topics.done:
        record.status = "done"
        done = ImageProcessed(
            image_id=record.image_id,
            status="done",
            finished_at=record.updated_at,
            variants=record.variants,
            category=record.category,
            correlation_id=cid,
            duplicate_of=record.duplicate_of,
        )
        onward = OutMessage(topics.done, key, encode(done), _headers("image_processed", cid))
    else:
        record.status = "processing"
        onward = OutMessage(next_topic, key, encode(envelope), _headers("envelope", cid))
    meta = OutMessage(topics.metadata, key, encode(record), _headers("image_record", cid))
    return [onward, meta]


def _category_name(envelope: Envelope | None) -> str | None:
    category = envelope.record.category if envelope else None
    return category.name if category else None


def failure(
    topics: Topics,
    stage: str,
    origin: Origin,
    envelope: Envelope | None,
    *,
    kind: str,
    reason_class: str,
    reason: str,
    state: StageState,
    quarantined: ObjectRef | None,
    now: str,
    keep_original: bool = True,
) -> list[OutMessage]:
    """The dead letter, plus the rejected record and completion event when the image is known.

    `keep_original=False` leaves the consumed message out of the letter (for one too large
    to carry: see streams.runner.oversize) and records its size instead.
    """
    image_id = envelope.record.image_id if envelope else _image_id_from_key(origin.key)
    reason = reason[:REASON_MAX]
    original, encoding = "", "utf-8"
    if keep_original:
        try:
            original = origin.value.decode("utf-8")
        except UnicodeDecodeError:
            original, encoding = base64.b64encode(origin.value).decode(), "base64"
    at = now
    letter = DeadLetter(
        image_id=image_id or "",
        stage=stage,
        reason_class=reason_class,
        reason=reason,
        topic=origin.topic,
        partition=origin.partition,
        offset=origin.offset,
        attempts=state.attempts,
        at=at,
        original=original,
        original_encoding=encoding,  # type: ignore[arg-type]
        quarantined=quarantined,
        original_size=None if keep_original else len(origin.value),
        category=None if keep_original else _category_name(envelope),
        correlation_id=None if keep_original or not envelope else envelope.submitted.correlation_id,
    )
    key = (image_id or "").encode() or (origin.key or b"")[:KEY_MAX]
    cid = envelope.submitted.correlation_id if envelope else None
    out = [OutMessage(topics.dlq, key, encode(letter), _headers("dead_letter", cid))]
    if envelope is None:
        # Not even the event could be read: no record to update beyond the dead letter.
        return out
    record = envelope.record
    record.route = list(envelope.route)
    # A bad input is rejected; a crash or a bug is a failure of ours.
    record.status = "rejected" if kind == "permanent" else "failed"
    record.errors.append(ErrorInfo(stage=stage, reason_class=reason_class, reason=reason, at=at))
    _finish_record(record, stage, state, now)
    done = ImageProcessed(
        image_id=record.image_id, status=record.status, finished_at=at, correlation_id=cid
    )
    out.append(OutMessage(topics.metadata, key, encode(record), _headers("image_record", cid)))
    out.append(OutMessage(topics.done, key, encode(done), _headers("image_processed", cid)))
    return out


def _image_id_from_key(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    return text if _IMAGE_ID.match(text) else None
