"""SafeFetcher against real HTTP(S) servers on loopback: streaming, pooling, TLS,
redirects and statuses. (Hostile servers, time limits and SSRF: test_safe_http_hostile.py.)

No HTTP is mocked; the only fake is the resolver, so that no test ever asks a real DNS
server anything and every connection stays on this machine (127.0.0.0/8).
"""

from __future__ import annotations

import hashlib
import ipaddress
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from streams.io.netguard import NetPolicy
from streams.io.safe_http import FetchError, HttpLimits, SafeFetcher
from tests.support.fetch_kit import FakeDns, MakeFetcher, fetch_error, policy, read_all
from tests.support.http_servers import Framing, LoopbackServer

pytestmark = pytest.mark.timeout(60)


# --- the happy path ----------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_streams_a_real_image(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes, framing: Framing
) -> None:
    server.serve_bytes("/photo.jpg", image, framing=framing)
    fetcher = make_fetcher(policy(server))
    with fetcher.get(server.url("/photo.jpg?size=big")) as response:
        body = read_all(response)
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert response.address == "127.0.0.1"
        assert response.redirects == []
        assert response.declared_length == (len(image) if framing == "length" else None)
    assert body == image
    assert response.bytes_read == len(image)
    assert response.sha256() == hashlib.sha256(image).hexdigest()
    (seen,) = server.requests
    assert (seen.method, seen.path, seen.host) == (
        "GET",
        "/photo.jpg?size=big",
        f"127.0.0.1:{server.port}",
    )


def test_keeps_the_connection_alive(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes
) -> None:
    server.serve_bytes("/a.jpg", image)
    fetcher = make_fetcher(policy(server))
    for _ in range(3):
        with fetcher.get(server.url("/a.jpg")) as response:
            assert read_all(response) == image
    assert len(server.requests) == 3
    assert len(server.connections) == 1


def test_next_vetted_address_when_the_first_refuses(
    make_fetcher: MakeFetcher, image: bytes
) -> None:
    with LoopbackServer("127.0.0.2") as good:
        good.serve_bytes("/a.jpg", image)
        # Nothing listens on 127.0.0.3 at that port: the connection is refused there.
        dns = FakeDns({"images.test": [["127.0.0.3", "127.0.0.2"]]})
        net = policy(good, networks=("127.0.0.2/32", "127.0.0.3/32"))
        with make_fetcher(net, resolver=dns).get(good.url("/a.jpg", "images.test")) as response:
            assert read_all(response) == image
            assert response.address == "127.0.0.2"
        assert dns.calls == [("images.test", good.port)]


def test_html_with_status_200_is_a_response(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    # Whether it is an image is the stage's decision, not the client's.
    server.html("/page")
    with make_fetcher(policy(server)).get(server.url("/page")) as response:
        assert response.content_type is not None
        assert response.content_type.startswith("text/html")
        assert read_all(response).startswith(b"<html>")


def test_concurrent_fetches_share_a_bounded_pool(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    bodies = {
        f"/img/{n}.jpg": hashlib.sha256(str(n).encode()).digest() * (500 + n) for n in range(20)
    }
    for path, body in bodies.items():
        server.serve_bytes(path, body)
    fetcher = make_fetcher(policy(server))
    start = threading.Barrier(20, timeout=10)

    def one(path: str) -> bool:
        start.wait()
        with fetcher.get(server.url(path), deadline=time.monotonic() + 20) as response:
            return (
                read_all(response) == bodies[path]
                and response.sha256() == hashlib.sha256(bodies[path]).hexdigest()
            )

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, bodies, timeout=30))
    assert results == [True] * 20
    assert len(server.requests) == 20
    assert len(server.connections) <= 4  # connections_per_host, reused


def test_every_outcome_hands_its_connection_back(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes
) -> None:
    # One connection per host: a path that kept its slot would make the last fetch wait
    # for the pool until the total timeout.
    server.serve_bytes("/a.jpg", image)
    server.not_found("/gone")
    server.redirect("/r", "/a.jpg")
    server.gzip_bomb("/bomb")
    server.serve_bytes("/big", image * 2)
    server.too_many_requests("/busy")
    limits = HttpLimits(read_timeout_s=2.0, total_timeout_s=3.0, max_bytes=len(image))
    fetcher = SafeFetcher(policy(server), limits, FakeDns(), connections_per_host=1)
    try:
        for path in ("/gone", "/bomb", "/big", "/busy", "/a.jpg"):
            with pytest.raises(FetchError), fetcher.get(server.url(path)) as response:
                response.read(100)  # read a little and walk away
                raise FetchError("transient", "test", "walked away", url=path)
        with fetcher.get(server.url("/r")) as response:
            assert read_all(response) == image
    finally:
        fetcher.close()


def test_connection_refused_is_transient(make_fetcher: MakeFetcher) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    net = NetPolicy(
        allowed_ports=frozenset({port}),
        allow_networks=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    failed = fetch_error(make_fetcher(net), f"http://127.0.0.1:{port}/a.jpg")
    assert (failed.kind, failed.reason_class) == ("transient", "connect")


def test_server_latency_is_added_per_response(make_fetcher: MakeFetcher, image: bytes) -> None:
    with LoopbackServer("127.0.0.1", latency_s=0.05) as slowish:
        slowish.serve_bytes("/a.jpg", image)
        fetcher = make_fetcher(policy(slowish))
        began = time.monotonic()
        for _ in range(3):
            with fetcher.get(slowish.url("/a.jpg")) as response:
                assert read_all(response) == image
        assert time.monotonic() - began >= 3 * 0.05


# --- TLS ---------------------------------------------------------------------------------


def test_https_with_the_local_ca(make_fetcher: MakeFetcher, ca_file: str, image: bytes) -> None:
    with LoopbackServer("127.0.0.1", tls=True) as tls:
        tls.serve_bytes("/a.jpg", image)
        limits = HttpLimits(read_timeout_s=5.0, total_timeout_s=10.0, ca_file=ca_file)
        with make_fetcher(policy(tls), limits).get(tls.url("/a.jpg")) as response:
            assert read_all(response) == image


def test_https_without_the_ca_is_a_tls_error(make_fetcher: MakeFetcher, image: bytes) -> None:
    with LoopbackServer("127.0.0.1", tls=True) as tls:
        tls.serve_bytes("/a.jpg", image)
        failed = fetch_error(make_fetcher(policy(tls)), tls.url("/a.jpg"))
        assert (failed.kind, failed.reason_class) == ("permanent", "tls")
        assert tls.requests == []


def test_https_checks_the_certificate_against_the_host_name(
    make_fetcher: MakeFetcher, ca_file: str, image: bytes
) -> None:
    with LoopbackServer("127.0.0.1", tls=True) as tls:
        tls.serve_bytes("/a.jpg", image)
        dns = FakeDns({"images.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        limits = HttpLimits(read_timeout_s=5.0, total_timeout_s=10.0, ca_file=ca_file)
        fetcher = make_fetcher(policy(tls), limits, dns)
        with fetcher.get(tls.url("/a.jpg", "images.test")) as response:
            assert read_all(response) == image
            assert response.address == "127.0.0.1"
        assert tls.requests[0].host == f"images.test:{tls.port}"
        # The certificate is good for 127.0.0.1 but not for other.test: the name decides.
        failed = fetch_error(fetcher, tls.url("/a.jpg", "other.test"))
        assert (failed.kind, failed.reason_class) == ("permanent", "tls")
        assert len(tls.requests) == 1


# --- redirects ---------------------------------------------------------------------------


def test_follows_and_records_a_redirect_chain(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes
) -> None:
    server.redirect("/a", "/b", 301)
    server.redirect("/b", server.url("/c"), 307)
    server.redirect("/c", "final.jpg", 302)
    server.serve_bytes("/final.jpg", image)
    with make_fetcher(policy(server)).get(server.url("/a")) as response:
        assert read_all(response) == image
        assert response.redirects == [server.url(p) for p in ("/b", "/c", "/final.jpg")]
        assert response.url == server.url("/final.jpg")
    assert server.paths() == ["/a", "/b", "/c", "/final.jpg"]


def test_too_many_redirects(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    server.redirect("/loop", "/loop")
    limits = HttpLimits(read_timeout_s=5.0, total_timeout_s=10.0, max_redirects=3)
    failed = fetch_error(make_fetcher(policy(server), limits), server.url("/loop"))
    assert (failed.kind, failed.reason_class) == ("permanent", "redirects")
    assert len(server.requests) == 4  # the first request and three redirects followed


@pytest.mark.parametrize("where", ["trap", "localhost", "unspecified"])
def test_redirect_into_the_network_is_refused(make_fetcher: MakeFetcher, where: str) -> None:
    with LoopbackServer("127.0.0.2") as good, LoopbackServer("127.0.0.1") as trap:
        trap.serve_bytes("/secret", b"internal")
        location = {
            "trap": trap.url("/secret"),
            "localhost": f"http://localhost:{trap.port}/secret",
            # Other ranges (metadata, private) are proven on addresses in netguard's unit tests.
            "unspecified": f"http://0.0.0.0:{trap.port}/secret",
        }[where]
        good.redirect("/r", location)
        failed = fetch_error(
            make_fetcher(policy(good, trap, networks=("127.0.0.2/32",))), good.url("/r")
        )
        assert (failed.kind, failed.reason_class) == ("refused", "ssrf")
        assert failed.url == location
        assert good.paths() == ["/r"]
        assert not trap.contacted()


# --- statuses ----------------------------------------------------------------------------


def test_429_with_retry_after(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    server.too_many_requests("/busy", retry_after="7")
    failed = fetch_error(make_fetcher(policy(server)), server.url("/busy"))
    assert (failed.kind, failed.reason_class, failed.status) == ("transient", "http_429", 429)
    assert failed.retry_after_s == 7
    copied = pickle.loads(pickle.dumps(failed))
    assert (copied.kind, copied.reason_class, copied.status, copied.retry_after_s, str(copied)) == (
        "transient",
        "http_429",
        429,
        7,
        str(failed),
    )


def test_503_twice_then_200(
    server: LoopbackServer, make_fetcher: MakeFetcher, image: bytes
) -> None:
    server.flaky("/flaky.jpg", failures=2, body=image)
    fetcher = make_fetcher(policy(server))
    for _ in range(2):
        failed = fetch_error(fetcher, server.url("/flaky.jpg"))
        assert (failed.kind, failed.reason_class, failed.retry_after_s) == (
            "transient",
            "http_503",
            1,
        )
    with fetcher.get(server.url("/flaky.jpg")) as response:
        assert read_all(response) == image


def test_404_is_permanent(server: LoopbackServer, make_fetcher: MakeFetcher) -> None:
    server.not_found("/gone.jpg")
    failed = fetch_error(make_fetcher(policy(server)), server.url("/gone.jpg"))
    assert (failed.kind, failed.reason_class, failed.status) == ("permanent", "http_404", 404)
