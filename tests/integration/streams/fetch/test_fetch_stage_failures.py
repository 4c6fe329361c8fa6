"""How the fetch stage answers failures, called as the runner calls it: a real server on
127.0.0.1, S3 a stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.runner.stage import PermanentError, StageResult
from streams.stages.fetch.settings import FetchSettings, HostRule
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
