"""How the fetch stage answers failures, called as the runner calls it: real servers on
127.0.0.1 and 127.0.0.2 (127.0.0.3 a trap that is never admitted), S3 a stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from streams.io.safe_http import SafeFetcher
from streams.runner.stage import PermanentError, StageContext, StageResult
from streams.stages.fetch.politeness import HostGate
from streams.stages.fetch.settings import FetchSettings, HostRule
from streams.stages.fetch.stage import FetchRuntime
from tests.integration.streams.fetch.fetch_stage_kit import (
    call,
    envelope,
    in_a_batch,
    runtime_of,
    stage_context,
    trickle,
)
from tests.support.http_servers import LoopbackServer
from tests.support.photos import encode, photo

OPEN = HostRule(rate_per_s=500, burst=100, concurrency=16)


@pytest.fixture(scope="module")
def image() -> bytes:
    return encode(photo("coffee"), "JPEG", quality=90)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


def settings_for(*servers: LoopbackServer, **changes: object) -> FetchSettings:
    networks = tuple(f"{s.address}/32" for s in servers)
    ports = tuple({s.port for s in servers})
    return FetchSettings(allow_networks=networks, allowed_ports=ports, **changes)  # type: ignore[arg-type]


def test_a_body_every_batch_cuts_is_a_dead_letter_after_max_attempts(
    server: LoopbackServer, image: bytes
) -> None:
    """A body too slow for any batch (here 1 KiB every 0.1 s, the batch 0.5 s) counts an
    attempt at each cut and ends as a dead letter that says which setting to raise,
    instead of starting over from byte 0 for ever."""
    trickle(server, "/big.jpg", image)
    server.serve_bytes("/small.jpg", image)
    settings = settings_for(server, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    ctx = stage_context(settings)
    env = envelope(server.url("/big.jpg"))
    results: list[StageResult] = []
    try:
        for _ in range(settings.max_attempts - 1):
            result = call(ctx, env, in_a_batch(0.5))
            results.append(result)
            env = result.envelope
        with pytest.raises(PermanentError) as dead:
            call(ctx, env, in_a_batch(0.5))
        # A cut pauses nobody: the host answered, it was the batch that ended.
        small = call(ctx, envelope(server.url("/small.jpg"), 2), in_a_batch(3))
    finally:
        runtime_of(ctx).fetcher.close()
    assert [r.outcome for r in results] == ["deferred", "deferred"]
    assert [(r.detail or "").split(":")[0] for r in results] == ["deadline", "deadline"]
    info = env.record.fetch
    assert info is not None and info.attempts == 3
    assert dead.value.reason_class == "deadline"
    assert "batch_budget_s" in dead.value.reason and "3 attempts" in dead.value.reason
    assert server.paths() == ["/big.jpg"] * 3 + ["/small.jpg"]
    assert small.outcome == "ok", small.detail


def test_a_host_rule_of_eight_gets_eight_connections(server: LoopbackServer, image: bytes) -> None:
    """The connection pools follow the host rules: eight downloads at once from a host
    whose rule allows eight all run (the default rule allows one)."""
    for n in range(8):
        trickle(server, f"/{n}.jpg", image[: 10 * 1024])
    rule = HostRule(pattern="127.0.0.1", rate_per_s=100, burst=8, concurrency=8)
    one = HostRule(rate_per_s=100, burst=8, concurrency=1)
    ctx = stage_context(settings_for(server, default_host=one, hosts=(rule,)))
    start = threading.Barrier(8, timeout=10)
    results: list[StageResult | None] = [None] * 8
    deadline = in_a_batch(5.0)  # one download takes about 1 s; eight in a row, 8 s

    def one_fetch(n: int) -> None:
        start.wait()
        results[n] = call(ctx, envelope(server.url(f"/{n}.jpg"), n), deadline)

    threads = [threading.Thread(target=one_fetch, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        runtime_of(ctx).fetcher.close()
    assert [r.outcome if r else None for r in results] == ["ok"] * 8, [
        r.detail if r else None for r in results
    ]
    assert len(server.connections) == 8


def test_no_free_connection_is_busy_not_the_hosts_fault(
    server: LoopbackServer, image: bytes
) -> None:
    """With every pooled connection to a server in use until the deadline, the fetch is
    deferred as busy: no attempt counted, the host not paused, its next URL fetched."""
    trickle(server, "/slow.jpg", image[: 20 * 1024], interval_s=0.05)
    server.serve_bytes("/quick.jpg", image)
    settings = settings_for(server, default_host=OPEN)
    base = stage_context(settings)
    given = runtime_of(base)
    # One connection per server, two downloads per host: the second waits for the pool.
    runtime = FetchRuntime(
        settings=settings,
        fetcher=SafeFetcher(given.fetcher.policy, given.fetcher.limits, connections_per_host=1),
        gate=HostGate(settings.default_host, (), settings.concurrency),
        s3=given.s3,
    )
    given.fetcher.close()
    ctx = StageContext("fetch", base.buckets, runtime)
    holding = threading.Thread(
        target=call, args=(ctx, envelope(server.url("/slow.jpg"), 1), in_a_batch(10))
    )
    try:
        holding.start()
        for _ in range(200):  # until the slow download holds the one connection
            if server.paths():
                break
            time.sleep(0.01)
        waited = call(ctx, envelope(server.url("/quick.jpg"), 2), in_a_batch(0.3))
        holding.join(10)
        after = call(ctx, envelope(server.url("/quick.jpg"), 3), in_a_batch(5))
    finally:
        runtime.fetcher.close()
    info = waited.envelope.record.fetch
    assert waited.outcome == "deferred" and (waited.detail or "").startswith("busy:")
    assert info is not None and info.attempts == 0
    assert after.outcome == "ok", after.detail
    assert server.paths() == ["/slow.jpg", "/quick.jpg"]


def test_the_hop_that_failed_is_paused_not_the_shortener(image: bytes) -> None:
    """A shortener's redirect to a host that answers 429 with Retry-After pauses that host:
    the shortener's other URLs go on, the 429 host's wait without a request."""
    with (
        LoopbackServer("127.0.0.1") as shortener,
        LoopbackServer("127.0.0.2", port=shortener.port) as cdn,
    ):
        cdn.too_many_requests("/img.jpg", retry_after="3600")
        cdn.serve_bytes("/other.jpg", image)
        shortener.redirect("/s", cdn.url("/img.jpg"))
        shortener.serve_bytes("/own.jpg", image)
        ctx = stage_context(settings_for(shortener, cdn, default_host=OPEN))
        try:
            limited = call(ctx, envelope(shortener.url("/s"), 1), in_a_batch(3))
            own = call(ctx, envelope(shortener.url("/own.jpg"), 2), in_a_batch(3))
            other = call(ctx, envelope(cdn.url("/other.jpg"), 3), in_a_batch(3))
        finally:
            runtime_of(ctx).fetcher.close()
        cdn_paths, shortener_paths = cdn.paths(), shortener.paths()
    assert limited.outcome == "deferred" and (limited.detail or "").startswith("http_429")
    assert own.outcome == "ok", own.detail
    assert other.outcome == "deferred"
    assert (other.detail or "").startswith("host busy: 127.0.0.2: retry_after")
    assert cdn_paths == ["/img.jpg"]
    assert shortener_paths == ["/s", "/own.jpg"]


def test_a_burst_of_refused_urls_is_dead_lettered_in_one_batch(server: LoopbackServer) -> None:
    """Refused URLs take no host's turn: twenty in one short batch are all dead letters at
    once (none deferred as throttled), and nothing is contacted."""
    with LoopbackServer("127.0.0.3", port=server.port) as trap:
        ctx = stage_context(settings_for(server))  # the default rule: 4/s, 2 at once
        deadline = in_a_batch(1.0)
        outcomes: list[str] = []
        try:
            for n in range(20):
                try:
                    result = call(ctx, envelope(trap.url(f"/{n}.jpg"), n), deadline)
                    outcomes.append(result.outcome)
                except PermanentError as refused:
                    outcomes.append(refused.reason_class)
        finally:
            runtime_of(ctx).fetcher.close()
        contacted = trap.contacted()
    assert outcomes == ["ssrf"] * 20
    assert not contacted
    assert not server.contacted()


def _late_behind_a_held_slot(
    ctx: StageContext, holder: LoopbackServer, late_url: str, after_url: str
) -> tuple[list[StageResult | BaseException], StageResult, StageResult]:
    """One download holds `holder`'s one slot (its /hold.jpg, 2.5 s at least) while
    `late_url` waits for that slot within the same 4 s batch; then `after_url`, in a
    batch of its own. What the holder ended with, the late one's and the after one's."""
    deadline = in_a_batch(4.0)  # the late one starts at 2.5 s or later: under half of 4 s
    held: list[StageResult | BaseException] = []

    def hold() -> None:
        try:
            held.append(call(ctx, envelope(holder.url("/hold.jpg"), 1), deadline))
        except BaseException as exc:  # handed to the test
            held.append(exc)

    holding = threading.Thread(target=hold)
    try:
        holding.start()
        for _ in range(500):  # until the first download holds the host's one slot
            if holder.paths():
                break
            time.sleep(0.01)
        waited = call(ctx, envelope(late_url, 2), deadline)
        holding.join(10)
        after = call(ctx, envelope(after_url, 3), in_a_batch(3.0))
    finally:
        runtime_of(ctx).fetcher.close()
    return held, waited, after


@pytest.mark.parametrize("late", ["cut", "tarpit"])
def test_a_download_started_late_in_its_batch_is_neither_counted_nor_pauses(
    server: LoopbackServer, image: bytes, late: str
) -> None:
    """A fetch that waited most of its batch for its host's one slot, then started, is cut
    by the batch's end: while its body arrived ("cut") or before any answer ("tarpit").
    With under half of the batch left when it started, that says nothing of the image or
    the host: deferred, due at once, no attempt counted (with max_attempts 1 it used to be
    a dead letter) and the host not paused (a tarpit's used to be, for 30 s)."""
    trickle(server, "/hold.jpg", image[: 25 * 1024])  # 25 chunks, 0.1 s apart: 2.5 s at least
    if late == "cut":
        trickle(server, "/late.jpg", image)  # 10 KiB/s: far longer than any batch here
    else:
        server.tarpit("/late.jpg", wait_s=10.0)
    server.serve_bytes("/small.jpg", image)
    one = HostRule(rate_per_s=100, burst=10, concurrency=1)
    ctx = stage_context(settings_for(server, default_host=one, max_attempts=1))
    held, waited, after = _late_behind_a_held_slot(
        ctx, server, server.url("/late.jpg"), server.url("/small.jpg")
    )
    assert [r.outcome if isinstance(r, StageResult) else r for r in held] == ["ok"]
    info = waited.envelope.record.fetch
    assert waited.outcome == "deferred", waited.detail
    assert (waited.detail or "").startswith("deadline:"), waited.detail
    assert info is not None and info.attempts == 0 and info.uncounted_tries == 1
    assert after.outcome == "ok", after.detail  # the host was not paused
    assert server.paths() == ["/hold.jpg", "/late.jpg", "/small.jpg"]


def test_a_redirect_whose_turn_came_late_is_neither_counted_nor_pauses(image: bytes) -> None:
    """The fair-share rule, through a redirect: the shortener answers at once, but its
    redirect waits most of the batch for the CDN's one slot and is then cut before any
    answer. The download began early; the hop's turn came late, and that is what counts
    (the CDN used to be paused as a tarpit, and with max_attempts 1 the URL dead)."""
    with (
        LoopbackServer("127.0.0.1") as shortener,
        LoopbackServer("127.0.0.2", port=shortener.port) as cdn,
    ):
        trickle(cdn, "/hold.jpg", image[: 25 * 1024])  # holds the CDN's slot 2.5 s at least
        cdn.tarpit("/late.jpg", wait_s=10.0)
        cdn.serve_bytes("/small.jpg", image)
        shortener.redirect("/s", cdn.url("/late.jpg"))
        one = HostRule(rate_per_s=100, burst=10, concurrency=1)
        ctx = stage_context(settings_for(shortener, cdn, default_host=one, max_attempts=1))
        held, waited, after = _late_behind_a_held_slot(
            ctx, cdn, shortener.url("/s"), cdn.url("/small.jpg")
        )
        cdn_paths, shortener_paths = cdn.paths(), shortener.paths()
    assert [r.outcome if isinstance(r, StageResult) else r for r in held] == ["ok"]
    info = waited.envelope.record.fetch
    assert waited.outcome == "deferred", waited.detail
    assert info is not None and info.attempts == 0 and info.uncounted_tries == 1
    assert after.outcome == "ok", after.detail  # the CDN was not paused
    assert shortener_paths == ["/s"]
    assert cdn_paths == ["/hold.jpg", "/late.jpg", "/small.jpg"]
