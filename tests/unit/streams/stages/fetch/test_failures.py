"""How failures.failed() counts tries that never had a fair chance, and which host a
name that got no answer pauses. No sockets: the errors are made here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import cast

import pytest
from minio import Minio

from schemas.events import Envelope, FetchInfo, ImageSubmitted, Source
from schemas.events import encode as encode_event
from streams.config.topics import Topics
from streams.io.safe_http import FetchError
from streams.runner.records import decode_input, now_iso
from streams.runner.stage import PermanentError, StageResult
from streams.stages.fetch.failures import UNCOUNTED_PER_ATTEMPT, FetchFailed, failed
from streams.stages.fetch.politeness import HostBusyError
from streams.stages.fetch.settings import FetchSettings
from streams.stages.fetch.stage import FetchRuntime, runtime_for

HOST = "images.example"
URL = f"http://{HOST}/a.jpg"
BUSY = FetchError(
    "transient", "busy", f"all 16 name lookups busy; {HOST} was not looked up", url=URL
)
MOST_TRIES = 1000  # a bound for the loops: far more than any URL should go round


@pytest.fixture
def runtime() -> Iterator[FetchRuntime]:
    made = runtime_for(FetchSettings(max_attempts=3), cast(Minio, object()))
    yield made
    made.fetcher.close()


def _envelope() -> Envelope:
    submitted = ImageSubmitted(image_id="url-1", source=Source(url=URL), submitted_at=now_iso())
    topics = Topics("px")
    return decode_input(topics.ingest, topics, encode_event(submitted), now_iso())


def _try(runtime: FetchRuntime, envelope: Envelope, carried: FetchFailed) -> StageResult:
    """One try as the stage makes it: the attempt counted on entry, then the failure."""
    info = envelope.record.fetch or FetchInfo(url=URL)
    info.attempts += 1
    return failed(envelope, info, runtime, HOST, carried)


def test_busy_tries_count_as_an_attempt_now_and_then_and_end_in_a_dead_letter(
    runtime: FetchRuntime,
) -> None:
    """A URL that finds our lookup threads busy every time is not held to a count of its
    own, but it is not sent round for ever either: every UNCOUNTED_PER_ATTEMPT busy tries
    are one attempt, and after max_attempts of those it is a dead letter."""
    envelope = _envelope()
    attempts: list[int] = []
    with pytest.raises(PermanentError) as dead:
        for _ in range(MOST_TRIES):
            result = _try(runtime, envelope, FetchFailed(BUSY, answered=False))
            assert result.outcome == "deferred"
            envelope = result.envelope
            info = envelope.record.fetch
            assert info is not None
            attempts.append(info.attempts)
    assert dead.value.reason_class == "busy"
    assert "3 attempts" in dead.value.reason
    # Deferred for nothing until every UNCOUNTED_PER_ATTEMPT-th try, which counts.
    first = [0] * (UNCOUNTED_PER_ATTEMPT - 1) + [1]
    assert attempts[:UNCOUNTED_PER_ATTEMPT] == first
    assert len(attempts) == 3 * UNCOUNTED_PER_ATTEMPT - 1


def test_a_late_cut_is_uncounted_like_busy_and_a_fair_one_counts(runtime: FetchRuntime) -> None:
    cut = FetchError("transient", "deadline", "the batch deadline passed", url=URL)
    late = _try(runtime, _envelope(), FetchFailed(cut, answered=True, fair=False))
    fair = _try(runtime, _envelope(), FetchFailed(cut, answered=True, fair=True))
    late_info, fair_info = late.envelope.record.fetch, fair.envelope.record.fetch
    assert late_info is not None and fair_info is not None
    assert (late_info.attempts, late_info.uncounted_tries) == (0, 1)
    assert (fair_info.attempts, fair_info.uncounted_tries) == (1, 0)
    # Neither paused the host: the body was arriving.
    with runtime.gate.turn(HOST, time.monotonic() + 1):
        pass


def test_a_name_that_got_no_answer_pauses_its_host(runtime: FetchRuntime) -> None:
    """Its other URLs would each take one of the few lookup threads for the whole connect
    timeout: they wait without a lookup instead, as a slow host's do. Another host goes on."""
    silent = FetchError("transient", "dns", f"{HOST}: no answer within 5.0 s", url=URL)
    result = _try(runtime, _envelope(), FetchFailed(silent, answered=False))
    info = result.envelope.record.fetch
    assert result.outcome == "deferred" and info is not None and info.attempts == 1
    with pytest.raises(HostBusyError) as paused, runtime.gate.turn(HOST, time.monotonic() + 1):
        pass
    assert paused.value.cause == "retry_after"
    with runtime.gate.turn("other.example", time.monotonic() + 1):
        pass
