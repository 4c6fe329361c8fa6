"""Choosing webhook dead letters, and reading them as the notify worker writes them."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from processors import webhooks
from processors.webhooks import WebhookEvent
from streams.ops.webhook_redrive import (
    WebhookLetter,
    WebhookLetterAt,
    WebhookMark,
    delivered_by,
    select,
)


def _at(endpoint: str, reason: str, given_up_at: str, offset: int) -> WebhookLetterAt:
    event = WebhookEvent("evt_1", "done", "img-1", None, b'{"id": "evt_1"}')
    value = webhooks.dead_letter(
        event,
        endpoint=endpoint,
        reason=reason,
        last_status=None,
        last_error="timed out",
        attempts=3,
        given_up_at=given_up_at,
    )
    letter = msgspec.json.decode(value, type=WebhookLetter)
    return WebhookLetterAt(letter, 0, offset)


def test_a_letter_reads_back_with_its_payload_byte_for_byte() -> None:
    item = _at("crm", "retries_exhausted", "2026-12-02T10:00:00.000Z", 0)
    assert bytes(item.letter.payload) == b'{"id": "evt_1"}'
    assert (item.letter.event_id, item.letter.last_status, item.position) == ("evt_1", None, "0:0")


def test_select_filters_by_endpoint_reason_and_time() -> None:
    letters = [
        _at("crm", "retries_exhausted", "2026-12-01T10:00:00.000Z", 0),
        _at("crm", "budget_exhausted", "2026-12-02T10:00:00.000Z", 1),
        _at("audit", "retries_exhausted", "2026-12-02T11:00:00.000Z", 2),
    ]
    assert [i.offset for i in select(letters, endpoint="crm")] == [0, 1]
    assert [i.offset for i in select(letters, reason="retries_exhausted")] == [0, 2]
    since = datetime(2026, 12, 2, tzinfo=UTC)
    assert [i.offset for i in select(letters, since=since)] == [1, 2]
    assert select(letters, endpoint="crm", reason="backlog_full") == []


def test_a_mark_counts_only_for_the_event_it_names() -> None:
    item = _at("crm", "retries_exhausted", "2026-12-02T10:00:00.000Z", 0)
    mine = WebhookMark(redrive_id="r-1", event_id="evt_1", endpoint="crm", status=204, at="t")
    # The same position on a webhooks.dlq made again holds another event.
    other = WebhookMark(redrive_id="r-0", event_id="evt_9", endpoint="crm", status=204, at="t")
    assert delivered_by({"0:0": mine}, item) == mine
    assert delivered_by({"0:0": other}, item) is None
    assert delivered_by({"0:1": mine}, item) is None
