"""processors.webhooks: which record becomes which event, its body and id, the signature a
receiver checks, who gets it, and the waits between attempts."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import get_args

import pytest

from processors import webhooks
from processors.webhooks import NotAnEventError, WebhookEvent
from schemas.events import (
    Category,
    Envelope,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Source,
)
from streams.config.notify import WebhookEventType
from tests.unit.streams.notify import events

SECRET = b"s3cr3t"


def _event(kind: str = "done", category: str | None = "rings") -> WebhookEvent:
    return WebhookEvent("evt_x", kind, "img", category, b"{}")  # type: ignore[arg-type]


def test_the_config_and_the_processor_know_the_same_event_types() -> None:
    assert get_args(WebhookEventType) == webhooks.EVENT_TYPES == ("done", "rejected", "duplicate")


def test_a_done_record_becomes_a_done_event_with_its_variants_and_category() -> None:
    event = webhooks.from_done(events.done("img-1"))
    assert event is not None
    assert (event.type, event.image_id, event.category) == ("done", "img-1", "rings")
    body = json.loads(event.body)
    assert body["id"] == event.event_id and body["type"] == "done"
    assert body["image_id"] == "img-1" and body["correlation_id"] == "order-7"
    assert body["occurred_at"] == "2026-12-02T10:00:00.000Z"
    assert body["data"]["status"] == "done" and body["data"]["category"]["name"] == "rings"
    assert body["api_version"] == 1


def test_a_duplicate_is_its_own_event_type() -> None:
    event = webhooks.from_done(events.done("img-3", duplicate_of="img-1"))
    assert event is not None and event.type == "duplicate"
    assert json.loads(event.body)["data"]["duplicate_of"] == "img-1"


@pytest.mark.parametrize("status", ["rejected", "failed", "processing"])
def test_other_end_events_are_announced_by_their_dead_letter_not_twice(status: str) -> None:
    assert webhooks.from_done(events.done(status=status)) is None


def test_a_dead_letter_becomes_a_rejected_event_without_the_original() -> None:
    event = webhooks.from_dead_letter(events.dead_letter("img-2"))
    assert (event.type, event.image_id, event.category) == ("rejected", "img-2", None)
    data = json.loads(event.body)["data"]
    assert data["stage"] == "validate" and data["reason_class"] == "undecodable"
    assert "original" not in data and b"not json" not in event.body


def test_a_rejected_event_takes_category_and_correlation_from_the_stages_input() -> None:
    envelope = Envelope(
        submitted=ImageSubmitted(
            image_id="img-4",
            source=Source(object=ObjectRef(bucket="bkt", key="img-4/a.jpg")),
            submitted_at="2026-12-02T09:59:00.000Z",
            correlation_id="order-9",
        ),
        route=["validate", "categorize", "enhance", "compress"],
        record=ImageRecord(
            image_id="img-4",
            status="processing",
            updated_at="2026-12-02T09:59:30.000Z",
            category=Category(name="earrings", score=0.8),
        ),
    )
    event = webhooks.from_dead_letter(events.dead_letter_of_envelope(envelope))
    assert event.category == "earrings"
    assert json.loads(event.body)["correlation_id"] == "order-9"


@pytest.mark.parametrize("value", [b"", b"{", b'{"image_id": 3}'])
def test_a_record_that_is_not_its_contract_is_refused(value: bytes) -> None:
    with pytest.raises(NotAnEventError):
        webhooks.from_done(value)
    with pytest.raises(NotAnEventError):
        webhooks.from_dead_letter(value)


def test_the_event_id_is_stable_for_a_record_and_differs_between_records() -> None:
    first, again = webhooks.from_done(events.done("a")), webhooks.from_done(events.done("a"))
    other = webhooks.from_done(events.done("b"))
    assert first is not None and again is not None and other is not None
    assert first.event_id == again.event_id and first.body == again.body
    assert other.event_id != first.event_id
    # The same bytes on the two topics are two events.
    assert webhooks.event_id("done", b"x") != webhooks.event_id("dlq", b"x")
    assert first.event_id.startswith("evt_") and len(first.event_id) == 36


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(SECRET, b"1764669600." + body, hashlib.sha256).hexdigest()
    assert webhooks.sign(SECRET, 1764669600, body) == f"v1={expected}"


def test_headers_carry_id_type_timestamp_and_signature() -> None:
    event = webhooks.from_done(events.done())
    assert event is not None
    sent = webhooks.headers(event, SECRET, 1764669600)
    assert sent["Content-Type"] == "application/json"
    assert sent["X-Pixelfleet-Event-Id"] == event.event_id
    assert sent["X-Pixelfleet-Event"] == "done"
    assert sent["X-Pixelfleet-Timestamp"] == "1764669600"
    assert sent["X-Pixelfleet-Signature"] == webhooks.sign(SECRET, 1764669600, event.body)


def test_verify_accepts_ours_and_refuses_tampering_other_keys_and_stale_timestamps() -> None:
    body = b'{"a":1}'
    signature = webhooks.sign(SECRET, 1000, body)
    assert webhooks.verify(SECRET, body, "1000", signature, now=1100)
    assert not webhooks.verify(SECRET, b'{"a":2}', "1000", signature, now=1100)
    assert not webhooks.verify(b"other", body, "1000", signature, now=1100)
    assert not webhooks.verify(SECRET, body, "1001", signature, now=1100)
    assert not webhooks.verify(SECRET, body, "1000", signature, now=1000 + 301)
    assert not webhooks.verify(SECRET, body, "-1000", signature, now=1100)


def test_matching_by_event_type_and_category() -> None:
    all_types = webhooks.EVENT_TYPES
    assert webhooks.matches(_event("done"), all_types, ())
    assert not webhooks.matches(_event("rejected"), ("done",), ())
    assert webhooks.matches(_event("done", "rings"), all_types, ("rings", "necklaces"))
    assert not webhooks.matches(_event("done", "earrings"), all_types, ("rings",))
    # No category passes no category filter, but any event passes an empty one.
    assert not webhooks.matches(_event("rejected", None), all_types, ("rings",))
    assert webhooks.matches(_event("rejected", None), all_types, ())


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (410, "gone"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "reject"),
        (401, "reject"),
        (404, "reject"),
        (301, "reject"),
        (307, "reject"),
    ],
)
def test_verdict_of_each_status(status: int, verdict: str) -> None:
    assert webhooks.verdict(status) == verdict


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    def wait(attempt: int, jitter: float) -> float:
        return webhooks.backoff_s(attempt, initial_s=1.0, max_s=60.0, jitter=jitter)

    assert [wait(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [wait(n, 0.999999) for n in (1, 2, 3)] == pytest.approx([1.0, 2.0, 4.0], abs=1e-5)
    assert wait(7, 0.0) == 30.0 and wait(50, 0.5) == 45.0
    assert wait(10_000, 1.0) == 60.0  # no overflow however many attempts


def test_retry_after_is_honoured_when_longer_and_bounded() -> None:
    def wait(retry_after: float | None) -> float:
        return webhooks.backoff_s(
            1,
            initial_s=1.0,
            max_s=60.0,
            jitter=0.0,
            retry_after_s=retry_after,
            retry_after_max_s=120.0,
        )

    assert wait(None) == 0.5
    assert wait(0.1) == 0.5  # shorter than the backoff: the backoff wins
    assert wait(30.0) == 30.0
    assert wait(3600.0) == 120.0


def test_a_webhook_dead_letter_holds_the_payload_and_why() -> None:
    event = webhooks.from_done(events.done("img-5"))
    assert event is not None
    record = json.loads(
        webhooks.dead_letter(
            event,
            endpoint="crm",
            reason="retries_exhausted",
            last_status=503,
            last_error="HTTP 503",
            attempts=8,
            given_up_at="2026-12-02T10:05:00.000Z",
        )
    )
    assert record["event_id"] == event.event_id and record["endpoint"] == "crm"
    assert (record["reason"], record["last_status"], record["attempts"]) == (
        "retries_exhausted",
        503,
        8,
    )
    assert record["payload"] == json.loads(event.body)
