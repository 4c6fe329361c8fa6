"""A URL's user:password@ never reaches a message: the catalog's URL may carry one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.events import Request
from streams.app.known_content import already_done
from streams.app.settings import Settings
from streams.cli import main
from streams.io.catalog_client import CatalogClient, CatalogUnavailableError, redact_url
from streams.io.failures import OperationError

# Nothing listens on port 1 of the loopback: every call is refused at once.
CLOSED = "http://bob:hunter2@127.0.0.1:1/"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("http://bob:hunter2@host:1/x", "http://***@host:1/x"),
        ("https://token@host/x?a=b@c", "https://***@host/x?a=b@c"),
        (
            "at http://u:p@a.test and s3://k:s@b.test/k",
            "at http://***@a.test and s3://***@b.test/k",
        ),
        ("http://u:p@ss@host/", "http://***@host/"),  # an unescaped @ in the password
        ("http://host:1/path@v2", "http://host:1/path@v2"),  # an @ after the host is not one
        ("mail bob@host.test", "mail bob@host.test"),
        # a raw /, ? or # in the password: no port follows "user:", so it is credentials
        ("http://u:p/w@host/x", "http://***@host/x"),
        ("http://u:a?b#c@host/x", "http://***@host/x"),
        ("http://host:80/a:b@c", "http://host:80/a:b@c"),
        ("http://[::1]:80/x@y", "http://[::1]:80/x@y"),
    ],
)
def test_redact_url(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


def test_the_client_s_errors_carry_no_password() -> None:
    client = CatalogClient(CLOSED, api_key=None, timeout_s=0.5)
    try:
        with pytest.raises(CatalogUnavailableError) as caught:
            client.record("img-1")
    finally:
        client.close()
    assert "hunter2" not in str(caught.value) and "bob" not in str(caught.value)
    assert "http://***@127.0.0.1:1" in str(caught.value)


def test_status_warns_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    monkeypatch.setenv("PIXELFLEET_CATALOG_URL", CLOSED)
    monkeypatch.setenv("PIXELFLEET_CATALOG_CLIENT_TIMEOUT_S", "0.5")

    def no_kafka(*_args: object, **_kwargs: object) -> object:
        raise OperationError("stop here: no Kafka in unit tests")

    # After the catalog fails, status reads the topic: stopped before a Kafka client is made
    # (one would try to reach a broker, and wait for it when closed).
    monkeypatch.setattr("streams.io.clients.admin", no_kafka)
    monkeypatch.setattr("streams.io.clients.consumer", no_kafka)
    result = CliRunner().invoke(main.cli, ["status", "img-1"])
    assert "warning: the catalog could not be asked (http://***@127.0.0.1:1" in result.output
    assert "hunter2" not in result.output
    assert "error: stop here: no Kafka in unit tests" in result.output


def test_the_known_content_warning_carries_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    monkeypatch.setenv("PIXELFLEET_CATALOG_URL", CLOSED)
    monkeypatch.setenv("PIXELFLEET_CATALOG_CLIENT_TIMEOUT_S", "0.5")
    image = tmp_path / "a.jpg"
    image.write_bytes(b"not really a jpeg")
    with caplog.at_level(logging.WARNING):
        assert already_done(Settings(), {"id-1": image}, Request()) == {}
    assert "the catalog could not be asked" in caplog.text
    assert "hunter2" not in caplog.text
