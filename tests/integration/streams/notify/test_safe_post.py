"""SafeFetcher.post, the webhook half of the fleet's one guarded HTTP client, against real
receivers on 127.0.0.1: the same DNS pinning and address vetting as the fetch stage's
downloads, and no redirect followed. Names resolve through a fake resolver, so nothing
here asks a real DNS server or leaves the loopback range."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator

import pytest

from processors import webhooks
from streams.io.netguard import NetPolicy
from streams.io.safe_http import FetchError, HttpLimits, SafeFetcher
from tests.integration.streams.notify.receivers import Receiver, always, ok
from tests.support.fetch_kit import FakeDns

SECRET = b"post-secret"
LIMITS = HttpLimits(connect_timeout_s=1.0, read_timeout_s=2.0, total_timeout_s=3.0)


def _policy(receiver: Receiver, networks: tuple[str, ...] = ("127.0.0.1/32",)) -> NetPolicy:
    return NetPolicy(
        allowed_ports=frozenset({receiver.port}),
        allow_networks=tuple(ipaddress.ip_network(n) for n in networks),
    )


@pytest.fixture
def fetchers() -> Iterator[list[SafeFetcher]]:
    made: list[SafeFetcher] = []
    yield made
    for fetcher in made:
        fetcher.close()


def _signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "X-Pixelfleet-Event-Id": "evt_test",
        "X-Pixelfleet-Timestamp": str(stamp),
        "X-Pixelfleet-Signature": webhooks.sign(SECRET, stamp, body),
    }


def test_a_name_is_resolved_once_vetted_and_pinned_with_its_host_header(
    fetchers: list[SafeFetcher],
) -> None:
    with Receiver(SECRET, ok) as receiver:
        dns = FakeDns({"hooks.test": [["127.0.0.1"]]})
        fetcher = SafeFetcher(_policy(receiver), LIMITS, dns)
        fetchers.append(fetcher)
        body = json.dumps({"id": "evt_test"}).encode()
        url = f"http://hooks.test:{receiver.port}/in"
        result = fetcher.post(url, body, _signed(body))
        assert (result.status, result.address) == (204, "127.0.0.1")
        (got,) = receiver.snapshot()
        assert got.signature_ok and got.host == f"hooks.test:{receiver.port}"
        assert dns.calls == [("hooks.test", receiver.port)]


def test_one_internal_address_among_the_answers_refuses_the_name_unsent(
    fetchers: list[SafeFetcher],
) -> None:
    with Receiver(SECRET, ok) as receiver:
        # Resolves to the admitted receiver and to a private address: refused whole.
        dns = FakeDns({"rebind.test": [["127.0.0.1", "10.0.0.7"]]})
        fetcher = SafeFetcher(_policy(receiver), LIMITS, dns)
        fetchers.append(fetcher)
        with pytest.raises(FetchError) as info:
            fetcher.post(f"http://rebind.test:{receiver.port}/in", b"{}", _signed(b"{}"))
        assert info.value.kind == "refused" and "10.0.0.7 is private" in str(info.value)
        assert receiver.snapshot() == []


def test_loopback_is_refused_unless_the_policy_admits_it(fetchers: list[SafeFetcher]) -> None:
    with Receiver(SECRET, ok) as receiver:
        fetcher = SafeFetcher(_policy(receiver, networks=()), LIMITS, FakeDns())
        fetchers.append(fetcher)
        with pytest.raises(FetchError) as info:
            fetcher.post(receiver.url, b"{}", _signed(b"{}"))
        assert info.value.kind == "refused" and "loopback" in str(info.value)
        assert receiver.snapshot() == []


def test_a_redirect_is_returned_not_followed(fetchers: list[SafeFetcher]) -> None:
    with Receiver(SECRET, always(307)) as receiver:
        fetcher = SafeFetcher(_policy(receiver), LIMITS, FakeDns())
        fetchers.append(fetcher)
        result = fetcher.post(receiver.url, b"{}", _signed(b"{}"))
        assert result.status == 307
        assert len(receiver.snapshot()) == 1
