"""When the fetcher's own resources run out (every pooled connection to a server), the
fetch is "busy": the host was not asked, so nothing may be held against it. Only loopback
servers."""

from __future__ import annotations

import time

from streams.io.safe_http import HttpLimits, SafeFetcher
from tests.integration.streams.fetch.fetch_stage_kit import trickle
from tests.support.fetch_kit import FakeDns, fetch_error, policy, read_all
from tests.support.http_servers import LoopbackServer

JPEG = b"\xff\xd8\xff" + b"x" * 100


def test_a_fetch_that_finds_no_free_connection_is_busy(server: LoopbackServer) -> None:
    trickle(server, "/held.jpg", JPEG * 10, chunk=100, interval_s=0.05)
    server.serve_bytes("/next.jpg", JPEG)
    limits = HttpLimits(read_timeout_s=5.0, total_timeout_s=10.0)
    fetcher = SafeFetcher(policy(server), limits, FakeDns(), connections_per_host=1)
    try:
        with fetcher.get(server.url("/held.jpg")) as held:
            # The one connection is in use: the next fetch waits for it until its clock
            # runs out, and that says nothing about the server.
            failed = fetch_error(fetcher, server.url("/next.jpg"), deadline=time.monotonic() + 0.3)
            assert read_all(held) == JPEG * 10
    finally:
        fetcher.close()
    assert (failed.kind, failed.reason_class) == ("transient", "busy"), failed
    assert server.paths() == ["/held.jpg"]
