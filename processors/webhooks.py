"""Webhooks, the pure part: which fleet event becomes which webhook, its JSON body, its
stable id, its signature, who subscribed to it, and how long to wait before trying again.

No I/O: `streams.notify` reads the topics, calls these and does the HTTP. The same body
goes to every subscriber and on every attempt; only the timestamp, and so the signature,
changes from one attempt to the next.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from schemas.events import DeadLetter, Envelope, ImageProcessed

EventType = Literal["done", "rejected", "duplicate"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
# Where an event was read: the done topic or the fleet's dead-letter topic.
Source = Literal["done", "dlq"]

API_VERSION = 1
EVENT_ID_HEADER = "X-Pixelfleet-Event-Id"
EVENT_TYPE_HEADER = "X-Pixelfleet-Event"
TIMESTAMP_HEADER = "X-Pixelfleet-Timestamp"
SIGNATURE_HEADER = "X-Pixelfleet-Signature"
SIGNATURE_SCHEME = "v1"

# What one delivery attempt's HTTP status means for the event.
Verdict = Literal["delivered", "gone", "retry", "reject"]

_done = msgspec.json.Decoder(ImageProcessed)
_letter = msgspec.json.Decoder(DeadLetter)
_envelope = msgspec.json.Decoder(Envelope)
# Sorted keys: the body of an event is the same bytes whoever builds it, and when.
_encoder = msgspec.json.Encoder(order="sorted")


class NotAnEventError(ValueError):
    """A record of the done or dead-letter topic that does not decode as its contract."""


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: EventType
    image_id: str
    category: str | None
    body: bytes  # the JSON payload


def event_id(source: Source, value: bytes) -> str:
    """A stable id: the same Kafka record gives the same id however often it is read again
    (after a crash, a rebalance), so a receiver can drop repeats by it."""
    digest = hashlib.sha256(b"pixelfleet-webhook-v1\0" + source.encode() + b"\0" + value)
    return "evt_" + digest.hexdigest()[:32]


def _payload(
    eid: str, kind: EventType, image_id: str, *, at: str, cid: str | None, data: dict[str, Any]
) -> bytes:
    return _encoder.encode(
        {
            "id": eid,
            "type": kind,
            "api_version": API_VERSION,
            "image_id": image_id,
            "occurred_at": at,
            "correlation_id": cid,
            "data": data,
        }
    )


def from_done(value: bytes) -> WebhookEvent | None:
    """The event of a record of `<prefix>.done`, or None when it announces nothing of its
    own: a rejected or failed image's end event is announced from its dead letter, which
    the same transaction wrote and which says why."""
    try:
        done = _done.decode(value)
    except msgspec.DecodeError as exc:
        raise NotAnEventError(f"not an ImageProcessed: {exc}") from exc
    if done.status != "done":
        return None
    kind: EventType = "duplicate" if done.duplicate_of else "done"
    eid = event_id("done", value)
    category = done.category.name if done.category else None
    data: dict[str, Any] = msgspec.to_builtins(done)
    body = _payload(
        eid, kind, done.image_id, at=done.finished_at, cid=done.correlation_id, data=data
    )
    return WebhookEvent(eid, kind, done.image_id, category, body)


def from_dead_letter(value: bytes) -> WebhookEvent:
    """The `rejected` event of a record of `<prefix>.dlq`. The category and correlation id
    come from the stage's input when it was an envelope (a dead letter of an unreadable
    event has neither), or from the letter when it left that input out; the original
    message itself is not sent."""
    try:
        letter = _letter.decode(value)
    except msgspec.DecodeError as exc:
        raise NotAnEventError(f"not a DeadLetter: {exc}") from exc
    # A letter too large to keep its original carries these two itself.
    category, cid = letter.category, letter.correlation_id
    if letter.original and letter.original_encoding == "utf-8":
        try:
            envelope = _envelope.decode(letter.original)
        except msgspec.DecodeError:
            envelope = None  # an ImageSubmitted, or bytes that never decoded
        if envelope is not None:
            category = envelope.record.category.name if envelope.record.category else None
            cid = envelope.submitted.correlation_id
    eid = event_id("dlq", value)
    data: dict[str, Any] = {
        "stage": letter.stage,
        "reason_class": letter.reason_class,
        "reason": letter.reason,
        "at": letter.at,
        "attempts": letter.attempts,
        "category": category,
        "quarantined": msgspec.to_builtins(letter.quarantined),
    }
    body = _payload(eid, "rejected", letter.image_id, at=letter.at, cid=cid, data=data)
    return WebhookEvent(eid, "rejected", letter.image_id, category, body)


def matches(event: WebhookEvent, events: Collection[str], categories: Collection[str]) -> bool:
    """Whether a subscription to `events`, optionally only of `categories` (empty: any),
    wants `event`. An event without a category passes no category filter."""
    if event.type not in events:
        return False
    return not categories or event.category in categories


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over "<timestamp>." followed by the body."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def headers(event: WebhookEvent, secret: bytes, timestamp: int) -> dict[str, str]:
    """Every header of one attempt; the timestamp is the attempt's own, so a receiver can
    refuse a replayed old request."""
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.event_id,
        EVENT_TYPE_HEADER: event.type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, event.body),
    }


def verify(
    secret: bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: the timestamp is recent and the signature is ours."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature.strip())


def verdict(status: int) -> Verdict:
    """2xx: delivered. 410: the receiver ended the subscription. 408, 429 and 5xx: try
    again. Anything else (another 4xx, a redirect, which is never followed): the receiver
    refuses this event, and asking again will not change its mind."""
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status in (408, 429) or 500 <= status < 600:
        return "retry"
    return "reject"


def backoff_s(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    jitter: float,
    retry_after_s: float | None = None,
    retry_after_max_s: float = 300.0,
) -> float:
    """The wait after failed attempt number `attempt` (1-based): exponential from
    `initial_s`, capped at `max_s`, with equal jitter (`jitter` in [0, 1) picks a point in
    the upper half, so retries of many events spread out yet never come back at once). A
    server's Retry-After is honoured when longer, up to `retry_after_max_s`."""
    cap = min(max_s, initial_s * 2.0 ** min(max(attempt - 1, 0), 30))
    wait = cap / 2 + cap / 2 * min(max(jitter, 0.0), 1.0)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, retry_after_max_s))
    return wait


def dead_letter(
    event: WebhookEvent,
    *,
    endpoint: str,
    reason: str,
    last_status: int | None,
    last_error: str | None,
    attempts: int,
    given_up_at: str,
) -> bytes:
    """The record of `<prefix>.webhooks.dlq` for an event one endpoint never took: why, the
    last status and error, and the payload itself, so an operator can send it again."""
    return _encoder.encode(
        {
            "event_id": event.event_id,
            "type": event.type,
            "image_id": event.image_id,
            "endpoint": endpoint,
            "reason": reason,
            "last_status": last_status,
            "last_error": last_error,
            "attempts": attempts,
            "given_up_at": given_up_at,
            "payload": msgspec.Raw(event.body),
        }
    )
