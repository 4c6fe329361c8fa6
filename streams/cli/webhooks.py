"""`pixelfleet webhooks list|redrive`: the events the notify worker gave up on, and sending
them again once their receiver is fixed. The work is in streams/ops/webhook_redrive.py."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

import click

from streams.cli.ops import LIMIT_OPTION, echo_listing, fail, require_fleet, since_time
from streams.config.topics import Topics

if TYPE_CHECKING:
    from streams.ops.webhook_redrive import WebhookLetterAt

_SINCE_HELP = "Only those given up at or after this: a duration back (2h, 3d) or a time."


@click.group()
def webhooks() -> None:
    """Webhook dead letters: list them by endpoint and reason; deliver chosen ones again."""


@webhooks.command("list")
@click.option("--endpoint", default=None, help="Only this subscription's letters (its name).")
@click.option("--reason", default=None, help="Only this reason (e.g. retries_exhausted).")
@click.option("--since", default=None, help=_SINCE_HELP)
@LIMIT_OPTION
def webhooks_list(endpoint: str | None, reason: str | None, since: str | None, limit: int) -> None:
    """Counts by endpoint and reason, then the letters, oldest first."""
    from streams.config.settings import FleetSettings
    from streams.ops import webhook_redrive as ops

    settings = FleetSettings()
    require_fleet(settings, [Topics(settings.topic_prefix).webhooks_dlq])  # notify's alone
    letters, unreadable = ops.read_letters(settings)
    for unknown in _unknown(letters, endpoint, reason):
        click.echo(f"note: {unknown}", err=True)
    chosen = ops.select(letters, endpoint=endpoint, reason=reason, since=since_time(since))
    marks = ops.read_marks(settings)
    delivered = sum(1 for item in chosen if ops.delivered_by(marks, item))
    click.echo(f"webhook dead letters: {len(chosen)} ({delivered} delivered by a redrive)")
    if unreadable:
        click.echo(f"unreadable records on the webhook DLQ: {unreadable}")
    if not chosen:
        return
    counts = Counter((i.letter.endpoint, i.letter.reason) for i in chosen)

    def line(item: WebhookLetterAt) -> str:
        letter = item.letter
        mark = ops.delivered_by(marks, item)
        note = f"  (delivered by {mark.redrive_id})" if mark else ""
        last = f"{letter.last_status}" if letter.last_status is not None else "-"
        return (
            f"{letter.given_up_at}  webhooks.dlq@{item.position:<7} {letter.endpoint:<20} "
            f"{letter.reason:<18} last {last:<4} {letter.type:<16} {letter.image_id}  "
            f"{letter.event_id}{note}"
        )

    by_count = [(name, why, n) for (name, why), n in counts.most_common()]
    echo_listing("endpoint", 20, by_count, chosen, line, limit)


@webhooks.command("redrive")
@click.option("--endpoint", default=None, help="Only this subscription's letters (its name).")
@click.option("--reason", default=None, help="Only this reason (e.g. retries_exhausted).")
@click.option("--since", default=None, help=_SINCE_HELP)
@click.option("--dry-run", is_flag=True, help="Print what would be delivered; send nothing.")
@click.option(
    "--redrive-id",
    default=None,
    help="Resume a redrive that was interrupted: letters it delivered are skipped "
    "(default: a new id, printed first).",
)
@click.option(
    "--again", is_flag=True, help="Also deliver letters an earlier redrive already delivered."
)
def webhooks_redrive(
    endpoint: str | None,
    reason: str | None,
    since: str | None,
    dry_run: bool,
    redrive_id: str | None,
    again: bool,
) -> None:
    """POST chosen webhook dead letters to their endpoint again, oldest first.

    Each goes to the subscription of the letter's endpoint name, signed with its current
    secret and with the event's own id, so a receiver that stored it already can drop it.
    A delivered letter is marked at once; a letter is delivered at most once per redrive
    (and by later ones only with --again). An endpoint that fails three letters in a row is
    left for the next run. Exits 2 when some letters were not delivered; exits 1 before
    sending anything (on --dry-run too) when a subscription's secret_env is unset here.
    """
    from streams.config.settings import FleetSettings
    from streams.ops import webhook_redrive as ops
    from streams.ops.dlq import new_redrive_id

    settings = FleetSettings()
    require_fleet(settings, [Topics(settings.topic_prefix).webhooks_dlq])  # notify's alone
    letters, _unreadable = ops.read_letters(settings)
    unknown = _unknown(letters, endpoint, reason)
    if unknown:
        fail(f"{'; '.join(unknown)}; nothing delivered")
    chosen = ops.select(letters, endpoint=endpoint, reason=reason, since=since_time(since))
    redrive_id = redrive_id or new_redrive_id()
    click.echo(f"redrive {redrive_id}{' (dry run)' if dry_run else ''}")
    try:
        report = ops.WebhookRedriver(settings).run(
            chosen, redrive_id=redrive_id, again=again, dry_run=dry_run
        )
    except (ops.MarkLostError, ops.SecretMissingError) as exc:
        fail(str(exc))
    verb = "would deliver" if dry_run else "delivered"
    for item, status in report.sent:
        answer = "" if dry_run else f" (answered {status})"
        click.echo(
            f"{verb} webhooks.dlq@{item.position} {item.letter.event_id} "
            f"-> {item.letter.endpoint}{answer}"
        )
    for item in report.already:
        click.echo(f"skipped webhooks.dlq@{item.position}: already delivered")
    for item, why in report.failed:
        click.echo(f"not delivered webhooks.dlq@{item.position} -> {item.letter.endpoint}: {why}")
    click.echo(
        f"webhooks redrive: {len(report.sent)} {verb}, {len(report.already)} already "
        f"delivered, {len(report.failed)} not delivered"
    )
    if report.failed:
        sys.exit(2)


def _unknown(letters: list[WebhookLetterAt], endpoint: str | None, reason: str | None) -> list[str]:
    """An endpoint or reason no letter has is most likely mistyped: say which there are."""
    said = []
    for what, wanted, present in (
        ("endpoint", endpoint, {i.letter.endpoint for i in letters}),
        ("reason", reason, {i.letter.reason for i in letters}),
    ):
        if wanted is not None and wanted not in present:
            said.append(
                f"no webhook dead letter has the {what} {wanted!r}; those on the DLQ: "
                f"{', '.join(sorted(present)) or 'none'}"
            )
    return said
