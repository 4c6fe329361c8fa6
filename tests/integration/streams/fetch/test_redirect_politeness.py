"""A redirect to another host takes that host's turn: a link shortener cannot lead a crawl
past the limits of the host it points at. Real servers on 127.0.0.1 and 127.0.0.2, the
fetch stage's own function, real MinIO for what it stores."""

from __future__ import annotations

import time
from collections.abc import Callable

from schemas.events import Envelope, ImageSubmitted, Source
from schemas.events import encode as encode_event
from streams.config.settings import BucketSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.runner.records import decode_input, now_iso
from streams.runner.stage import StageContext, StageResult, deadline_of_call
from streams.stages.fetch.settings import FetchSettings, HostRule
from streams.stages.fetch.stage import fetch, runtime_for
from tests.conftest import Stack
from tests.support.http_servers import LoopbackServer
from tests.support.photos import encode, photo

OPEN = HostRule(rate_per_s=500, burst=100, concurrency=16)
# The CDN allows one download, then one a hundred seconds: far past any batch's deadline.
STINGY = HostRule(pattern="127.0.0.2", rate_per_s=0.01, burst=1, concurrency=1)


def _envelope(url: str, n: int) -> Envelope:
    submitted = ImageSubmitted(
        image_id=f"short-{n}", source=Source(url=url), submitted_at=now_iso()
    )
    topics = Topics("px")
    return decode_input(topics.ingest, topics, encode_event(submitted), now_iso())


def _fetch(ctx: StageContext, envelope: Envelope) -> StageResult:
    with deadline_of_call(time.monotonic() + 3):
        return fetch(envelope, None, ctx)


def test_redirects_to_a_stingy_host_wait_for_its_turn(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    s3 = clients.s3(stack.s3)
    bucket = unique_name("pf-in")[:63]
    s3.make_bucket(bucket)
    body = encode(photo("coffee"), "JPEG", quality=80)
    with (
        LoopbackServer("127.0.0.1") as shortener,
        LoopbackServer("127.0.0.2", port=shortener.port) as cdn,
    ):
        settings = FetchSettings(
            allow_networks=("127.0.0.1/32", "127.0.0.2/32"),
            allowed_ports=(shortener.port,),
            default_host=OPEN,
            hosts=(STINGY,),
        )
        runtime = runtime_for(settings, s3)
        ctx = StageContext("fetch", BucketSettings(incoming=bucket), runtime)
        for n in range(3):
            cdn.serve_bytes(f"/img/{n}.jpg", body)
            shortener.redirect(f"/s/{n}", cdn.url(f"/img/{n}.jpg"))
        # Same-host redirects take no second turn of that host (it would wait for itself).
        shortener.redirect("/s/self", "/s/self-2")
        shortener.serve_bytes("/s/self-2", body)
        try:
            results = [_fetch(ctx, _envelope(shortener.url(f"/s/{n}"), n)) for n in range(3)]
            own = _fetch(ctx, _envelope(shortener.url("/s/self"), 9))
        finally:
            runtime.fetcher.close()
    outcomes = [r.outcome for r in results]
    assert outcomes == ["ok", "deferred", "deferred"], [r.detail for r in results]
    # The CDN was asked once; the shortener once per URL: the redirects were followed, and
    # the two beyond the CDN's rate stopped before reaching it.
    assert cdn.paths() == ["/img/0.jpg"]
    assert sorted(p for p in shortener.paths() if p.startswith("/s/")) == [
        "/s/0",
        "/s/1",
        "/s/2",
        "/s/self",
        "/s/self-2",
    ]
    for deferred in results[1:]:
        info = deferred.envelope.record.fetch
        assert info is not None and info.attempts == 0  # the CDN's limit, not the URL's fault
        assert (info.last_error or "").startswith("host busy: 127.0.0.2: rate")
    assert own.outcome == "ok"
    stored = sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))
    assert len(stored) == 2
