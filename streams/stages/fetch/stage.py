"""The fetch stage: download a URL source into the incoming bucket, then on to validate.

One call per message, on the executor's threads (many at once: the work is waiting). Each
call waits for its host's turn, downloads through SafeFetcher (every hop vetted against
SSRF), checks the first bytes are an image, and streams the body to S3 under a key derived
from the URL, so a retry or a replay overwrites the same object.

Failures are data (failures.py): a refused or permanently failing URL is a PermanentError
(dead letter, reason named); a transient one, a host that has no room, or a download the
batch's deadline cuts is *deferred*: the envelope goes back to the fetch topic with a time
not to try before, so no slow host holds a batch. Each try that reached the host counts,
a cut one too when the download had a fair share of its batch (fairness.py), so after
max_attempts the URL is a dead letter.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime

import urllib3
from minio import Minio
from minio.error import S3Error

from processors.sniff import sniff
from schemas.events import Envelope, FetchInfo, ObjectRef
from streams.config.topics import route
from streams.io.netguard import NetPolicy
from streams.io.safe_http import FetchError, HopGate, HttpLimits, Response, SafeFetcher
from streams.observe.metrics import (
    FETCH_BYTES,
    FETCH_IN_FLIGHT,
    FETCH_SECONDS,
    FETCH_THROTTLED,
    FETCHES,
)
from streams.runner.stage import (
    PermanentError,
    StageContext,
    StageResult,
    StageSpec,
    TransientError,
    batch_deadline,
)
from streams.stages.fetch.failures import FetchFailed, deferred, failed, still_waiting
from streams.stages.fetch.fairness import had_its_share
from streams.stages.fetch.politeness import HostBusyError, HostGate
from streams.stages.fetch.runtime import STAGE, FetchRuntime, gate_host
from streams.stages.fetch.settings import FetchSettings

__all__ = ["STAGE", "FetchRuntime", "fetch", "gate_host", "object_key", "runtime_for"]

# Enough of the body to tell an image by its magic number (ISO BMFF brands included).
SNIFF_BYTES = 64
# minio's smallest multipart part: with one part uploaded at a time, an upload holds about
# this much of a body in memory (plus the part's copies inside the client).
PART_SIZE = 5 * 1024 * 1024
# Without a batch deadline (a direct call, a test) a fetch may take its own total timeout.
NO_DEADLINE_S = 3600.0


def object_key(url: str) -> str:
    """The incoming-bucket key of a URL: the same URL always lands on the same object."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:40]
    name = posixpath.basename(urllib.parse.urlsplit(url).path) or "index"
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:80]
    return f"url/{digest}/{safe}"


def read_head(response: Response) -> bytes:
    """The body's first SNIFF_BYTES (fewer only when the body is shorter). One read gives
    what one packet or chunk held, maybe three bytes, and a magic number cut short names no
    format: the image would be refused as not one."""
    head = b""
    while len(head) < SNIFF_BYTES:
        piece = response.read(SNIFF_BYTES - len(head))
        if not piece:
            break
        head += piece
    return head


class _Sniffed:
    """The response body with its first bytes already read (and checked) put back in front."""

    def __init__(self, first: bytes, response: Response) -> None:
        self._first = first
        self._response = response

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = PART_SIZE
        if not self._first:
            return self._response.read(size)
        head, self._first = self._first[:size], self._first[size:]
        rest = size - len(head)
        return head + self._response.read(rest) if rest > 0 else head


def fetch(envelope: Envelope, _blob: bytes | None, ctx: StageContext) -> StageResult:
    runtime: FetchRuntime = ctx.params
    url = envelope.submitted.source.url
    batch = batch_deadline()
    # Every call, a waiting one too: the first call of a batch marks when it opened.
    opened = runtime.openings.seen(batch)
    if url is None:
        # An object source never comes here (validate admits only URL sources to fetch).
        runtime.lull.work(batch)
        return StageResult(envelope, outcome="skipped", detail="not a URL source")
    info = envelope.record.fetch or FetchInfo(url=url)
    deadline = batch or time.monotonic() + NO_DEADLINE_S
    wait = 0.0
    if info.not_before:
        wait = (datetime.fromisoformat(info.not_before) - datetime.now(UTC)).total_seconds()
    if wait > 0 and time.monotonic() + wait > deadline:
        # Not yet: straight back, without a request or a counted attempt. A batch of
        # nothing else lingers first, or it would loop through the topic (see lull). Its
        # time stands: set anew after the linger, it moved later by the lingered time
        # each round, and a message alone was never due.
        runtime.lull.linger(batch, deadline)
        return still_waiting(envelope, info)
    runtime.lull.work(batch)
    time.sleep(max(0.0, wait))
    host = gate_host(url, runtime.fetcher.policy)
    try:
        if not host:
            # Refused by netguard: the fetcher refuses it before any socket, so it takes
            # no turn (a shared "" bucket would throttle a burst of bad URLs).
            info.attempts += 1
            return _download(
                envelope, info, runtime, ctx, deadline=deadline, host=host, opened=opened
            )
        with runtime.gate.turn(host, deadline):
            info.attempts += 1
            try:
                return _download(
                    envelope, info, runtime, ctx, deadline=deadline, host=host, opened=opened
                )
            except HostBusyError:
                info.attempts -= 1  # a redirect's target was busy: no fault of this URL
                raise
    except HostBusyError as held:
        FETCH_THROTTLED.labels(STAGE, runtime.gate.rule_name(held.host), held.cause).inc()
        return deferred(envelope, info, held.retry_at, f"host busy: {held}", "throttled")
    except FetchFailed as carried:
        return failed(envelope, info, runtime, host, carried)


def _hop_gate(runtime: FetchRuntime, first: str, deadline: float, turns: list[float]) -> HopGate:
    """A redirect to another host takes that host's turn too (its rate, concurrency and
    pauses), so a shortener or a CDN's redirects cannot send a crawl past a host's limits.
    The first host's turn is held already: a redirect back to it takes nothing more.
    When each turn came is noted in `turns`: a hop whose turn came late in the batch had
    no fair try either, however early the download began."""

    @contextmanager
    def granted(host: str) -> Iterator[None]:
        with runtime.gate.hop(host, deadline):
            turns.append(time.monotonic())
            yield

    def hop(url: str) -> AbstractContextManager[None]:
        host = gate_host(url, runtime.fetcher.policy)
        return nullcontext() if host == first else granted(host)

    return hop


def _download(
    envelope: Envelope,
    info: FetchInfo,
    runtime: FetchRuntime,
    ctx: StageContext,
    *,
    deadline: float,
    host: str,
    opened: float | None,
) -> StageResult:
    """Downloads and stores the body; `opened` is when the batch's first call came (None
    outside a batch), to tell whether a cut download had its share of the batch."""
    url = info.url
    started = time.monotonic()
    answered: Response | None = None  # once the headers are in
    turns: list[float] = []  # when each redirect's own turn came
    FETCH_IN_FLIGHT.labels(STAGE).inc()
    try:
        hop = _hop_gate(runtime, host, deadline, turns)
        with runtime.fetcher.get(url, deadline=deadline, hop=hop) as response:
            answered = response
            first = read_head(response)
            if sniff(first) is None:
                FETCHES.labels(STAGE, "rejected", "not_an_image").inc()
                raise PermanentError(
                    "not_an_image",
                    f"{response.url} sent {response.content_type or 'no content type'} whose "
                    "first bytes are no image format we know",
                )
            key = object_key(url)
            bucket = ctx.buckets.incoming
            try:
                runtime.s3.put_object(
                    bucket,
                    key,
                    _Sniffed(first, response),  # type: ignore[arg-type]
                    length=-1,
                    part_size=PART_SIZE,
                    num_parallel_uploads=1,  # one part of one body in memory at a time
                    content_type=response.content_type or "application/octet-stream",
                )
            except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransientError(f"S3 put s3://{bucket}/{key} failed: {exc}") from exc
            seconds = time.monotonic() - started
            info.final_url, info.status = response.url, response.status
            info.content_type, info.redirects = response.content_type, list(response.redirects)
            info.bytes, info.sha256 = response.bytes_read, response.sha256()
    except FetchError as error:
        received = answered.bytes_read if answered is not None else 0
        limit = runtime.settings.download_timeout_s()
        fair = had_its_share(max([started, *turns]), deadline, opened, limit)
        raise FetchFailed(error, answered is not None, received, fair=fair) from error
    finally:
        FETCH_IN_FLIGHT.labels(STAGE).dec()
    info.seconds = round(seconds, 3)
    info.not_before = info.last_error = None
    info.object = ObjectRef(
        bucket=bucket, key=key, size=info.bytes, sha256=info.sha256, content_type=info.content_type
    )
    record = envelope.record
    record.fetch = info
    record.current = info.object
    envelope.route = route(restore=False, fetch=True)
    FETCHES.labels(STAGE, "ok", "ok").inc()
    FETCH_BYTES.labels(STAGE).inc(info.bytes or 0)
    FETCH_SECONDS.labels(STAGE).observe(seconds)
    return StageResult(envelope, detail=f"{info.bytes} bytes from {response.url}")


def runtime_for(settings: FetchSettings, s3: Minio) -> FetchRuntime:
    policy = NetPolicy.from_settings(
        schemes=("http", "https"),
        ports=settings.allowed_ports,
        allow_networks=settings.allow_networks,
        allow_hosts=settings.allow_hosts,
        deny_hosts=settings.deny_hosts,
    )
    limits = HttpLimits(
        max_bytes=settings.max_bytes,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        total_timeout_s=settings.download_timeout_s(),
        max_redirects=settings.max_redirects,
        user_agent=settings.user_agent,
        ca_file=settings.ca_file,
    )
    # The gate holds each host to its rule's concurrency; a pool smaller than the largest
    # rule would make fetches it let through wait for a connection instead.
    per_host = max(rule.concurrency for rule in (settings.default_host, *settings.hosts))
    return FetchRuntime(
        settings=settings,
        fetcher=SafeFetcher(policy, limits, connections_per_host=per_host),
        gate=HostGate(settings.default_host, settings.hosts, settings.concurrency),
        s3=s3,
    )


def stage_spec(settings: FetchSettings, s3: Minio) -> StageSpec:
    """fetch as the runner runs it: many calls at once on threads, short batches."""
    return StageSpec(
        STAGE,
        fetch,
        reads_blob=False,
        threads=settings.pending,
        params=runtime_for(settings, s3),
        batch_budget_s=settings.batch_budget_s,
    )
