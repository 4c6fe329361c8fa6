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


def _answer(server: LoopbackServer, path: str, status: int, body: bytes, kind: str) -> None:
    server.route(path, lambda h: h.send(status, body, content_type=kind))


@pytest.mark.parametrize(
    "body",
    [b"<html>log in</html>", b'{"duplicate_of": null, "near_duplicates": [{"id": "x"}]}', b"[]"],
)
def test_a_200_that_is_not_the_catalog_s_answer_is_unavailable(body: bytes) -> None:
    with LoopbackServer() as server:
        _answer(server, "/v1/lookup", 200, body, "application/json")
        client = CatalogClient(server.url("/"), "k")
        try:
            with pytest.raises(CatalogUnavailableError, match="not the catalog's answer"):
                client.lookup(sha256=SHA)
        finally:
            client.close()


def test_only_the_catalog_s_own_not_found_means_no_record() -> None:
    with LoopbackServer() as server:
        _answer(server, "/v1/images/gone", 404, b'{"error": "not_found"}', "application/json")
        _answer(server, "/v1/images/proxied", 404, b"<html>nope</html>", "text/html")
        _answer(server, "/v1/images/page", 200, b"<html>hello</html>", "text/html")
        _answer(server, "/v1/images/a%2Fb", 200, b'{"image_id": "a/b"}', "application/json")
        client = CatalogClient(server.url("/"), "k")
        try:
            assert client.record("gone") is None
            with pytest.raises(CatalogUnavailableError, match="HTTP 404"):
                client.record("proxied")
            with pytest.raises(CatalogUnavailableError, match="not a record"):
                client.record("page")
            # Quoted whole: a "/" or ".." typed as an id stays inside /v1/images/.
            assert client.record("a/b") == b'{"image_id": "a/b"}'
        finally:
            client.close()
        assert server.paths()[-1] == "/v1/images/a%2Fb"


@pytest.mark.parametrize(
    ("url", "key", "said"),
    [
        ("http://bob:se/cret@127.0.0.1:1/", "k", "%2F"),
        ("http://bob:hunter2@127.0.0.1:1/", "k\u00e9y", "PIXELFLEET_CATALOG_API_KEY"),
        ("127.0.0.1:6066", "k", "scheme"),
    ],
)
def test_a_client_it_cannot_build_is_unavailable_and_quotes_no_secret(
    url: str, key: str, said: str
) -> None:
    with pytest.raises(CatalogUnavailableError) as caught:
        CatalogClient(url, key)
    message = str(caught.value)
    assert said in message
    for secret in ("cret", "hunter2", "bob", "\u00e9"):
        assert secret not in message, message
