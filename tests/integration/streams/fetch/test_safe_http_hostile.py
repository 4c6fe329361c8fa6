"""SafeFetcher against hostile servers on loopback: lying lengths, a gzip bomb, bodies
over the limit, slow servers and tarpits, DNS rebinding and SSRF spellings.

No HTTP is mocked; the only fake is the resolver, so that no test ever asks a real DNS
server anything and every connection stays on this machine (127.0.0.0/8).
"""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from typing import Any

import pytest

from streams.io.safe_http import FetchError, HttpLimits, Response
from tests.support.fetch_kit import (
    FakeDns,
    MakeFetcher,
    fetch_error,
    policy,
    read_all,
    twin_servers,
)
from tests.support.http_servers import Ending, Framing, LoopbackServer, gzip_bomb_body

pytestmark = pytest.mark.timeout(60)


# --- lying and hostile servers -----------------------------------------------------------


def test_body_shorter_than_its_content_length(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.length_lie("/short", b"x" * 1000, declared=2000)
    fetcher = make_fetcher(policy(server))
    with fetcher.get(server.url("/short")) as response:
        with pytest.raises(FetchError) as caught:
            read_all(response)
        # A broken body stays broken: no later read pretends it ended.
        with pytest.raises(FetchError):
            response.read()
    assert (caught.value.kind, caught.value.reason_class) == ("transient", "reset")
    assert response.bytes_read == 1000


def test_body_longer_than_its_content_length(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes
) -> None:
    # The declared length is what the response is: the extra bytes are never read.
    server.length_lie("/long", image, declared=1000)
    with make_fetcher(policy(server)).get(server.url("/long")) as response:
        assert read_all(response) == image[:1000]
        assert response.sha256() == hashlib.sha256(image[:1000]).hexdigest()


def test_gzip_bomb_is_refused_unread(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    server.gzip_bomb("/bomb.png")  # 10 MiB of zeros, about 10 KB on the wire
    assert len(gzip_bomb_body()) < 64 * 1024
    fetcher = make_fetcher(policy(server))
    tracemalloc.start()
    try:
        failed = fetch_error(fetcher, server.url("/bomb.png"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (failed.kind, failed.reason_class) == ("permanent", "content_encoding")
    assert peak < 1024 * 1024  # inflating it would take ten times that at least


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_body_over_max_bytes(
    server: LoopbackServer, make_fetcher: MakeFetcher, framing: Framing
) -> None:
    server.serve_bytes("/big", b"b" * 50_000, framing=framing)
    limits = HttpLimits(read_timeout_s=5.0, total_timeout_s=10.0, max_bytes=10_000)
    fetcher = make_fetcher(policy(server), limits)
    opened: list[Response] = []
    with pytest.raises(FetchError) as caught, fetcher.get(server.url("/big")) as response:
        opened.append(response)
        read_all(response)
    assert (caught.value.kind, caught.value.reason_class) == ("permanent", "too_large")
    if framing == "length":
        assert opened == []  # refused on its Content-Length, before a byte of the body
    else:
        assert opened[0].bytes_read <= 10_001


# --- time limits -------------------------------------------------------------------------


def test_slow_body_past_the_read_timeout(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    # The first chunk would come 3 s after the headers: ten read timeouts later.
    server.slow("/slow.jpg", b"s" * 4096, chunk=1024, interval_s=3.0)
    limits = HttpLimits(read_timeout_s=0.3, total_timeout_s=30.0)
    failed = fetch_error(make_fetcher(policy(server), limits), server.url("/slow.jpg"))
    assert (failed.kind, failed.reason_class) == ("transient", "timeout")
    # The client hung up in the first gap, before a byte of the body: the read timeout,
    # not the end of the body nor the total, ended it.
    assert server.ending("/slow.jpg") == Ending("cut", 0)


def test_trickle_past_the_total_timeout(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    # Every gap is well within the read timeout; the whole fetch (10 s of trickle) is not.
    server.slow("/trickle.jpg", b"t" * 10_000, chunk=100, interval_s=0.1)
    limits = HttpLimits(read_timeout_s=2.0, total_timeout_s=0.8)
    failed = fetch_error(make_fetcher(policy(server), limits), server.url("/trickle.jpg"))
    assert (failed.kind, failed.reason_class) == ("transient", "timeout")
    ending = server.ending("/trickle.jpg")
    assert ending is not None and ending.how == "cut", ending  # the client hung up first
    assert ending.sent < 10_000, ending  # with most of the body still to come


def test_tarpit_past_the_total_timeout(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    # The tarpit answers after 20 s, within the read timeout: only the total can end it.
    server.tarpit("/pit", wait_s=20.0)
    limits = HttpLimits(read_timeout_s=30.0, total_timeout_s=0.5)
    failed = fetch_error(make_fetcher(policy(server), limits), server.url("/pit"))
    assert (failed.kind, failed.reason_class) == ("transient", "timeout")
    assert server.ending("/pit") == Ending("cut", 0)  # the client hung up before the answer


def test_tarpit_past_the_deadline(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    server.tarpit("/pit", wait_s=20.0)
    fetcher = make_fetcher(policy(server), HttpLimits(read_timeout_s=30.0, total_timeout_s=60.0))
    failed = fetch_error(fetcher, server.url("/pit"), deadline=time.monotonic() + 0.5)
    assert (failed.kind, failed.reason_class) == ("transient", "deadline")
    assert server.ending("/pit") == Ending("cut", 0)  # the client hung up before the answer


def test_a_passed_deadline_opens_no_connection(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    failed = fetch_error(make_fetcher(policy(server)), server.url("/x"), deadline=time.monotonic())
    assert (failed.kind, failed.reason_class) == ("transient", "deadline")
    assert not server.contacted()


def test_stopping_a_server_cuts_its_tarpit_short(make_fetcher: MakeFetcher) -> None:
    server = LoopbackServer("127.0.0.1").start()
    try:
        server.tarpit("/pit", wait_s=30.0)
        fetcher = make_fetcher(policy(server), HttpLimits(read_timeout_s=20, total_timeout_s=20))
        errors: list[FetchError] = []
        client = threading.Thread(
            target=lambda: errors.append(fetch_error(fetcher, server.url("/pit"))), daemon=True
        )
        client.start()
        for _ in range(500):  # up to 5 s for the request to arrive
            if server.requests:
                break
            time.sleep(0.01)
        assert server.paths() == ["/pit"]
    finally:
        server.stop()
    # The tarpit was woken by stop(), not run out (30 s), and no connection was left open.
    assert server.ending("/pit") == Ending("stopped", 0)
    assert server.lingering() == 0
    client.join(5)
    assert not client.is_alive()
    # The server hung up without an answer: the client sees a broken connection.
    assert [(e.kind, e.reason_class) for e in errors] == [("transient", "reset")]


# --- SSRF --------------------------------------------------------------------------------


def test_dns_rebinding_cannot_switch_the_address(make_fetcher: MakeFetcher, image: bytes) -> None:
    good, trap = twin_servers("127.0.0.2", "127.0.0.1")  # the same port on both
    with good, trap:
        good.serve_bytes("/a.jpg", image)
        trap.serve_bytes("/a.jpg", b"internal")
        # The first answer passes the check; a client that looked again would get loopback.
        dns = FakeDns({"images.test": [["127.0.0.2"], ["127.0.0.1"]]})
        fetcher = make_fetcher(policy(good, networks=("127.0.0.2/32",)), resolver=dns)
        with fetcher.get(good.url("/a.jpg", "images.test")) as response:
            assert read_all(response) == image
            assert response.address == "127.0.0.2"
        assert dns.calls == [("images.test", good.port)]
        assert good.requests[0].host == f"images.test:{good.port}"
        assert not trap.contacted()


def test_one_internal_address_refuses_the_name(make_fetcher: MakeFetcher) -> None:
    good, trap = twin_servers("127.0.0.2", "127.0.0.1")
    with good, trap:
        dns = FakeDns({"images.test": [["127.0.0.2", "127.0.0.1"]]})
        fetcher = make_fetcher(policy(good, networks=("127.0.0.2/32",)), resolver=dns)
        failed = fetch_error(fetcher, good.url("/a.jpg", "images.test"))
        assert (failed.kind, failed.reason_class) == ("refused", "ssrf")
        assert not good.contacted()
        assert not trap.contacted()


def test_ssrf_spellings_never_connect(make_fetcher: MakeFetcher) -> None:
    with LoopbackServer("127.0.0.1") as trap:
        trap.serve_bytes("/", b"internal")
        port = trap.port
        spellings = [
            f"http://127.0.0.1:{port}/",
            f"http://0.0.0.0:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://2130706433:{port}/",
            f"http://0177.0.0.1:{port}/",
            f"http://0x7f.1:{port}/",
            f"http://127.1:{port}/",
            f"http://good.example@127.0.0.1:{port}/",
            f"http://localhost:{port}/",
            f"http://LOCALHOST.:{port}/",
            f"http://[::1]:{port}/",
        ]
        dns = FakeDns()
        fetcher = make_fetcher(policy(trap, networks=()), resolver=dns)
        for url in spellings:
            failed = fetch_error(fetcher, url)
            assert (failed.kind, failed.reason_class) == ("refused", "ssrf"), url
        assert dns.calls == []
        assert not trap.contacted()


# --- headers ---------------------------------------------------------------------------


def _headers_route(server: LoopbackServer, path: str, count: int, size: int) -> None:
    """200 with `count` headers of `size` bytes each, then a small image body. The bytes
    are made here, once, so that serving them allocates next to nothing."""
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * size) for n in range(count))
    block = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 6\r\n\r\nGIF89a"

    def answer(h: Any) -> None:
        h.wfile.write(block)

    server.route(path, answer)


def test_headers_past_their_limit_are_refused_before_they_cost_memory(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    _headers_route(server, "/fat", count=90, size=60_000)  # 5.4 MB, within http.client.s
    _headers_route(server, "/fine", count=20, size=2_000)  # 40 KB: a generous real host
    fetcher = make_fetcher(policy(server))
    tracemalloc.start()
    try:
        failed = fetch_error(fetcher, server.url("/fat"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (failed.kind, failed.reason_class) == ("permanent", "bad_response"), failed
    assert "headers pass 65536 bytes" in failed.reason
    assert peak < 2_000_000, peak  # the 5.4 MB were never held
    with fetcher.get(server.url("/fine")) as response:
        assert read_all(response) == b"GIF89a"


def test_interim_answers_count_against_the_same_header_limit(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    def answer(h: Any) -> None:
        for _ in range(5000):  # 125 KB of "100 Continue", then they would go on
            h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        h.wfile.flush()
        h.close_connection = True

    server.route("/interim", answer)
    failed = fetch_error(make_fetcher(policy(server)), server.url("/interim"))
    assert (failed.kind, failed.reason_class) == ("permanent", "bad_response"), failed
