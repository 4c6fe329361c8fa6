"""The fetch's one clock against servers that never let a socket wait time out: headers
trickled a byte at a time, interim answers for ever, chunk trailers for ever, and a name
server that does not answer. Each costs the fetch its total timeout and no more; a
connection that ended its fetch in time stays open for the next one. And the stage reads
a body's whole magic number, however few bytes the first packet holds.

Every server is on loopback (127.0.0.1); the resolver is a local fake.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from processors.sniff import sniff
from streams.io.deadline_watch import WATCH
from streams.io.safe_http import HttpLimits
from streams.stages.fetch.stage import SNIFF_BYTES, read_head
from tests.support.fetch_kit import FakeDns, MakeFetcher, fetch_error, policy, read_all
from tests.support.http_servers import LoopbackServer
from tests.support.photos import encode, photo

pytestmark = pytest.mark.timeout(60)
# Every gap below is well inside the read timeout; only the total can end the fetch.
LIMITS = HttpLimits(connect_timeout_s=2.0, read_timeout_s=0.5, total_timeout_s=1.0)
SERVER_S = 6.0  # how long each hostile server would go on: far past the total


def _raw(server: LoopbackServer, path: str, head: bytes, repeat: bytes, gap_s: float) -> None:
    """A route that writes `head`, then `repeat` every `gap_s` until SERVER_S pass, and
    records how it ended (server.ending): "cut" when the client hung up first."""

    def answer(h: Any) -> None:
        h.close_connection = True
        sent = 0
        try:
            h.wfile.write(head)
            h.wfile.flush()
            for _ in range(round(SERVER_S / gap_s)):
                how = h.pause(gap_s)
                if how is not None:
                    h.ended(how, sent)
                    return
                h.wfile.write(repeat)
                h.wfile.flush()
                sent += len(repeat)
        except OSError:
            h.ended("cut", sent)  # the client cut the connection: what the test wants
            return
        h.ended("done", sent)

    server.route(path, answer)


HOSTILE: dict[str, Callable[[LoopbackServer, str], None]] = {
    # The status line, then one byte of a header line at a time.
    "header_trickle": lambda s, p: _raw(s, p, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.1),
    # "100 Continue" answers, as many as the client will read.
    "interim_flood": lambda s, p: _raw(s, p, b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.1),
    # A chunked body of eight bytes, then trailer lines that never end.
    "trailer_flood": lambda s, p: _raw(
        s,
        p,
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\n\x89PNG\r\n\x1a\n\r\n0\r\n",
        b"X-Trailer: more\r\n",
        0.05,
    ),
}


@pytest.mark.parametrize("behaviour", list(HOSTILE))
def test_a_server_that_never_lets_a_read_time_out_gets_the_total_and_no_more(
    behaviour: str, server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    HOSTILE[behaviour](server, "/hostile")
    cut_before = WATCH.cut
    failed = fetch_error(make_fetcher(policy(server), LIMITS), server.url("/hostile"))
    assert (failed.kind, failed.reason_class) == ("transient", "timeout"), failed
    # Without the watch each of these held the fetch until the server stopped (6 s): the
    # client hung up while the server still had most of its time to go.
    ending = server.ending("/hostile")
    assert ending is not None and ending.how == "cut", ending
    assert WATCH.cut == cut_before + 1


def test_the_batch_deadline_cuts_a_header_trickle_too(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    HOSTILE["header_trickle"](server, "/hostile")
    fetcher = make_fetcher(policy(server), HttpLimits(read_timeout_s=0.5, total_timeout_s=30))
    failed = fetch_error(fetcher, server.url("/hostile"), deadline=time.monotonic() + 0.8)
    assert (failed.kind, failed.reason_class) == ("transient", "deadline")
    ending = server.ending("/hostile")  # cut by the client, not run out (6 s)
    assert ending is not None and ending.how == "cut", ending


def test_a_connection_that_finished_in_time_is_kept_and_never_cut(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    server.serve_bytes("/ok.png", body, content_type="image/png")
    fetcher = make_fetcher(policy(server), HttpLimits(read_timeout_s=0.5, total_timeout_s=0.6))
    cut_before = WATCH.cut
    for _ in range(2):
        with fetcher.get(server.url("/ok.png")) as response:
            assert read_all(response) == body
        time.sleep(0.9)  # past the first fetch's clock: an armed idle socket would be cut
    assert WATCH.cut == cut_before
    # Both fetches went over one kept-alive connection.
    assert len(server.connections) == 1


def test_a_name_server_that_does_not_answer_costs_the_connect_timeout(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.serve_bytes("/a.jpg", b"\xff\xd8\xff" + b"x" * 100)
    release = threading.Event()
    answered: list[str] = []

    class SilentDns(FakeDns):
        def __call__(self, host: str, port: int) -> list[str]:
            # A resolver stuck on a silent name server, until the test lets it go.
            release.wait(30)
            answered.append(host)
            return super().__call__(host, port)

    dns = SilentDns({"images.example": [[server.address]]})
    limits = HttpLimits(connect_timeout_s=0.5, read_timeout_s=1.0, total_timeout_s=10.0)
    fetcher = make_fetcher(policy(server), limits, dns)
    try:
        failed = fetch_error(fetcher, server.url("/a.jpg", host="images.example"))
        # The fetch gave up while the lookup was still stuck: it never waited for it.
        assert answered == []
    finally:
        release.set()
    assert (failed.kind, failed.reason_class) == ("transient", "dns"), failed
    assert "no answer within 0.5 s" in failed.reason
    assert not server.contacted()


@pytest.mark.parametrize("packet", [1, 3, 7])
def test_the_stage_reads_the_whole_magic_number_whatever_the_first_packet_holds(
    packet: int, server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    png = encode(photo("coffee"), "PNG")
    # Each packet its own send, 20 ms apart: the first read gets `packet` bytes.
    server.slow("/split.png", png[: SNIFF_BYTES * 2], chunk=packet, interval_s=0.02)
    with make_fetcher(policy(server)).get(server.url("/split.png")) as response:
        head = read_head(response)
    assert head == png[:SNIFF_BYTES]
    assert sniff(head) is not None


def test_a_body_shorter_than_the_sniff_is_read_to_its_end(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.serve_bytes("/tiny.gif", b"GIF89a\x01")
    with make_fetcher(policy(server)).get(server.url("/tiny.gif")) as response:
        assert read_head(response) == b"GIF89a\x01"


def test_a_cut_connection_is_not_handed_to_the_next_fetch(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    HOSTILE["interim_flood"](server, "/hostile")
    server.serve_bytes("/ok.gif", b"GIF89a" + b"x" * 100, content_type="image/gif")
    fetcher = make_fetcher(policy(server), LIMITS)
    fetch_error(fetcher, server.url("/hostile"))
    with fetcher.get(server.url("/ok.gif")) as response:
        assert read_all(response) == b"GIF89a" + b"x" * 100
    assert len(server.connections) == 2  # a fresh one: the cut one was dropped
