"""`pixelfleet replay`: re-run finished images from a stage onward.

The work is in streams/ops/replay*.py; this module parses options, explains the images named
that it leaves out, and prints progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import click

from streams.cli.ops import fail, require_fleet, since_time
from streams.config.topics import Topics
from streams.ops.selection import FINISHED

if TYPE_CHECKING:
    from schemas.events import ImageRecord

_REPLAY_STAGES = ("validate", "categorize", "enhance", "restore", "compress")


@click.command()
@click.option(
    "--stage",
    type=click.Choice(_REPLAY_STAGES),
    default="validate",
    show_default=True,
    help="Run this stage and every later one again. Where its input has expired, the image "
    "starts from its original (said per image).",
)
@click.option(
    "--image-id",
    "image_ids",
    multiple=True,
    help="Only this image (repeatable); combines with the other filters.",
)
@click.option(
    "--where",
    default=None,
    help="Only records matching every pair: category=rings,status=done (a field twice: "
    "either value). Fields: category, status, fingerprint, duplicate (yes/no).",
)
@click.option(
    "--since", default=None, help="Only images updated at or after this (2h, 3d, a time)."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Read the settings from this file instead of PIXELFLEET_CONFIG (the workers' new "
    "config, with --outdated).",
)
@click.option(
    "--outdated",
    is_flag=True,
    help="Only images made under other stage settings than the config's (by fingerprint).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what would be replayed, from where; send nothing."
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many images.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="At most this many images a second, so live traffic keeps its pace (default: no limit).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the new records, then remove the variants they replaced.",
)
@click.option(
    "--timeout", type=float, default=3600, show_default=True, help="Seconds --wait waits."
)
def replay(
    stage: str,
    image_ids: tuple[str, ...],
    where: str | None,
    since: str | None,
    config_file: str | None,
    outdated: bool,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Re-run finished images from a stage onward with the settings the workers run now.

    Each chosen image's input for the stage is sent to that stage's inbox again (or, where
    it has expired, its original to validate). Replaying twice is harmless: keys are
    deterministic. With --wait, once an image's new record is committed the variants its
    old record listed and the new one does not are removed.
    """
    import os

    from streams.config.settings import CONFIG_ENV

    if config_file:
        os.environ[CONFIG_ENV] = config_file
    from streams.app.settings import Settings
    from streams.io import clients
    from streams.io.topic_reader import latest_records
    from streams.ops.selection import parse_where, select_records

    try:
        wanted = parse_where(where) if where else {}
    except ValueError as exc:
        fail(str(exc))
    settings = Settings()
    require_fleet(settings, [Topics(settings.topic_prefix).metadata])
    records = latest_records(settings, strict=True)
    chosen = select_records(records, where=wanted, since=since_time(since), finished_only=True)
    if image_ids:
        chosen = [r for r in chosen if r.image_id in set(image_ids)]
    if outdated:
        from schemas.events import Request
        from streams.stages.fingerprint import fingerprint

        current = fingerprint(settings.stages, Request())
        chosen = [r for r in chosen if r.fingerprint != current]
    chosen = chosen[:limit] if limit else chosen
    unknown = _explain_named(image_ids, records, {r.image_id for r in chosen})
    from streams.ops.replay_run import run_replay

    code = run_replay(
        settings,
        clients.s3(settings.s3),
        chosen,
        stage,
        dry_run=dry_run,
        rate=rate,
        wait=wait,
        timeout=timeout,
        echo=click.echo,
        progress=_progress,
    )
    if unknown and not code:
        code = 2  # a named image that does not exist is most likely a mistyped id
    if code:
        sys.exit(code)


def _explain_named(
    image_ids: tuple[str, ...], records: Mapping[str, ImageRecord], chosen: set[str]
) -> int:
    """Says why each image named with --image-id is not replayed; how many do not exist."""
    unknown = 0
    for image_id in dict.fromkeys(image_ids):
        if image_id in chosen:
            continue
        record = records.get(image_id)
        if record is None:
            unknown += 1
            click.echo(f"{image_id}: no such image (no record on the metadata topic)")
        elif record.status not in FINISHED:
            click.echo(f"{image_id}: still {record.status}; replay it once it has finished")
        else:
            click.echo(f"{image_id}: left out by the other options")
    return unknown


def _progress(total: int) -> Callable[[int], None]:
    """A line at every tenth of the way, with the rate and the time left."""
    import time

    from streams.ops.pacing import eta_seconds

    started = time.monotonic()
    step = max(1, total // 10)

    def report(done: int) -> None:
        if done % step and done != total:
            return
        elapsed = time.monotonic() - started
        eta = eta_seconds(done, total, elapsed)
        left = f", ETA {eta:.0f} s" if eta is not None and done < total else ""
        click.echo(f"replay: {done}/{total} sent{left}", err=True)

    return report
