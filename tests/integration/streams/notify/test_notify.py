"""The notify worker against the real broker and real receivers on 127.0.0.1: signed
deliveries counted by event id, a breaker that opens and heals, a hanging endpoint that
holds up nobody else, 410 Gone, and the webhook dead-letter topic."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from streams.config.topics import Topics
from streams.notify.worker import webhooks_dlq
from tests.conftest import Stack
from tests.integration.streams.notify.kit import (
    SECRET,
    committed_everything,
    done_record,
    eventually,
    fleet_settings,
    letter_record,
    publish,
    read_topic,
    rejected_done_record,
    running,
    subscription,
)
from tests.integration.streams.notify.receivers import Receiver, always, hang

NOTIFY_LOG = "pixelfleet.notify"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_signed_events_reach_each_subscriber_once_by_id(stack: Stack, prefix: str) -> None:
    topics = Topics(prefix)
    records = [
        *((topics.done, f"ring-{i}", done_record(f"ring-{i}")) for i in range(3)),
        *(
            (topics.done, f"ear-{i}", done_record(f"ear-{i}", category="earrings"))
            for i in range(2)
        ),
        (topics.done, "dup-0", done_record("dup-0", duplicate_of="ring-0")),
        (topics.done, "bad-0", rejected_done_record("bad-0")),  # told by its dead letter
        *((topics.dlq, f"bad-{i}", letter_record(f"bad-{i}")) for i in range(2)),
    ]
    publish(stack, records)
    with Receiver(SECRET) as everything, Receiver(SECRET) as rings:
        subs = [
            subscription("all", everything),
            subscription("rings", rings, events=("done",), categories=("rings",)),
        ]
        with running(fleet_settings(stack, prefix, subs)):
            assert everything.wait_for(lambda r: len(r.delivered()) >= 8, 30)
            assert rings.wait_for(lambda r: len(r.delivered()) >= 3, 10)
            assert eventually(lambda: committed_everything(stack, prefix), 15)
        got = everything.snapshot()
        assert all(r.signature_ok for r in got)
        assert set(everything.delivered().values()) == {1}  # each id once
        by_type = Counter(r.event_type for r in got)
        assert by_type == {"done": 5, "duplicate": 1, "rejected": 2}
        assert sorted(r.body["image_id"] for r in got if r.event_type == "rejected") == [
            "bad-0",
            "bad-1",
        ]
        assert all(r.body["id"] == r.event_id for r in got)
        ring_ids = sorted(r.body["image_id"] for r in rings.snapshot())
        assert ring_ids == ["ring-0", "ring-1", "ring-2"]
        assert all(r.signature_ok for r in rings.snapshot())
        # The same event has the same id at both receivers.
        assert set(rings.delivered()) <= set(everything.delivered())
    assert _sample("pixelfleet_notify_delivered_total", endpoint="all", event="done") >= 5


def test_a_failing_endpoint_opens_its_breaker_half_opens_and_closes(
    stack: Stack, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=NOTIFY_LOG)
    topics = Topics(prefix)
    # One partition's worth of order: all keys on one image id prefix, any partition.
    publish(stack, [(topics.done, f"img-{i}", done_record(f"img-{i}")) for i in range(4)])
    # Three 503s (the breaker's threshold), then healthy again.
    flaky = Receiver(SECRET, lambda n: 503 if n <= 3 else 204)
    with flaky, running(fleet_settings(stack, prefix, [subscription("flaky", flaky)])):
        assert flaky.wait_for(lambda r: len(r.delivered()) >= 4, 30)
        assert eventually(lambda: committed_everything(stack, prefix), 15)
    got = flaky.snapshot()
    assert [r.status for r in got[:4]] == [503, 503, 503, 204]
    assert set(flaky.delivered().values()) == {1}
    assert len(got) == 7  # three failures, then each of the four events once
    # Skipped while open: the probe came only after the one-second cool-down.
    assert got[3].at - got[2].at >= 0.9
    assert got[1].at - got[0].at < 0.9 and got[2].at - got[1].at < 0.9
    transitions = [
        r.getMessage().split("circuit breaker ", 1)[1]
        for r in caplog.records
        if "webhook endpoint flaky: circuit breaker" in r.getMessage()
    ]
    assert transitions == ["closed -> open", "open -> half-open", "half-open -> closed"]
    assert _sample("pixelfleet_notify_breaker_state", endpoint="flaky") == 0
    assert _sample("pixelfleet_notify_failed_total", endpoint="flaky", reason="http_503") == 3


def test_a_hanging_endpoint_holds_up_nobody_else(stack: Stack, prefix: str) -> None:
    topics = Topics(prefix)
    with Receiver(SECRET, hang) as stuck, Receiver(SECRET) as healthy:
        subs = [subscription("stuck", stuck), subscription("healthy", healthy)]
        settings = fleet_settings(
            stack, prefix, subs, max_attempts=2, breaker_failures=2, breaker_reset_s=0.5
        )
        with running(settings) as worker:
            publish(stack, [(topics.done, f"a-{i}", done_record(f"a-{i}")) for i in range(3)])
            assert healthy.wait_for(lambda r: len(r.delivered()) >= 3, 20)
            assert stuck.wait_for(lambda r: len(r.snapshot()) >= 1, 5)
            # A second wave while the stuck endpoint still hangs: delivered at once.
            sent = time.monotonic()
            publish(stack, [(topics.done, f"b-{i}", done_record(f"b-{i}")) for i in range(3)])
            assert healthy.wait_for(lambda r: len(r.delivered()) >= 6, 10)
            wave = [r.at - sent for r in healthy.snapshot()[3:]]
            assert max(wave) < 5.0, wave
            # The stuck endpoint's events end in the webhook DLQ, after their attempts.
            letters = read_topic(stack, webhooks_dlq(prefix), 6, timeout_s=60)
            # The consumer kept polling all along: the group never rebalanced.
            assert worker.revocations == 0
        assert eventually(lambda: committed_everything(stack, prefix), 15)
    assert set(healthy.delivered().values()) == {1} and len(healthy.delivered()) == 6
    assert all(r.signature_ok for r in healthy.snapshot())
    assert len(letters) == 6
    assert {letter["endpoint"] for letter in letters} == {"stuck"}
    assert {letter["reason"] for letter in letters} <= {"retries_exhausted", "budget_exhausted"}
    assert all(letter["last_status"] is None for letter in letters)
    assert all("timeout" in (letter["last_error"] or "") for letter in letters)
    ids = sorted(letter["image_id"] for letter in letters)
    assert ids == sorted([f"a-{i}" for i in range(3)] + [f"b-{i}" for i in range(3)])


def test_410_gone_disables_the_subscription_and_says_so(
    stack: Stack, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=NOTIFY_LOG)
    topics = Topics(prefix)
    publish(stack, [(topics.done, f"g-{i}", done_record(f"g-{i}")) for i in range(4)])
    before = _sample("pixelfleet_notify_dropped_total", endpoint="gone")
    with Receiver(SECRET, always(410)) as gone, Receiver(SECRET) as healthy:
        subs = [subscription("gone", gone), subscription("healthy", healthy)]
        with running(fleet_settings(stack, prefix, subs)):
            assert healthy.wait_for(lambda r: len(r.delivered()) >= 4, 30)
            assert eventually(
                lambda: _sample("pixelfleet_notify_dropped_total", endpoint="gone") - before >= 4,
                10,
            )
            assert eventually(lambda: committed_everything(stack, prefix), 15)
    assert len(gone.snapshot()) == 1  # asked once, then never again
    assert gone.snapshot()[0].signature_ok
    assert _sample("pixelfleet_notify_subscription_disabled", endpoint="gone") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gone answered 410 Gone: subscription disabled" in w for w in warnings), warnings
    # Dropped on purpose, not dead-lettered.
    assert read_topic(stack, webhooks_dlq(prefix), 1, timeout_s=3) == []


def test_after_the_retry_budget_events_go_to_the_webhook_dlq_with_the_last_status(
    stack: Stack, prefix: str
) -> None:
    topics = Topics(prefix)
    publish(stack, [(topics.done, f"d-{i}", done_record(f"d-{i}")) for i in range(3)])
    with Receiver(SECRET, always(500)) as broken, Receiver(SECRET, always(400)) as picky:
        subs = [subscription("broken", broken), subscription("picky", picky)]
        # A breaker that never opens here: this test is about the retry budget alone.
        settings = fleet_settings(stack, prefix, subs, max_attempts=3, breaker_failures=1000)
        with running(settings):
            letters = read_topic(stack, webhooks_dlq(prefix), 6, timeout_s=30)
            assert eventually(lambda: committed_everything(stack, prefix), 15)
    by_endpoint = Counter(letter["endpoint"] for letter in letters)
    assert by_endpoint == {"broken": 3, "picky": 3}
    for letter in letters:
        if letter["endpoint"] == "broken":
            assert (letter["reason"], letter["last_status"], letter["attempts"]) == (
                "retries_exhausted",
                500,
                3,
            )
        else:  # a 4xx other than 408, 410 and 429 is not retried
            assert (letter["reason"], letter["last_status"], letter["attempts"]) == (
                "rejected",
                400,
                1,
            )
        assert letter["payload"]["id"] == letter["event_id"]
        assert letter["payload"]["image_id"] == letter["image_id"]
    assert Counter(r.event_id for r in broken.snapshot()) == {
        letter["event_id"]: 3 for letter in letters if letter["endpoint"] == "broken"
    }
    assert len(picky.snapshot()) == 3


def test_retry_after_is_honoured(stack: Stack, prefix: str) -> None:
    topics = Topics(prefix)
    publish(stack, [(topics.done, "r-0", done_record("r-0"))])
    # The backoff alone would retry within 0.2 s; the receiver asks for 2 s.
    busy = Receiver(SECRET, lambda n: 429 if n == 1 else 204, retry_after="2")
    with busy, running(fleet_settings(stack, prefix, [subscription("busy", busy)])):
        assert busy.wait_for(lambda r: len(r.delivered()) == 1, 20)
    first, second = busy.snapshot()
    assert (first.status, second.status) == (429, 204)
    assert second.at - first.at >= 1.9
    assert first.event_id == second.event_id and second.signature_ok
