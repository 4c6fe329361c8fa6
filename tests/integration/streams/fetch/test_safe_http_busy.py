"""When the fetcher's own resources run out (every pooled connection to a server, every
name lookup thread), the fetch is "busy": the host was not asked, so nothing may be held
against it. Only loopback servers; names are answered by a fake resolver."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from streams.io.safe_http import DNS_THREADS, FetchError, HttpLimits, SafeFetcher
from tests.integration.streams.fetch.fetch_stage_kit import trickle
from tests.support.fetch_kit import FakeDns, MakeFetcher, fetch_error, policy, read_all
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


class StuckDns(FakeDns):
    """Names starting with "stuck" hang (a silent name server) until released; the others
    are answered from the table at once."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        super().__init__(answers)
        self.released = threading.Event()

    def __call__(self, host: str, port: int) -> list[str]:
        if not host.startswith("stuck"):
            return super().__call__(host, port)
        with self._lock:
            self.calls.append((host, port))
        self.released.wait(30)  # bounded: the test releases it long before
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    def stuck_calls(self) -> int:
        with self._lock:
            return sum(1 for host, _ in self.calls if host.startswith("stuck"))


def test_slow_names_hold_at_most_the_lookup_threads_and_the_rest_are_busy(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    """Lookups that time out are not left queued behind the stuck ones (to run, and hold a
    thread, long after their fetch gave up); with every thread stuck, a lookup is "busy",
    not a DNS failure of its host; once the stuck ones end, names resolve again."""
    server.serve_bytes("/a.jpg", JPEG)
    dns = StuckDns({"images.test": [[server.address]]})
    limits = HttpLimits(connect_timeout_s=0.3, read_timeout_s=2.0, total_timeout_s=10.0)
    fetcher = make_fetcher(policy(server), limits, dns)
    errors: list[FetchError] = []
    try:
        for n in range(DNS_THREADS + 4):
            errors.append(fetch_error(fetcher, server.url("/a.jpg", host=f"stuck-{n}.test")))
        healthy_meanwhile = fetch_error(fetcher, server.url("/a.jpg", host="images.test"))
    finally:
        dns.released.set()
    with fetcher.get(server.url("/a.jpg", host="images.test")) as response:
        assert read_all(response) == JPEG
    classes = [e.reason_class for e in errors]
    assert classes == ["dns"] * DNS_THREADS + ["busy"] * 4, classes
    assert (healthy_meanwhile.kind, healthy_meanwhile.reason_class) == ("transient", "busy")
    # Only the lookups that had a thread ever ran; the others were never started.
    assert dns.stuck_calls() == DNS_THREADS
    assert server.paths() == ["/a.jpg"]


class LateDns(StuckDns):
    """As StuckDns, and names starting with "late" are answered, but only `late_s` after
    they were asked."""

    def __init__(self, answers: dict[str, list[list[str]]], late_s: float) -> None:
        super().__init__(answers)
        self.late_s = late_s

    def __call__(self, host: str, port: int) -> list[str]:
        if not host.startswith("late"):
            return super().__call__(host, port)
        with self._lock:
            self.calls.append((host, port))
        time.sleep(self.late_s)
        return self.answers["images.test"][0]


@pytest.mark.parametrize(
    ("freed_s", "late_s", "expected"),
    [
        # Freed 1.6 s into a 2 s connect timeout: the lookup has 0.4 s left, not a fair
        # question. Given a second 2 s, as it once was, it would have been answered (1 s).
        (1.6, 1.0, "busy"),
        # Freed at once, and the name server does not answer within what is left: its
        # host's own failure.
        (0.3, 2.5, "dns"),
    ],
)
def test_waiting_for_a_lookup_thread_and_the_lookup_share_one_connect_timeout(
    server: LoopbackServer, make_fetcher: MakeFetcher, freed_s: float, late_s: float, expected: str
) -> None:
    """A name lookup gets connect_timeout_s in all: the time it waited for a free lookup
    thread is not given to it again. A lookup left under half of it by that wait is
    "busy" (not counted against the URL, no pause of the host), not a dns failure."""
    server.serve_bytes("/a.jpg", JPEG)
    dns = LateDns({"images.test": [[server.address]]}, late_s=late_s)
    limits = HttpLimits(connect_timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=10.0)
    fetcher = make_fetcher(policy(server), limits, dns)
    try:
        for n in range(DNS_THREADS):  # each gives up at its deadline; its lookup stays stuck
            url = server.url("/a.jpg", host=f"stuck-{n}.test")
            fetch_error(fetcher, url, deadline=time.monotonic() + 0.1)
        assert dns.stuck_calls() == DNS_THREADS
        freeing = threading.Timer(freed_s, dns.released.set)
        freeing.start()
        late = fetch_error(fetcher, server.url("/a.jpg", host="late.test"))
    finally:
        dns.released.set()
    assert (late.kind, late.reason_class) == ("transient", expected), late
    if expected == "dns":
        assert "late.test: no answer within 1." in late.reason, late.reason
    assert not server.contacted()
