"""Fixtures of the SafeFetcher tests: a loopback server, fetchers closed after the test,
a real photo and the test CA's bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.io.netguard import NetPolicy
from streams.io.safe_http import HttpLimits, SafeFetcher
from tests.support.fetch_kit import FAST, FakeDns, MakeFetcher
from tests.support.http_servers import LoopbackServer, ca_bundle
from tests.support.photos import encode, photo


@pytest.fixture(scope="module")
def image() -> bytes:
    return encode(photo("coffee"), "JPEG", quality=90)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return ca_bundle(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


@pytest.fixture
def make_fetcher() -> Iterator[MakeFetcher]:
    made: list[SafeFetcher] = []

    def make(
        net: NetPolicy, limits: HttpLimits = FAST, resolver: FakeDns | None = None
    ) -> SafeFetcher:
        fetcher = SafeFetcher(net, limits, resolver or FakeDns())
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()
