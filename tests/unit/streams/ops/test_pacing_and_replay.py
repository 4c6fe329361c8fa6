"""Pacing arithmetic, what a replay re-sends, and which variants a replay leaves stale."""

from __future__ import annotations

import msgspec
import pytest

from schemas.events import (
    Envelope,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Request,
    Source,
    Variant,
)
from streams.ops.objects import StoredObject, stale_variants
from streams.ops.pacing import Pacer, eta_seconds
from streams.ops.replay_plan import forced


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_pacer_holds_the_rate_over_a_long_run() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    for _ in range(101):
        pacer.wait()
    # The first send is free (a burst of 1); the next 100 take 10 s at 10 a second.
    assert clock.now - 100.0 == pytest.approx(10.0)


def test_a_pacer_does_not_sleep_when_the_sender_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    for _ in range(5):
        assert pacer.wait() == 0.0
        clock.now += 0.5  # the sender itself takes longer than 1/rate
    assert clock.slept == []


def test_no_rate_means_no_waiting_and_a_bad_rate_is_refused() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock, clock.sleep)
    assert [pacer.wait() for _ in range(1000)] == [0.0] * 1000
    with pytest.raises(ValueError):
        Pacer(0, clock, clock.sleep)


def test_eta() -> None:
    assert eta_seconds(0, 100, 5.0) is None
    assert eta_seconds(25, 100, 5.0) == pytest.approx(15.0)
    assert eta_seconds(100, 100, 20.0) == 0.0


def _submitted() -> ImageSubmitted:
    ref = ObjectRef(bucket="pf-in", key="a/photo.jpg")
    return ImageSubmitted(
        image_id="a",
        source=Source(object=ref),
        submitted_at="2026-12-01T00:00:00.000Z",
        request=Request(profile="product"),
    )


def test_a_replayed_message_asks_for_the_work_again_and_keeps_the_rest() -> None:
    submitted = _submitted()
    again = msgspec.json.decode(forced(submitted), type=ImageSubmitted)
    assert again.request == Request(profile="product", force=True)
    assert again.source == submitted.source
    record = ImageRecord(image_id="a", status="processing", updated_at="t")
    envelope = Envelope(submitted=submitted, route=["validate", "compress"], record=record)
    envelope.attempt = 2
    decoded = msgspec.json.decode(forced(envelope), type=Envelope)
    assert decoded.submitted.request.force and decoded.attempt == 0
    assert decoded.route == ["validate", "compress"]


def _variant(key: str, size: int = 10) -> Variant:
    obj = ObjectRef(bucket="pf-img", key=key)
    return Variant(variant="web", format="webp", width=1, height=1, bytes=size, object=obj)


def test_stale_variants_are_the_old_records_own_objects_the_new_one_dropped() -> None:
    old = ImageRecord(
        image_id="a",
        status="done",
        updated_at="t0",
        variants=[_variant("rings/web/a.webp"), _variant("rings/thumb/a.webp", 3)],
    )
    new = ImageRecord(
        image_id="a",
        status="done",
        updated_at="t1",
        variants=[_variant("rings/web/a.avif"), _variant("rings/thumb/a.webp", 3)],
    )
    assert stale_variants(old, new) == [StoredObject("pf-img", "rings/web/a.webp", 10)]
    # A duplicate's variants belong to the image it repeats: never stale here.
    dup = ImageRecord(
        image_id="d",
        status="done",
        updated_at="t0",
        duplicate_of="a",
        variants=[_variant("rings/web/a.webp")],
    )
    assert stale_variants(dup, new) == []
