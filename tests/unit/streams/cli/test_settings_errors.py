"""Settings that cannot be read end in one `error: <where>: <what>` line and exit code 1,
never a traceback, and never the text of the offending line (it may hold a secret)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from streams.cli import main
from streams.cli.notify import notify

SECRET = "hunter2-0123456789abcdef"


@click.command()
def read_settings() -> None:
    """What every command does first: read the whole settings model, then build clients."""
    from streams.app.settings import Settings
    from streams.io import clients

    clients.s3(Settings().s3)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The developer's own shell (a dev stack's exports, a debug switch) must not leak in.
    for name in ("PIXELFLEET_CONFIG", "PIXELFLEET_DEBUG", "PIXELFLEET_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(main.COMMANDS, "read-settings", f"{__name__}:read_settings")
    yield


def _run(*args: str) -> Result:
    return CliRunner().invoke(main.cli, list(args) or ["read-settings"])


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_CONFIG", "nope.toml")
    line = _one_error_line(_run())
    assert line == "error: nope.toml: no such file (named by PIXELFLEET_CONFIG)"


def test_a_real_command_says_it_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # `status` reads the settings before it talks to Kafka: nothing here needs a broker.
    monkeypatch.setenv("PIXELFLEET_CONFIG", "nope.toml")
    assert _one_error_line(_run("status", "some-id")).startswith("error: nope.toml: no such file")


def test_a_yaml_syntax_error_gives_the_place_but_not_the_secret_on_that_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text(f's3:\n  endpoint: http://s3.test:9000\n  secret_key: "{SECRET}\n')
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    line = _one_error_line(_run())
    assert line.startswith(f"error: {config}: line ")
    assert "line 3, column 15" in line  # where the unclosed quote began
    assert SECRET not in line and SECRET[:7] not in line


def test_a_yaml_indentation_error_gives_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fleet.yml"
    config.write_text(f"s3:\n  secret_key: {SECRET}\n bad: [1\n")
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    line = _one_error_line(_run())
    assert f"error: {config}: line 3, column 2:" in line
    assert SECRET not in line


def test_a_toml_syntax_error_gives_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(f'[s3]\nsecret_key = "{SECRET}"\nendpoint = \n')
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    line = _one_error_line(_run())
    assert line.startswith(f"error: {config}: line 3, column ")
    assert SECRET not in line


def test_a_config_file_that_is_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_bytes("s3:\n  region: caf\xe9\n".encode("latin-1"))  # é at offset 17
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    assert (
        _one_error_line(_run()) == f"error: {config}: not UTF-8 at byte 17; save the file as UTF-8"
    )


def test_a_config_file_that_is_not_a_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text("- a\n- b\n")
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    line = _one_error_line(_run())
    assert line == f"error: {config}: the top level of a config file must be a mapping"


def test_an_env_var_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_STAGES_COMPRESS", "{profile: ladder}")
    line = _one_error_line(_run())
    assert line.startswith("error: PIXELFLEET_STAGES_COMPRESS: not valid JSON (")
    assert "ladder" not in line


def test_an_s3_endpoint_with_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_S3_ENDPOINT", "http://bob:pw@h:9/minio")
    line = _one_error_line(_run())
    assert line.startswith("error: s3.endpoint http://***@h:9/minio: path in endpoint")
    assert "pw" not in line


def test_a_value_that_does_not_validate_keeps_its_per_field_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIXELFLEET_RUNNER_BATCH_MAX", "0")
    result = _run()
    assert result.exit_code == 1
    assert "error: the settings are not valid:" in result.output
    assert "runner.batch_max" in result.output and "Traceback" not in result.output


def test_a_catalog_url_with_a_raw_slash_in_its_password_is_named_and_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIXELFLEET_CATALOG_URL", f"http://bob:{SECRET[:7]}/{SECRET[8:]}@h:6066/")
    result = _run("status", "some-id")  # before it asks the catalog or Kafka anything
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "catalog.url: Value error, PIXELFLEET_CATALOG_URL http://***@h:6066/: it cannot" in (
        result.output
    )
    assert SECRET[:7] not in result.output and SECRET[8:] not in result.output


def test_notify_run_on_its_own_says_it_in_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "notify.yaml"
    config.write_text(f"notify:\n  subscriptions:\n    - {{secret: '{SECRET}\n")
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(config))
    monkeypatch.setattr("streams.observe.logs.configure", lambda: None)
    result = CliRunner().invoke(notify, [])
    line = _one_error_line(result)
    assert line.startswith(f"error: {config}: line ") and SECRET not in line


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_CONFIG", "nope.toml")
    monkeypatch.setenv("PIXELFLEET_DEBUG", "1")
    result = _run()
    assert isinstance(result.exception, FileNotFoundError)
    assert "error: nope.toml" not in result.output
