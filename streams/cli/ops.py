"""`pixelfleet dlq list|redrive`, `delete` and `cleanup`: day-two operations (`replay` is
in streams/cli/replay.py).

The work is in streams/ops/; this module parses options and prints. Plain lines (one per
thing done) so scripts and tests can grep them; docs/operations.md shows each output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import click

from streams.config.settings import FleetSettings
from streams.config.topics import STAGES, Topics
from streams.ops.selection import LetterAt, counts_by_reason, parse_since

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def require_fleet(settings: FleetSettings, topics: list[str] | None = None) -> None:
    """Stop with the fix when the settings name a fleet this cluster does not have (or
    not the `topics` a command reads)."""
    from streams.app.preflight import uninitialized

    why = uninitialized(settings, topics)
    if why is not None:
        fail(why)


def since_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        fail(str(exc))


_SINCE_HELP = "Only those at or after this: a duration back from now (2h, 3d) or a time."
LIMIT_OPTION = click.option(
    "--limit", type=int, default=100, show_default=True, help="Entries shown (0: all)."
)
# A mistyped stage would choose nothing and look like an empty DLQ: click refuses it.
_STAGE_OPTION = click.option(
    "--stage", type=click.Choice(STAGES), default=None, help="Only dead letters of this stage."
)


def _unknown_reason(letters: list[LetterAt], reason: str | None) -> str | None:
    """What to say when no letter has the reason class asked for (most likely mistyped)."""
    if reason is None or any(item.letter.reason_class == reason for item in letters):
        return None
    present = sorted({item.letter.reason_class for item in letters})
    return (
        f"no dead letter has the reason class {reason!r}; those on the DLQ: "
        f"{', '.join(present) or 'none'}"
    )


@click.group()
def dlq() -> None:
    """Dead letters: list them by reason, and re-send chosen ones once their cause is fixed."""


@dlq.command("list")
@_STAGE_OPTION
@click.option("--reason", default=None, help="Only this reason class (e.g. source_missing).")
@click.option("--since", default=None, help=_SINCE_HELP)
@LIMIT_OPTION
def dlq_list(stage: str | None, reason: str | None, since: str | None, limit: int) -> None:
    """Counts by stage and reason class, then the dead letters, oldest first."""
    from streams.app.settings import Settings
    from streams.ops import dlq as ops_dlq
    from streams.ops.selection import select_letters

    settings = Settings()
    require_fleet(settings, [Topics(settings.topic_prefix).dlq])
    letters, unreadable = ops_dlq.read_letters(settings)
    unknown = _unknown_reason(letters, reason)
    if unknown:
        click.echo(f"note: {unknown}", err=True)
    chosen = select_letters(letters, stage=stage, reason=reason, since=since_time(since))
    marks = ops_dlq.read_marks(settings)
    redriven = sum(1 for item in chosen if item.position in marks)
    click.echo(f"dead letters: {len(chosen)} ({redriven} already redriven)")
    if unreadable:
        click.echo(f"unreadable records on the DLQ: {unreadable}")
    if not chosen:
        return

    def line(item: LetterAt) -> str:
        mark = marks.get(item.position)
        return _letter_line(item, f"redriven by {mark.redrive_id}" if mark else "")

    echo_listing("stage", 11, counts_by_reason(chosen), chosen, line, limit)


def echo_listing(
    label: str,
    width: int,
    counts: Iterable[tuple[str, str, int]],
    items: Sequence[T],
    line: Callable[[T], str],
    limit: int,
) -> None:
    """A listing of dead letters: counts by `label` and reason, a blank line, then the
    first `limit` items (0: all), one line each, and how many more there are."""
    click.echo(f"{'count':>7}  {label:<{width}} reason")
    for name, reason, count in counts:
        click.echo(f"{count:>7}  {name:<{width}} {reason}")
    click.echo("")
    shown = items if limit <= 0 else items[:limit]
    for item in shown:
        click.echo(line(item))
    if len(shown) < len(items):
        click.echo(f"... {len(items) - len(shown)} more (--limit 0 shows all)")


def _letter_line(item: LetterAt, note: str) -> str:
    letter = item.letter
    reason = letter.reason if len(letter.reason) <= 80 else letter.reason[:77] + "..."
    tail = f"  [{note}]" if note else ""
    return (
        f"{letter.at}  dlq@{item.position:<9} {letter.stage:<11} {letter.reason_class:<20} "
        f"{letter.image_id}  {reason}{tail}"
    )


@dlq.command("redrive")
@_STAGE_OPTION
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
    require_fleet(settings, [Topics(settings.topic_prefix).dlq])
    letters, _unreadable = ops_dlq.read_letters(settings)
    unknown = _unknown_reason(letters, reason)
    if unknown:
        fail(f"{unknown}; nothing re-sent")
    chosen = select_letters(letters, stage=stage, reason=reason, since=since_time(since))
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
    require_fleet(settings, [Topics(settings.topic_prefix).metadata])
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
        fail(str(exc))
    settings = Settings()
    require_fleet(settings, [Topics(settings.topic_prefix).metadata])
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
