"""`pixelfleet worker`: run stage workers in the foreground.

Built-in stages (`--stage`) need the whole settings model and the stage registry, imported
only then; custom stages (`--spec`) run on the fleet settings alone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

import click

from streams.config.settings import FleetSettings
from streams.observe import logs
from streams.runner.stage import StageSetupError, StageSpec, load_spec
from streams.runner.supervisor import run_workers


def _fail(message: str) -> NoReturn:
    # One plain line: rich would wrap it at the terminal's width.
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _once(names: tuple[str, ...], every: list[str]) -> list[str]:
    """The stages named, each once, in the order first named; `all` stands for `every`.

    Two workers of one stage in one process would share a transactional id, and the second
    to start fences the first: the process would crash instead of doing twice the work."""
    chosen: dict[str, None] = {}
    for name in names:
        chosen.update(dict.fromkeys(every if name == "all" else [name]))
    return list(chosen)


@click.command()
@click.option(
    "--stage",
    "stages",
    multiple=True,
    help="A stage to run (repeatable), or `all`; a stage named twice (or also covered by "
    "`all`) runs once.",
)
@click.option(
    "--spec",
    "specs",
    multiple=True,
    help="A custom stage as module:attribute (repeatable; a repeated one runs once).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics /healthz /readyz (0: none; default: runner.metrics_port, 9400, "
    "or a free port when that one is taken).",
)
def worker(stages: tuple[str, ...], specs: tuple[str, ...], metrics_port: int | None) -> None:
    """Run stage workers in the foreground until SIGTERM/SIGINT."""
    # Until the supervisor takes the signals over, a stop request (the demo stopping its
    # workers early, an orchestrator scaling down) finds nothing consumed yet: leave
    # cleanly at once instead of dying of the signal while torch is still importing.
    signal.signal(signal.SIGTERM, _stop_before_start)
    signal.signal(signal.SIGINT, _stop_before_start)
    logs.configure()
    settings: FleetSettings
    builtin: list[str] = []
    try:
        chosen: list[StageSpec] = []
        if stages:
            from streams.app import registry
            from streams.app.settings import Settings

            full = Settings()
            # `all` is expanded only when named: it asks the registry what is installed.
            every = registry.available(full) if "all" in stages else []
            chosen.extend(registry.builtin(s, full) for s in _once(stages, every))
            builtin = [spec.name for spec in chosen]
            settings = full
        else:
            settings = FleetSettings()
        chosen.extend(load_spec(ref) for ref in dict.fromkeys(specs))
    except (LookupError, ImportError) as exc:
        _fail(str(exc))
    if not chosen:
        _fail("name a stage with --stage NAME (or --spec module:attribute)")
    names = [spec.name for spec in chosen]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        # A custom spec may reuse a built-in stage's name (or two refs name one object).
        _fail(f"stage {', '.join(twice)} is named twice; each stage runs once per process")
    _check_storage(settings)
    if builtin:
        _check_topics(settings, builtin)
    if metrics_port is not None:
        runner = settings.runner.model_copy(update={"metrics_port": metrics_port})
        settings = settings.model_copy(update={"runner": runner})
    try:
        code = run_workers(settings, chosen)
    except StageSetupError as exc:
        _fail(str(exc))
    sys.exit(code)


def _check_storage(settings: FleetSettings) -> None:
    """Buckets and the work bucket's expiry rule, before anything is consumed: a fleet that
    `pixelfleet init` never prepared is a start-up error, not a worker retrying forever."""
    # Imported here: a custom --spec worker loads no more than it needs until it starts.
    from streams.app.preflight import check_storage
    from streams.io import clients

    check = check_storage(settings, clients.s3(settings.s3))
    for warning in check.warnings:
        logging.getLogger("pixelfleet.worker").warning("start-up check: %s", warning)
    if check.problems:
        _fail(check.error())


def _check_topics(settings: FleetSettings, builtin: list[str]) -> None:
    """The built-in stages' inboxes, the metadata and dead-letter topics, before anything is
    consumed: under a mistyped PIXELFLEET_TOPIC_PREFIX a worker subscribed to a topic that
    does not exist and waited for ever, with a single warning. (A --spec stage's topics
    may be made by whoever wrote it, after the worker starts.)"""
    from streams.app.preflight import uninitialized
    from streams.config.topics import Topics

    topics = Topics(settings.topic_prefix)
    missing = uninitialized(
        settings, [*(topics.inbox(name) for name in builtin), topics.metadata, topics.dlq]
    )
    if missing:
        _fail(missing)


def _stop_before_start(signum: int, _frame: FrameType | None) -> NoReturn:
    click.echo(f"stopped by {signal.Signals(signum).name} before the stages started", err=True)
    sys.stderr.flush()
    # os._exit, not sys.exit: nothing is consumed or committed yet, so there is nothing to
    # finish, and a SystemExit raised in the middle of an import or of a client's set-up would
    # leave the interpreter's shutdown waiting on whatever that set-up had begun (threads,
    # half-built Kafka handles, torch's exit hooks).
    os._exit(0 if signum == signal.SIGTERM else 128 + signum)
