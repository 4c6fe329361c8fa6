"""A message parked until a time (a backoff, a host's Retry-After) keeps that time while it
goes round: a batch that lingers before sending it back must not push it later, or a
parked URL whose wait is longer than what is left of a batch never comes due."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import cast

from minio import Minio

from schemas.events import Envelope, FetchInfo, ImageSubmitted, Source
from schemas.events import encode as encode_event
from streams.config.settings import BucketSettings
from streams.config.topics import Topics
from streams.runner.records import decode_input, iso_time, now_iso
from streams.runner.stage import StageContext, deadline_of_call
from streams.stages.fetch.settings import FetchSettings
from streams.stages.fetch.stage import FetchRuntime, fetch, runtime_for

URL = "http://images.example/parked.jpg"  # never asked: the message is not due
LINGER_S = 0.2  # each round's batch ends this soon, and its one waiting call lingers so long
ROUNDS = 3


def _parked(until: datetime) -> Envelope:
    submitted = ImageSubmitted(
        image_id="url-parked", source=Source(url=URL), submitted_at=now_iso()
    )
    topics = Topics("px")
    envelope = decode_input(topics.ingest, topics, encode_event(submitted), now_iso())
    envelope.record.fetch = FetchInfo(url=URL, attempts=1, not_before=iso_time(until))
    return envelope


def test_a_parked_message_keeps_its_time_across_lingering_batches() -> None:
    runtime: FetchRuntime = runtime_for(FetchSettings(), cast(Minio, object()))
    ctx = StageContext("fetch", BucketSettings(incoming="incoming"), runtime)
    parked_until = iso_time(datetime.now(UTC) + timedelta(seconds=30))
    envelope = _parked(datetime.fromisoformat(parked_until))
    left: list[float] = []
    try:
        for _ in range(ROUNDS):
            # A new batch each round, of nothing but this message: its call lingers.
            with deadline_of_call(time.monotonic() + LINGER_S):
                result = fetch(envelope, None, ctx)
            assert result.outcome == "deferred"
            envelope = result.envelope
            info = envelope.record.fetch
            assert info is not None and info.not_before is not None
            due = datetime.fromisoformat(info.not_before)
            left.append((due - datetime.now(UTC)).total_seconds())
    finally:
        runtime.fetcher.close()
    info = envelope.record.fetch
    assert info is not None
    # Its time stands (each round used to set it anew, LINGER_S later), so what is left
    # of its wait shrinks round after round; no attempt was counted.
    assert info.not_before == parked_until
    assert left == sorted(left, reverse=True) and left[0] > left[-1], left
    assert info.attempts == 1
