"""The console's actions, done by the operations code the CLI runs (streams/ops/).

Each function blocks (Kafka, S3) and is run in a worker thread of the web server by
actions_api.py. Each answers data, an `Answer`: the status and the JSON body, errors
included, each error saying what to do next. Records come through `Lookup`, which the
handler backs with the catalog's table (or the replica that owns the image's partition),
so no action reads the whole metadata topic as the CLI's `delete` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import ImageRecord
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.ops.cleanup import Choice, choose_delete, finish_interrupted, run_erasure
from streams.ops.dlq import Redriver, read_letters, read_marks
from streams.ops.erase import Eraser
from streams.ops.pacing import Pacer
from streams.ops.replay import Replayer
from streams.ops.replay_plan import ReplayPlanner
from streams.ops.replay_run import new_replay_id
from streams.ops.selection import FINISHED, LetterAt, select_letters

# The stages an image can be replayed from, in route order (what `pixelfleet replay` offers).
REPLAY_STAGES = ("validate", "categorize", "enhance", "restore", "compress")
# ids -> their records (those that exist); may block, so only ever called from a thread.
Lookup = Callable[[Iterable[str]], dict[str, ImageRecord]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def problem(status: int, code: str, message: str, **extra: Any) -> Answer:
    """The same shape as every other error of the API (http_support.error)."""
    return Answer(status, {"error": code, "message": message, **extra})


# --- dead letters ---------------------------------------------------------------------------


def _letter(item: LetterAt, redriven_by: str | None) -> dict[str, Any]:
    letter = item.letter
    return {
        "letter": item.position,
        "image_id": letter.image_id,
        "stage": letter.stage,
        "reason_class": letter.reason_class,
        "reason": letter.reason,
        "at": letter.at,
        "topic": letter.topic,
        "redriven_by": redriven_by,
    }


def list_letters(
    settings: FleetSettings, stage: str | None, reason: str | None, limit: int
) -> Answer:
    """The dead letters of a stage and reason class, newest first, with which redrive (if
    any) re-sent each; `count` is all of them, `letters` the newest `limit`."""
    letters, unreadable = read_letters(settings)
    chosen = select_letters(letters, stage=stage, reason=reason)
    marks = read_marks(settings)
    newest = list(reversed(chosen))[:limit]
    shown = [_letter(i, m.redrive_id if (m := marks.get(i.position)) else None) for i in newest]
    body = {"count": len(chosen), "unreadable": unreadable, "letters": shown}
    return Answer(200, body)


def redrive_letter(settings: FleetSettings, position: str, *, again: bool) -> Answer:
    """Re-send one dead letter to its inbox, as `pixelfleet dlq redrive` does: at most once
    per redrive, recorded on the redriven ledger in the same transaction."""
    letters, _ = read_letters(settings)
    found = [item for item in letters if item.position == position]
    if not found:
        dlq = Topics(settings.topic_prefix).dlq
        return problem(
            404,
            "not_found",
            f"no dead letter at {position} on {dlq} (past its retention, or a wrong "
            "position); GET /v1/dlq lists them",
        )
    item = found[0]
    report = Redriver(settings).run(found, again=again)
    body: dict[str, Any] = {
        "redrive_id": report.redrive_id,
        "letter": position,
        "image_id": item.letter.image_id,
        "to_topic": item.letter.topic,
        "restored_from": None,
    }
    if report.already:
        return problem(
            409,
            "already_redriven",
            f"dead letter {position} ({item.letter.image_id}) was already re-sent by an "
            'earlier redrive; send {"again": true} to re-send it once more',
            **body,
        )
    if report.unsendable:
        why = report.unsendable[0][1]
        return problem(409, "cannot_redrive", f"dead letter {position} was not re-sent: {why}")
    for _, kept in report.restored:
        body["restored_from"] = f"s3://{kept.bucket}/{kept.key}"
    return Answer(200, body)


# --- one image ---------------------------------------------------------------------------------


def replay_image(
    settings: FleetSettings, record: ImageRecord, stage: str, *, dry_run: bool
) -> Answer:
    """Plan (and unless `dry_run`, send) a replay of one image from `stage` onward, with the
    planner and replayer of `pixelfleet replay`; the body says where it really starts (an
    expired input starts it from validate) and why."""
    if record.status not in FINISHED:
        return problem(
            409,
            "still_processing",
            f"{record.image_id} is still being processed ({record.status}); replay it once "
            "it is done, rejected or failed",
        )
    s3 = clients.s3(settings.s3)
    [item] = ReplayPlanner(settings, s3).plan([record], stage)
    body: dict[str, Any] = {
        "image_id": record.image_id,
        "asked_stage": stage,
        "stage": item.stage,
        "topic": item.topic,
        "note": item.note,
        "sent": False,
        "replay_id": None,
    }
    if item.value is None:
        return problem(409, "cannot_replay", f"{item.note}; nothing was sent", **body)
    if dry_run:
        return Answer(200, body)
    replay_id = new_replay_id()
    pacer = Pacer(None, time.monotonic, time.sleep)
    sent = Replayer(settings, s3, replay_id).send(
        [item], pacer, correlation={record.image_id: record.correlation_id}
    )
    if sent.errors:
        return problem(
            503,
            "kafka_refused",
            f"Kafka did not take the replay ({'; '.join(sent.errors)}); nothing changed, "
            "try again once the brokers answer",
        )
    return Answer(202, {**body, "sent": True, "replay_id": replay_id})


def _choice_body(image_id: str, choice: Choice) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "images": [
            {
                "image_id": plan.image_id,
                "note": plan.note,
                "objects": len(plan.objects),
                "bytes": plan.size,
                "keys": [f"s3://{o.bucket}/{o.key}" for o in plan.objects],
            }
            for plan in choice.plans
        ],
        "objects": choice.objects,
        "bytes": choice.size,
    }


def delete_image(
    settings: FleetSettings,
    image_id: str,
    peers: Sequence[str],
    lookup: Lookup,
    *,
    dry_run: bool,
    force: bool,
) -> Answer:
    """Erase one image for good, as `pixelfleet delete` does: every object, then the record
    (a tombstone), and with it the images recorded as its duplicates. `peers` are the images
    of the same content (the only ones that can be its duplicates)."""
    records = lookup([image_id, *peers])
    eraser = Eraser(settings)
    said: list[str] = []
    try:
        if not dry_run:
            # As the CLI does first: an erasure an interrupted run left is finished (or,
            # where the image came back since, dropped), which needs those images' records.
            pending = [entry.image_id for entry in eraser.pending()]
            if pending:
                finish_interrupted(eraser, lookup(pending), said.append)
        choice = choose_delete(eraser, [image_id], records, force=force)
        if choice.refused:
            return problem(
                409,
                "still_processing",
                f"{image_id} is still being processed; delete it once it is done, rejected "
                "or failed (or with force=1, knowing a stage may write it again)",
            )
        if image_id not in records and not choice.objects:
            return problem(404, "not_found", f"no image {image_id!r}: no record and no object")
        body = _choice_body(image_id, choice)
        if not dry_run:
            run_erasure(eraser, choice, dry_run=False, objects=False, echo=said.append)
    finally:
        eraser.close()
    return Answer(200, {**body, "deleted": not dry_run, "log": said})


def same_content(record: ImageRecord | None) -> str | None:
    """The record's sha256, by which the index finds the images of the same content."""
    original: Mapping[str, Any] = (record.original or {}) if record else {}
    sha = original.get("sha256")
    return sha.lower() if isinstance(sha, str) else None
