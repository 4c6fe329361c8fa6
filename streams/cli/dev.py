"""`pixelfleet dev up|down|status|check`: the local stack."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from streams.devstack.procs import StackError
from streams.devstack.settings import LocalSettings
from streams.devstack.smoke import smoke_check
from streams.devstack.stack import DevStack


def _say(message: str) -> None:
    # Human messages go to stderr so that stdout stays `eval`-able.
    click.echo(message, err=True)


def _stack(data_dir: Path | None) -> DevStack:
    settings = LocalSettings()
    dev_settings = settings.dev
    if data_dir is not None:
        dev_settings = dev_settings.model_copy(update={"data_dir": data_dir})
    return DevStack(dev_settings, progress=_say)


_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the servers keep their data and logs (default: PIXELFLEET_DEV_DATA_DIR "
    "or ~/.local/share/pixelfleet/dev).",
)


@click.group()
def dev() -> None:
    """The local stack: a real Kafka broker (KRaft) and a real MinIO server."""


@dev.command()
@_data_dir_option
@click.option("--fresh", is_flag=True, help="Delete the stack's data first.")
def up(data_dir: Path | None, fresh: bool) -> None:
    """Install (first time only), start and wait for both servers; print their settings.

    Use it as `eval "$(pixelfleet dev up)"` to point this shell at the stack.
    """
    stack = _stack(data_dir)
    started = time.monotonic()
    try:
        info = stack.up(fresh=fresh)
    except StackError as exc:
        _say(f"error: {exc}")
        sys.exit(1)
    what = ", ".join(info.started) if info.started else "nothing (already running)"
    elapsed = time.monotonic() - started
    _say(f"stack: started {what}; up after {elapsed:.1f} s; data in {info.data_dir}")
    click.echo(info.shell_exports(), nl=False)


@dev.command()
@_data_dir_option
def down(data_dir: Path | None) -> None:
    """Stop the servers that `dev up` started (data is kept)."""
    stopped = _stack(data_dir).down()
    _say(f"stack: stopped {', '.join(stopped)}" if stopped else "stack: nothing was running")


@dev.command()
@_data_dir_option
def status(data_dir: Path | None) -> None:
    """Say what runs where, and where the logs are; exit 3 when the stack is not running.

    The lines about the servers are shell comments, so that `eval "$(pixelfleet dev
    status)"` sets the exports that follow them, as after `dev up`."""
    stack = _stack(data_dir)
    for server in stack.status():
        state = f"running (pid {server.pid})" if server.running else "stopped"
        click.echo(f"# {server.name:6} {state:22} {server.address:28} log: {server.log}")
    info = stack.info()
    if info is not None:
        click.echo(info.shell_exports(), nl=False)
    else:
        sys.exit(3)


@dev.command()
@_data_dir_option
def check(data_dir: Path | None) -> None:
    """Smoke-check a running stack: a Kafka transaction and an S3 object round trip."""
    info = _stack(data_dir).info()
    if info is None:
        _say("error: the stack is not running; start it with `pixelfleet dev up`")
        sys.exit(1)
    try:
        for line in smoke_check(info.bootstrap, info.s3_endpoint, info.access_key, info.secret_key):
            _say(f"check: {line}")
    except Exception as exc:
        _say(f"error: smoke check failed: {exc}")
        sys.exit(1)
    _say("check: the stack works")
