"""The host a URL queues under at the politeness gate is netguard's reading of it, so no
spelling of one host gets a turn of its own."""

from __future__ import annotations

import pytest

from streams.io.netguard import NetPolicy
from streams.stages.fetch.stage import gate_host

POLICY = NetPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.jpg",
        "https://EXAMPLE.com./a.jpg",
        "https://Example.COM:443/b.png",
        "https://\u24d4\u24e7\u24d0\u24dc\u24df\u24db\u24d4.com/c.jpg",  # circled letters
    ],
)
def test_spellings_of_one_host_share_its_turns(url: str) -> None:
    assert gate_host(url, POLICY) == "example.com"


def test_an_idn_queues_under_its_ascii_form() -> None:
    assert gate_host("https://b\u00fccher.de/x.jpg", POLICY) == "xn--bcher-kva.de"
    assert gate_host("https://xn--bcher-kva.de/y.jpg", POLICY) == "xn--bcher-kva.de"


@pytest.mark.parametrize(
    "url", ["http://1572395042/i.jpg", "http://0x5db8d822/i.jpg", "http://93.184.216.34/i.jpg"]
)
def test_one_address_in_any_spelling_is_one_host(url: str) -> None:
    assert gate_host(url, POLICY) == "93.184.216.34"


@pytest.mark.parametrize("url", ["http://10.0.0.1/x.jpg", "http://[evil/x.jpg", "ftp://a/b"])
def test_a_refused_url_takes_no_host_turn(url: str) -> None:
    assert gate_host(url, POLICY) == ""
