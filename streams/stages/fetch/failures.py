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

# Tries without a fair chance (busy, or started too late in a batch) are not held against
# a URL, but this many of them count as one attempt: lookups held by names that never
# answer, or batches always full, cannot send a URL round for ever.
UNCOUNTED_PER_ATTEMPT = 5


class FetchFailed(Exception):  # noqa: N818 (a carrier, never seen outside the stage)
    """A FetchError, whether the host had answered (sent its headers) before it, how many
    body bytes had arrived, and whether the download had its fair share of its batch
    (fairness.py): a batch's deadline that cut it after a moment says nothing of it."""

    def __init__(
        self, error: FetchError, answered: bool, received: int = 0, *, fair: bool = True
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.answered = answered
        self.received = received
        self.fair = fair


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


def still_waiting(envelope: Envelope, info: FetchInfo) -> StageResult:
    """A message whose time has not come, sent back with that time as it was."""
    envelope.record.fetch = info
    FETCHES.labels(STAGE, "deferred", "wait").inc()
    detail = info.last_error or f"waiting until {info.not_before}"
    return StageResult(envelope, outcome="deferred", detail=detail, forward_to=STAGE)


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
        FETCH_THROTTLED.labels(STAGE, runtime.gate.rule_name(first_host), "process").inc()
        retry_at = time.monotonic() + backoff(settings, 2)
        why = f"busy: {error.reason}"
        return _uncounted(
            envelope,
            info,
            settings,
            carried,
            retry_at=retry_at,
            why=why,
            outcome_reason="throttled",
        )
    if error.reason_class == "deadline" and not carried.fair:
        # Started too late in its batch to be judged (it waited for a turn): neither the
        # URL nor the host is to blame, and a fresh batch may well fit it. Due at once.
        why = "deadline: cut by the batch's end, having started with under half of it left"
        now = time.monotonic()
        return _uncounted(
            envelope, info, settings, carried, retry_at=now, why=why, outcome_reason="late"
        )
    # The hop that failed is the one to pause: a shortener whose redirect led to a tarpit
    # or to a 429 did nothing wrong itself.
    host = gate_host(error.url, runtime.fetcher.policy) or first_host
    if error.retry_after_s:
        runtime.gate.pause(host, error.retry_after_s)
    # A host that sent nothing in its fair share of a batch or before its read timeout is
    # slow (a tarpit): pause it, so its other URLs are deferred at once instead of each
    # holding a batch to its end. A name that got no answer (or the resolver failing for
    # now) pauses its host too: its other URLs would each hold one of the few lookup
    # threads for connect_timeout_s. A body the deadline cut while it was flowing pauses
    # nobody, but counts: a download too big or too slow for a batch would otherwise
    # start over for ever.
    slow = error.reason_class in ("deadline", "timeout") and not carried.answered
    slow = slow or error.reason_class == "dns"  # transient here: permanent ones are raised
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


def _uncounted(
    envelope: Envelope,
    info: FetchInfo,
    settings: FetchSettings,
    carried: FetchFailed,
    *,
    retry_at: float,
    why: str,
    outcome_reason: str,
) -> StageResult:
    """Deferred without this try counted (`info.attempts` counts it on entry), the host not
    paused, except that every UNCOUNTED_PER_ATTEMPT such tries count as one attempt."""
    info.uncounted_tries += 1
    if info.uncounted_tries < UNCOUNTED_PER_ATTEMPT:
        info.attempts -= 1
        return deferred(envelope, info, retry_at, why, outcome_reason)
    info.uncounted_tries = 0
    error = carried.error
    if info.attempts >= settings.max_attempts:
        FETCHES.labels(STAGE, "failed", error.reason_class).inc()
        raise PermanentError(
            error.reason_class,
            f"{error.url}: {why} (after {info.attempts} attempts; every "
            f"{UNCOUNTED_PER_ATTEMPT} tries that never had a fair chance count as one)",
        )
    return deferred(envelope, info, retry_at, why, outcome_reason)
