"""`pixelfleet delete` and `pixelfleet cleanup`: choosing the images, then erase.py erases.

Both first finish any erasure an interrupted run left (erase.Eraser.resume), then plan
(which objects, how many bytes) and, unless it is a dry run, erase in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.events import ImageRecord
from streams.ops.erase import Erased, Eraser, with_duplicates
from streams.ops.selection import FINISHED, expired, human_bytes

Echo = Callable[[str], None]


@dataclass
class Choice:
    """What a delete or cleanup run acts on, before anything is removed."""

    plans: list[Erased] = field(default_factory=list)
    # Images left alone, with why (still being processed).
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(len(p.objects) for p in self.plans)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.plans)


def choose_delete(
    eraser: Eraser,
    image_ids: Sequence[str],
    records: Mapping[str, ImageRecord],
    *,
    force: bool = False,
) -> Choice:
    """The named images and their duplicates, every object found under every category.

    An image still being processed is refused unless `force`: a stage would write its
    record and objects again right after the erasure.
    """
    choice = Choice()
    named = list(dict.fromkeys(image_ids))
    allowed = []
    for image_id in named:
        record = records.get(image_id)
        if record is not None and record.status not in FINISHED and not force:
            choice.refused.append((image_id, "still being processed (wait, or --force)"))
        else:
            allowed.append(image_id)
    extra = with_duplicates(allowed, records)
    choice.plans = eraser.plan([*allowed, *extra], records, thorough=True)
    for plan in choice.plans:
        if plan.image_id in extra:
            plan.note = f"duplicate of {records[plan.image_id].duplicate_of}"
        elif plan.record is None and not plan.objects:
            # Repeating a delete is no error; a mistyped id must still not look deleted.
            plan.note = "no record and no object: deleted already, or not an image id"
        elif plan.record is None:
            plan.note = "no record"
    return choice


def choose_cleanup(
    eraser: Eraser,
    records: Mapping[str, ImageRecord],
    *,
    now: datetime,
    older_than: timedelta,
    category: str | None = None,
    status: str | None = None,
) -> Choice:
    """Finished images not updated for `older_than` (and their duplicates), their objects
    looked up under their own category only (cheap enough for millions of images)."""
    old = [
        r.image_id
        for r in expired(records, now=now, older_than=older_than, category=category, status=status)
    ]
    extra = with_duplicates(old, records)
    plans = eraser.plan([*old, *extra], records, thorough=False)
    for plan in plans:
        if plan.image_id in extra:
            plan.note = f"duplicate of {records[plan.image_id].duplicate_of}"
    return Choice(plans=plans)


def finish_interrupted(eraser: Eraser, records: Mapping[str, ImageRecord], echo: Echo) -> None:
    """Finish what an interrupted delete or cleanup began, and say so."""
    resumed = eraser.resume(records)
    for item in resumed.finished:
        echo(
            f"resumed the interrupted erasure of {item.image_id}: "
            f"{len(item.objects)} object(s) left, {human_bytes(item.size)}"
        )
    for image_id in resumed.superseded:
        echo(f"dropped the interrupted erasure of {image_id}: it was submitted again since")


def run_erasure(
    eraser: Eraser, choice: Choice, *, dry_run: bool, objects: bool, echo: Echo
) -> None:
    """Erase the choice (or, in a dry run, only say what would go), a line per image and a
    total of objects and bytes."""
    for image_id, why in choice.refused:
        echo(f"left {image_id}: {why}")
    if dry_run:
        for plan in choice.plans:
            _say(plan, dry_run, objects, echo)
        echo(
            f"dry run: {len(choice.plans)} image(s), {choice.objects} object(s), "
            f"{human_bytes(choice.size)} would be freed"
        )
        return
    eraser.erase(choice.plans, on_done=lambda plan: _say(plan, dry_run, objects, echo))
    echo(
        f"deleted {len(choice.plans)} image(s): {choice.objects} object(s), "
        f"{human_bytes(choice.size)} freed"
    )


def _say(plan: Erased, dry_run: bool, objects: bool, echo: Echo) -> None:
    verb = "would delete" if dry_run else "deleting"
    note = f" ({plan.note})" if plan.note else ""
    echo(f"{verb} {plan.image_id}{note}: {len(plan.objects)} object(s), {human_bytes(plan.size)}")
    if objects:
        for obj in plan.objects:
            echo(f"  s3://{obj.bucket}/{obj.key} ({human_bytes(obj.size)})")
