"""The catalog client against a real local HTTP server (127.0.0.1): a catalog that answers
"not this key" is told apart from one that does not answer."""

from __future__ import annotations

import pytest

from streams.io.catalog_client import CatalogClient, CatalogUnavailableError
from tests.support.http_servers import LoopbackServer

SHA = "0" * 64


@pytest.mark.parametrize(
    ("key", "status", "said"), [("wrong", 403, "refused the key"), (None, 401, "refused no key")]
)
def test_a_refused_key_names_the_setting_to_mend(key: str | None, status: int, said: str) -> None:
    with LoopbackServer() as server:
        server.status("/v1/lookup", status)
        client = CatalogClient(server.url("/"), key)
        try:
            with pytest.raises(CatalogUnavailableError) as caught:
                client.lookup(sha256=SHA, fingerprint="f")
        finally:
            client.close()
        assert [seen.path.split("?")[0] for seen in server.requests] == ["/v1/lookup"]
    message = str(caught.value)
    assert f"{said} (HTTP {status})" in message, message
    assert "PIXELFLEET_CATALOG_API_KEY" in message
