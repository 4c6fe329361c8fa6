"""Port options are checked by click, and a stage named twice runs once (two workers of
one stage in one process would share a transactional id and fence each other)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from streams.cli import main
from streams.runner.stage import StageSpec


def _never(*_args: Any) -> Any:
    raise AssertionError("the stage never runs in these tests")


CUSTOM = StageSpec(name="custom", fn=_never)
VALIDATE_LOOKALIKE = StageSpec(name="validate", fn=_never)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["worker", "--metrics-port", "70000"], "70000 is not in the range 0<=x<=65535"),
        (["worker", "--metrics-port", "-1"], "-1 is not in the range 0<=x<=65535"),
        (["notify", "--metrics-port", "65536"], "65536 is not in the range 0<=x<=65535"),
        (["catalog", "--port", "70000"], "70000 is not in the range 1<=x<=65535"),
        (["catalog", "--port", "0"], "0 is not in the range 1<=x<=65535"),
    ],
)
def test_ports_out_of_range_are_usage_errors(args: list[str], shown: str) -> None:
    result = CliRunner().invoke(main.cli, args)
    assert result.exit_code == 2
    assert shown in result.output and "Traceback" not in result.output


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The stage names `run_workers` is given, with the registry, the storage check, the
    logging set-up and the workers themselves replaced."""
    from streams.app import registry
    from streams.cli import worker

    runs: list[list[str]] = []

    def run_workers(_settings: object, specs: list[StageSpec]) -> int:
        runs.append([spec.name for spec in specs])
        return 0

    monkeypatch.setattr(registry, "available", lambda _s: ["fetch", "validate", "compress"])
    monkeypatch.setattr(registry, "builtin", lambda name, _s: StageSpec(name=name, fn=_never))
    monkeypatch.setattr(worker, "_check_storage", lambda _s: None)
    monkeypatch.setattr(worker, "_check_topics", lambda _s, _names: None)
    monkeypatch.setattr(worker, "run_workers", run_workers)
    monkeypatch.setattr("streams.observe.logs.configure", lambda: None)
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    # The command installs its own handlers; pytest's must come back.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield runs
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _worker(*args: str) -> Result:
    return CliRunner().invoke(main.cli, ["worker", *args])


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--stage", "validate", "--stage", "validate"], ["validate"]),
        (["--stage", "compress", "--stage", "all"], ["compress", "fetch", "validate"]),
        (["--stage", "all", "--stage", "validate"], ["fetch", "validate", "compress"]),
        (["--stage", "all", "--stage", "all"], ["fetch", "validate", "compress"]),
    ],
)
def test_each_stage_runs_once_in_the_order_first_named(
    started: list[list[str]], args: list[str], names: list[str]
) -> None:
    result = _worker(*args)
    assert result.exit_code == 0, result.output
    assert started == [names]


def test_a_repeated_spec_runs_once(started: list[list[str]]) -> None:
    ref = f"{__name__}:CUSTOM"
    result = _worker("--stage", "validate", "--spec", ref, "--spec", ref)
    assert result.exit_code == 0, result.output
    assert started == [["validate", "custom"]]


def test_two_stages_of_one_name_are_refused(started: list[list[str]]) -> None:
    result = _worker("--stage", "validate", "--spec", f"{__name__}:VALIDATE_LOOKALIKE")
    assert result.exit_code == 1
    assert "error: stage validate is named twice" in result.output
    assert started == []


def test_the_help_says_so() -> None:
    result = CliRunner().invoke(main.cli, ["worker", "--help"])
    assert "runs" in result.output and "once" in result.output


def test_a_taken_catalog_port_is_one_line_before_anything_starts() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main.cli, ["catalog", "--port", str(port)], env={"PIXELFLEET_CATALOG_HOST": "127.0.0.1"}
        )
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use; give another with --port or "
        "PIXELFLEET_CATALOG_PORT (and stop the catalog already running, if it is one)"
    )
