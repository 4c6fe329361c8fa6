"""`pixelfleet dlq list|redrive`, `delete`, `cleanup` and `replay`: day-two operations.

The work is in streams/ops/; this module parses options and prints. Plain lines (one per
thing done) so scripts and tests can grep them; docs/operations.md shows each output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

import click

from streams.ops.selection import LetterAt, counts_by_reason, parse_since


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        _fail(str(exc))


_SINCE_HELP = "Only those at or after this: a duration back from now (2h, 3d) or a time."


@click.group()
def dlq() -> None:
    """Dead letters: list them by reason, and re-send chosen ones once their cause is fixed."""


@dlq.command("list")
@click.option("--stage", default=None, help="Only dead letters of this stage.")
@click.option("--reason", default=None, help="Only this reason class (e.g. source_missing).")
@click.option("--since", default=None, help=_SINCE_HELP)
@click.option("--limit", type=int, default=100, show_default=True, help="Entries shown (0: all).")
def dlq_list(stage: str | None, reason: str | None, since: str | None, limit: int) -> None:
    """Counts by stage and reason class, then the dead letters, oldest first."""
    from streams.app.settings import Settings
    from streams.ops import dlq as ops_dlq
    from streams.ops.selection import select_letters

    settings = Settings()
    letters, unreadable = ops_dlq.read_letters(settings)
    chosen = select_letters(letters, stage=stage, reason=reason, since=_since(since))
    marks = ops_dlq.read_marks(settings)
    redriven = sum(1 for item in chosen if item.position in marks)
    click.echo(f"dead letters: {len(chosen)} ({redriven} already redriven)")
    if unreadable:
        click.echo(f"unreadable records on the DLQ: {unreadable}")
    if not chosen:
        return
    click.echo(f"{'count':>7}  {'stage':<11} reason")
    for stage_name, reason_class, count in counts_by_reason(chosen):
        click.echo(f"{count:>7}  {stage_name:<11} {reason_class}")
    click.echo("")
    shown = chosen if limit <= 0 else chosen[:limit]
    for item in shown:
        mark = marks.get(item.position)
        click.echo(_letter_line(item, f"redriven by {mark.redrive_id}" if mark else ""))
    if len(shown) < len(chosen):
        click.echo(f"... {len(chosen) - len(shown)} more (--limit 0 shows all)")


def _letter_line(item: LetterAt, note: str) -> str:
    letter = item.letter
    reason = letter.reason if len(letter.reason) <= 80 else letter.reason[:77] + "..."
    tail = f"  [{note}]" if note else ""
    return (
        f"{letter.at}  dlq@{item.position:<9} {letter.stage:<11} {letter.reason_class:<20} "
        f"{letter.image_id}  {reason}{tail}"
    )


@dlq.command("redrive")
@click.option("--stage", default=None, help="Only dead letters of this stage.")
@click.option("--reason", default=None, help="Only this reason class (e.g. source_missing).")
@click.option("--since", default=None, help=_SINCE_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would be re-sent; send nothing.")
@click.option(
    "--redrive-id",
    default=None,
    help="Resume a redrive that was interrupted: letters it already re-sent are skipped "
    "(default: a new id, printed first).",
)
@click.option(
    "--again",
    is_flag=True,
    help="Also re-send letters an earlier redrive (another id) already re-sent.",
)
def dlq_redrive(
    stage: str | None,
    reason: str | None,
    since: str | None,
    dry_run: bool,
    redrive_id: str | None,
    again: bool,
) -> None:
    """Re-send chosen dead letters to their stage's inbox, each at most once per redrive.

    Fix the cause first (a limit, a missing object, a bug); each re-sent message carries the
    redrive id, and the letters it re-sent are recorded in the same Kafka transaction, so
    running the same redrive again (--redrive-id) never sends a letter twice. An original
    that is gone from its bucket is copied back from quarantine when a copy is there.
    """
    from streams.app.settings import Settings
    from streams.ops import dlq as ops_dlq
    from streams.ops.selection import select_letters

    settings = Settings()
    letters, _unreadable = ops_dlq.read_letters(settings)
    chosen = select_letters(letters, stage=stage, reason=reason, since=_since(since))
    # Printed before anything is sent: after a Ctrl-C, --redrive-id with it finishes the
    # same redrive without sending a letter twice.
    redrive_id = redrive_id or ops_dlq.new_redrive_id()
    click.echo(f"redrive {redrive_id}{' (dry run)' if dry_run else ''}")
    report = ops_dlq.Redriver(settings).run(
        chosen, redrive_id=redrive_id, again=again, dry_run=dry_run
    )
    verb = "would re-send" if dry_run else "re-sent"
    for item, kept in report.restored:
        restored = "would restore" if dry_run else "restored"
        click.echo(
            f"{restored} {item.letter.image_id} from s3://{kept.bucket}/{kept.key} (quarantine)"
        )
    for item in report.sent:
        click.echo(f"{verb} dlq@{item.position} {item.letter.image_id} -> {item.letter.topic}")
    for item in report.already:
        click.echo(f"skipped dlq@{item.position} {item.letter.image_id}: already re-sent")
    for item, why in report.unsendable:
        click.echo(f"cannot re-send dlq@{item.position} {item.letter.image_id}: {why}")
    click.echo(
        f"redrive: {len(report.sent)} {verb}, {len(report.already)} already re-sent, "
        f"{len(report.unsendable)} cannot be re-sent"
    )
    if report.unsendable:
        sys.exit(2)


@click.command()
@click.argument("image_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@click.option("--force", is_flag=True, help="Also delete images that are still being processed.")
def delete(image_ids: tuple[str, ...], dry_run: bool, force: bool) -> None:
    """Erase images for good: every object in the incoming, work, images and quarantine
    buckets, and the record (a tombstone on the metadata topic, so the catalog and
    `status` forget it too). Images recorded as duplicates of these go with them.

    Safe to interrupt: the next delete or cleanup finishes what was begun.
    """
    from streams.app.settings import Settings
    from streams.io.topic_reader import latest_records
    from streams.ops.cleanup import choose_delete, finish_interrupted, run_erasure
    from streams.ops.erase import Eraser

    settings = Settings()
    eraser = Eraser(settings)
    try:
        records = latest_records(settings, strict=True)
        if not dry_run:
            finish_interrupted(eraser, records, click.echo)
        choice = choose_delete(eraser, image_ids, records, force=force)
        run_erasure(eraser, choice, dry_run=dry_run, objects=True, echo=click.echo)
    finally:
        eraser.close()
    if choice.refused:
        sys.exit(2)


@click.command()
@click.option(
    "--older-than",
    required=True,
    help="Images whose record was last updated longer ago than this: 30d, 12h, 2w.",
)
@click.option("--category", default=None, help="Only images of this category.")
@click.option(
    "--status",
    type=click.Choice(["done", "rejected", "failed"]),
    default=None,
    help="Only images with this status (default: any finished image).",
)
@click.option("--dry-run", is_flag=True, help="Print what would go and the bytes; delete nothing.")
@click.option("--objects", "list_objects", is_flag=True, help="Also print every object.")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Images per batch: one transaction for their tombstones, then their objects.",
)
def cleanup(
    older_than: str,
    category: str | None,
    status: str | None,
    dry_run: bool,
    list_objects: bool,
    batch: int,
) -> None:
    """Erase finished images older than a threshold, as `delete` does, in batches.

    Prints each image as it goes and the bytes freed. A crash mid-run loses nothing and
    deletes nothing twice: the next run first finishes the interrupted batch.
    """
    from streams.app.settings import Settings
    from streams.io.topic_reader import latest_records
    from streams.ops.cleanup import choose_cleanup, finish_interrupted, run_erasure
    from streams.ops.erase import Eraser
    from streams.ops.selection import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        _fail(str(exc))
    settings = Settings()
    eraser = Eraser(settings, batch_images=batch)
    try:
        records = latest_records(settings, strict=True)
        if not dry_run:
            finish_interrupted(eraser, records, click.echo)
        choice = choose_cleanup(
            eraser,
            records,
            now=datetime.now(UTC),
            older_than=age,
            category=category,
            status=status,
        )
        run_erasure(eraser, choice, dry_run=dry_run, objects=list_objects, echo=click.echo)
    finally:
        eraser.close()


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
        _fail(str(exc))
    settings = Settings()
    records = latest_records(settings, strict=True)
    chosen = select_records(records, where=wanted, since=_since(since), finished_only=True)
    if image_ids:
        chosen = [r for r in chosen if r.image_id in set(image_ids)]
    if outdated:
        from schemas.events import Request
        from streams.stages.fingerprint import fingerprint

        current = fingerprint(settings.stages, Request())
        chosen = [r for r in chosen if r.fingerprint != current]
    chosen = chosen[:limit] if limit else chosen
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
    if code:
        sys.exit(code)


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
