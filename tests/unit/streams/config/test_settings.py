from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.app.settings import Settings


def test_env_vars_fill_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("PIXELFLEET_S3_ENDPOINT", "https://s3.example.test:9443")
    monkeypatch.setenv("PIXELFLEET_S3_SECRET_KEY", "hunter2")
    monkeypatch.setenv("PIXELFLEET_DEV_KAFKA_HEAP_MB", "384")
    monkeypatch.setenv("PIXELFLEET_TOPIC_PREFIX", "acme")
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:19092"
    assert s.s3.host == "s3.example.test:9443"
    assert s.s3.secure is True
    assert s.s3.secret_key.get_secret_value() == "hunter2"
    assert s.dev.kafka_heap_mb == 384
    assert s.topic_prefix == "acme"


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_S3_SECRET_KEY", "hunter2")
    monkeypatch.setenv("PIXELFLEET_KAFKA_SASL_PASSWORD", "swordfish")
    s = Settings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert "swordfish" not in repr(s)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError):
        s.topic_prefix = "other"  # type: ignore[misc]


def test_librdkafka_keys_with_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PIXELFLEET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PIXELFLEET_KAFKA_SASL_USERNAME", "fleet")
    monkeypatch.setenv("PIXELFLEET_KAFKA_SASL_PASSWORD", "swordfish")
    conf = Settings().kafka.librdkafka()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "fleet"
    assert conf["sasl.password"] == "swordfish"


def test_plain_librdkafka_keys_carry_no_sasl() -> None:
    conf = Settings().kafka.librdkafka()
    assert conf["security.protocol"] == "plaintext"
    assert not any(key.startswith("sasl.") for key in conf)


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_file_below_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"fleet{suffix}"
    if suffix == ".toml":
        path.write_text(
            'topic_prefix = "fromfile"\n[kafka]\nbootstrap = "file:1"\nclient_id = "f"\n'
        )
    else:
        path.write_text("topic_prefix: fromfile\nkafka:\n  bootstrap: file:1\n  client_id: f\n")
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(path))
    monkeypatch.setenv("PIXELFLEET_KAFKA_BOOTSTRAP", "env:2")
    s = Settings()
    assert s.topic_prefix == "fromfile"
    assert s.kafka.client_id == "f"
    assert s.kafka.bootstrap == "env:2"  # the environment wins over the file


def test_missing_config_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        Settings()


def test_unknown_key_in_a_group_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[kafka]\nbootstrapp = "typo:1"\n')
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(path))
    with pytest.raises(ValueError, match="bootstrapp"):
        Settings()


@pytest.mark.parametrize("scheme", ["https", "HTTPS", "Https"])
def test_an_https_endpoint_is_secure_whatever_the_case_of_its_scheme(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setenv("PIXELFLEET_S3_ENDPOINT", f"{scheme}://s3.example.test:9443")
    s = Settings()
    assert s.s3.secure is True and s.s3.host == "s3.example.test:9443"
    monkeypatch.setenv("PIXELFLEET_S3_ENDPOINT", "HTTP://s3.example.test:9000")
    assert Settings().s3.secure is False


def test_a_catalog_url_no_client_could_use_is_refused_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    monkeypatch.setenv("PIXELFLEET_CATALOG_URL", "http://bob:se/cret@catalog.test:6066/")
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors(include_input=False)
    assert error["loc"] == ("catalog", "url")
    assert "PIXELFLEET_CATALOG_URL http://***@catalog.test:6066/" in error["msg"]
    assert "%2F" in error["msg"] and "cret" not in error["msg"] and "bob" not in error["msg"]
    monkeypatch.setenv("PIXELFLEET_CATALOG_URL", "http://bob:se%2Fcret@catalog.test:6066/")
    assert Settings().catalog.url == "http://bob:se%2Fcret@catalog.test:6066/"
