"""Records too large for the broker: refused per image instead of stalling a partition.

librdkafka refuses a message over the producer's `message.max.bytes` at `produce()`; inside
a transaction that aborts the batch, and the retry builds the same message again, so one
image would stop its partition for good. The runner therefore measures each record before
the transaction: a success whose records are too large becomes a permanent failure
(`record_too_large`), and a failure whose own records are too large is sent slimmed (the
record without its bulky parts, the dead letter without the original event), or, when
even that is too large, bare (the least a rejected image's record can say).
"""

from __future__ import annotations

import msgspec

from schemas.events import Category, Envelope, ErrorInfo, Hints, ImageRecord, Request, StageState
from streams.runner.records import OutMessage

# The producer's limit, set explicitly on the stage producer (librdkafka's default too).
MESSAGE_MAX_BYTES = 1_000_000
# librdkafka adds a record's framing (varints, attributes; under 100 bytes) to key, value
# and headers before comparing with the limit; this keeps well clear of it.
FRAMING_BYTES = 512
REASON_CLASS = "record_too_large"
# A slimmed record keeps this much of each stage's detail and error reason, and this many
# of the latest errors.
TEXT_KEPT, ERRORS_KEPT = 256, 10


def wire_size(message: OutMessage) -> int:
    """Bytes librdkafka counts for a message, framing included (an upper bound)."""
    headers = sum(len(name) + len(value or b"") for name, value in message.headers)
    return FRAMING_BYTES + len(message.key) + len(message.value) + headers


def too_large(messages: list[OutMessage], limit: int = MESSAGE_MAX_BYTES) -> list[OutMessage]:
    """The messages over the limit, largest first (empty when every one fits)."""
    over = [m for m in messages if wire_size(m) > limit]
    return sorted(over, key=wire_size, reverse=True)


def topics_of(messages: list[OutMessage]) -> set[str]:
    return {m.topic for m in messages}


def reason(message: OutMessage, limit: int = MESSAGE_MAX_BYTES) -> str:
    return (
        f"its record for {message.topic} would be {wire_size(message):,} bytes, over the "
        f"{limit:,}-byte message limit; the image is refused so that its partition moves on"
    )


def slimmed(envelope: Envelope) -> Envelope:
    """The envelope with a record that keeps what says where the image is and why it
    stopped (status, stages, route, errors), and leaves out what it found on the way
    (original's metadata, quality, category, restore and enhance details). The variants
    stay: they name the objects a delete or cleanup must find."""
    record = envelope.record
    slim = ImageRecord(
        image_id=record.image_id,
        status=record.status,
        updated_at=record.updated_at,
        stages={name: _slim_state(state) for name, state in record.stages.items()},
        route=list(record.route),
        variants=list(record.variants),
        errors=[_slim_error(e) for e in record.errors[-ERRORS_KEPT:]],
        fetch=record.fetch,
        current=record.current,
        category=_slim_category(record.category),
        correlation_id=record.correlation_id,
        fingerprint=record.fingerprint,
        duplicate_of=record.duplicate_of,
        request=record.request,
    )
    return Envelope(
        submitted=envelope.submitted, route=envelope.route, record=slim, attempt=envelope.attempt
    )


def bare(envelope: Envelope) -> Envelope:
    """The envelope with the least a record can say (the image, its status, its route, its
    category's name and correlation id; the failure is added by the caller) and a
    submission without hints or request: a few hundred bytes whatever the image carried
    (a correlation id holds at most 256 characters)."""
    record = envelope.record
    submitted = msgspec.structs.replace(envelope.submitted, hints=Hints(), request=Request())
    stripped = ImageRecord(
        image_id=record.image_id,
        status=record.status,
        updated_at=record.updated_at,
        route=list(record.route),
        category=_slim_category(record.category),
        correlation_id=record.correlation_id,
    )
    return Envelope(
        submitted=submitted, route=list(envelope.route), record=stripped, attempt=envelope.attempt
    )


def _slim_category(category: Category | None) -> Category | None:
    """The category without its evidence (free text of any length)."""
    return Category(name=category.name, score=category.score) if category else None


def _slim_state(state: StageState) -> StageState:
    detail = state.detail[:TEXT_KEPT] if state.detail else state.detail
    return StageState(
        outcome=state.outcome,
        started_at=state.started_at,
        seconds=state.seconds,
        attempts=state.attempts,
        detail=detail,
    )


def _slim_error(error: ErrorInfo) -> ErrorInfo:
    return ErrorInfo(
        stage=error.stage,
        reason_class=error.reason_class,
        reason=error.reason[:TEXT_KEPT],
        at=error.at,
    )
