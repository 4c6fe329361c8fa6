"""Helpers of the SafeFetcher tests: a fake resolver, a loopback policy, body readers."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable

import pytest

from streams.io.netguard import NetPolicy
from streams.io.safe_http import FetchError, HttpLimits, Response, SafeFetcher
from tests.support.http_servers import LoopbackServer

MakeFetcher = Callable[..., SafeFetcher]
FAST = HttpLimits(connect_timeout_s=2.0, read_timeout_s=5.0, total_timeout_s=10.0)


class FakeDns:
    """Answers from a table, one answer per call (the last one repeats); records each call.
    An unknown name fails like NXDOMAIN, so nothing here ever reaches a real resolver."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.calls.append((host, port))
            seen = sum(1 for name, _ in self.calls if name == host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = self.answers[host]
        return answers[min(seen, len(answers)) - 1]


def policy(*servers: LoopbackServer, networks: tuple[str, ...] | None = None) -> NetPolicy:
    """Admits exactly the given networks (by default the servers' own addresses, /32) and
    the servers' ports."""
    admitted = tuple(f"{s.address}/32" for s in servers) if networks is None else networks
    return NetPolicy(
        allowed_ports=frozenset({80, 443, *(s.port for s in servers)}),
        allow_networks=tuple(ipaddress.ip_network(n) for n in admitted),
    )


def read_all(response: Response, size: int = 8192) -> bytes:
    parts: list[bytes] = []
    for _ in range(100_000):  # bounded: a test body is far smaller
        data = response.read(size)
        if not data:
            return b"".join(parts)
        parts.append(data)
    raise AssertionError("the body never ended")


def fetch_error(fetcher: SafeFetcher, url: str, **kwargs: float) -> FetchError:
    """The FetchError of fetching `url`, whether on opening or while reading the body."""
    with pytest.raises(FetchError) as caught, fetcher.get(url, **kwargs) as response:
        read_all(response)
    return caught.value


def twin_servers(first: str, second: str) -> tuple[LoopbackServer, LoopbackServer]:
    """Unstarted servers on two addresses and one port (free on both)."""
    for _ in range(10):
        one = LoopbackServer(first)
        try:
            return one, LoopbackServer(second, one.port)
        except OSError:  # that port is taken on the second address; try another
            one.stop()
    raise AssertionError("no port free on both addresses")
