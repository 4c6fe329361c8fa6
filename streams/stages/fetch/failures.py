"""What the fetch stage does with a download that failed: a dead letter, or the message
deferred (sent back to the fetch topic with a time not to try before), the attempt counted
or not, and which host is paused."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from schemas.events import Envelope, FetchInfo
from streams.io.safe_http import FetchError
from streams.observe.metrics import FETCH_THROTTLED, FETCHES
from streams.runner.records import iso_time
from streams.runner.stage import PermanentError, StageResult
from streams.stages.fetch.runtime import STAGE, FetchRuntime, gate_host
from streams.stages.fetch.settings import FetchSettings


class FetchFailed(Exception):  # noqa: N818 (a carrier, never seen outside the stage)
    """A FetchError, whether the host had answered (sent its headers) before it, and how
    many body bytes had arrived."""

    def __init__(self, error: FetchError, answered: bool, received: int = 0) -> None:
        super().__init__(str(error))
        self.error = error
        self.answered = answered
        self.received = received


def _wall(monotonic_at: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=max(0.0, monotonic_at - time.monotonic()))


def deferred(
    envelope: Envelope, info: FetchInfo, retry_at: float, why: str, outcome_reason: str
) -> StageResult:
    info.not_before = iso_time(_wall(retry_at))
    info.last_error = why
    envelope.record.fetch = info
    FETCHES.labels(STAGE, "deferred", outcome_reason).inc()
    return StageResult(envelope, outcome="deferred", detail=why, forward_to=STAGE)


def backoff(settings: FetchSettings, attempts: int) -> float:
    # Exponential with full jitter: many URLs of one failing host spread out again.
    ceiling = min(settings.backoff_max_s, settings.backoff_initial_s * 2 ** max(0, attempts - 1))
    return random.uniform(settings.backoff_initial_s, max(settings.backoff_initial_s, ceiling))


def failed(
    envelope: Envelope,
    info: FetchInfo,
    runtime: FetchRuntime,
    first_host: str,
    carried: FetchFailed,
) -> StageResult:
    """A dead letter (raised) or the message deferred; `info.attempts` counts this try."""
    settings = runtime.settings
    error = carried.error
    info.final_url, info.status = error.url, error.status
    envelope.record.fetch = info
    if error.kind == "refused":
        FETCHES.labels(STAGE, "refused", error.reason_class).inc()
        # netguard's reasons start with their class ("ssrf: ..."), which the error carries
        # beside them: the record said "ssrf: ssrf: port 8080 is not allowed".
        said = error.reason.removeprefix(f"{error.reason_class}: ")
        raise PermanentError(error.reason_class, said)
    if error.kind == "permanent":
        FETCHES.labels(STAGE, "rejected", error.reason_class).inc()
        raise PermanentError(error.reason_class, f"{error.url}: {error.reason}")
    if error.reason_class == "busy":
        # All our own connections to the server, or all our name lookups, were in use:
        # the host was never asked. Not its fault nor the URL's: no pause, not counted.
        info.attempts -= 1
        FETCH_THROTTLED.labels(STAGE, runtime.gate.rule_name(first_host), "process").inc()
        retry_at = time.monotonic() + backoff(settings, 2)
        return deferred(envelope, info, retry_at, f"busy: {error.reason}", "throttled")
    # The hop that failed is the one to pause: a shortener whose redirect led to a tarpit
    # or to a 429 did nothing wrong itself.
    host = gate_host(error.url, runtime.fetcher.policy) or first_host
    if error.retry_after_s:
        runtime.gate.pause(host, error.retry_after_s)
    # A host that sent nothing before the deadline or its read timeout is slow (a tarpit):
    # pause it, so its other URLs are deferred at once instead of each holding a batch to
    # its end. A body the deadline cut while it was flowing pauses nobody, but counts: a
    # download too big or too slow for a batch would otherwise start over for ever.
    slow = error.reason_class in ("deadline", "timeout") and not carried.answered
    cut = error.reason_class == "deadline" and carried.answered
    if slow:
        runtime.gate.pause(host, settings.slow_host_pause_s)
    if info.attempts >= settings.max_attempts:
        FETCHES.labels(STAGE, "failed", error.reason_class).inc()
        reason = f"{error.url}: {error.reason} (after {info.attempts} attempts)"
        if cut:
            reason = (
                f"{error.url}: the batch's deadline cut the body after {carried.received} "
                f"bytes (after {info.attempts} attempts); a download must end within its "
                f"batch: raise stages.fetch.batch_budget_s (now {settings.batch_budget_s:g} s, "
                "and runner.batch_budget_s, which caps it) for images this large or hosts "
                "this slow"
            )
        raise PermanentError(error.reason_class, reason)
    if slow:
        delay = max(settings.slow_host_pause_s, error.retry_after_s or 0.0)
    else:
        delay = error.retry_after_s or backoff(settings, info.attempts)
    why = f"{error.reason_class}: {error.reason}"
    return deferred(envelope, info, time.monotonic() + delay, why, error.reason_class)
