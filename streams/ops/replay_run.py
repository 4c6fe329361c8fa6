"""One `pixelfleet replay` run: plan, send (paced, with progress), wait, sweep, and say so.

The command's option parsing stays in streams/cli/replay.py; what it prints is decided here,
through the `echo` it passes, so the whole course reads top to bottom in one place.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from minio import Minio

from schemas.events import ImageRecord
from streams.config.settings import FleetSettings
from streams.ops.dlq import new_redrive_id
from streams.ops.pacing import Pacer
from streams.ops.replay import Replayer
from streams.ops.replay_plan import ReplayItem, ReplayPlanner
from streams.ops.selection import human_bytes

Echo = Callable[[str], None]


def new_replay_id() -> str:
    """A replay's id: a redrive id's form with `p-` for `r-` (the catalog's replay uses it
    too, so both read alike in the workers' logs)."""
    return new_redrive_id().replace("r-", "p-", 1)


def run_replay(
    settings: FleetSettings,
    s3: Minio,
    chosen: Sequence[ImageRecord],
    stage: str,
    *,
    dry_run: bool,
    rate: float | None,
    wait: bool,
    timeout: float,
    echo: Echo,
    progress: Callable[[int], Callable[[int], None]],
) -> int:
    """The exit code: 0; 1 when Kafka refused messages; 2 when some images had nothing to
    replay them from (the others were replayed); 3 when --wait ran out of time."""
    items = ReplayPlanner(settings, s3).plan(chosen, stage)
    ready = [i for i in items if i.value is not None]
    verb = "would replay" if dry_run else "replay"
    for item in items:
        if item.note:
            echo(
                f"{verb} {item.image_id}: {item.note}"
                if item.value
                else f"{item.image_id}: {item.note}"
            )
    by_stage = _by_stage(ready)
    lost = len(items) - len(ready)
    if dry_run:
        echo(f"dry run: {len(ready)} image(s) would be replayed ({by_stage}); {lost} cannot be")
        return 0
    replay_id = new_replay_id()
    replayer = Replayer(settings, s3, replay_id)
    correlation = {r.image_id: r.correlation_id for r in chosen}
    pacer = Pacer(rate, time.monotonic, time.sleep)
    sent = replayer.send(ready, pacer, progress(len(ready)), correlation)
    pace = sent.count / sent.seconds if sent.seconds > 0 else 0.0
    echo(
        f"replay {replay_id}: sent {sent.count} image(s) ({by_stage}) in {sent.seconds:.1f} s "
        f"({pace:.1f}/s); {lost} cannot be replayed"
    )
    for error in sent.errors:
        echo(f"error: {error}")
    if sent.errors:
        return 1
    if not wait or not ready:
        return 2 if lost else 0
    records = {r.image_id: r for r in chosen}
    old = {i.image_id: records[i.image_id] for i in ready}
    new = replayer.wait(old, timeout)
    statuses = ", ".join(
        f"{n} {s}" for s, n in sorted(Counter(r.status for r in new.values()).items())
    )
    swept = replayer.sweep(old, new)
    echo(
        f"finished: {len(new)} of {len(old)} ({statuses or 'none'}); removed "
        f"{len(swept.removed)} replaced variant(s), {human_bytes(swept.size)}"
    )
    for obj in swept.removed:
        echo(f"  removed s3://{obj.bucket}/{obj.key}")
    if swept.kept_shared:
        echo(
            f"kept {len(swept.kept_shared)} replaced variant(s) that other images' records "
            "list (duplicates of a replayed image; replay them too to move them on)"
        )
    if len(new) < len(old):
        echo(
            f"not finished after {timeout:.0f} s: {len(old) - len(new)} image(s); the variants "
            "they replace stay until a replay of them is waited for"
        )
        return 3
    return 2 if lost else 0


def _by_stage(items: Sequence[ReplayItem]) -> str:
    starts = Counter(i.stage for i in items)
    return ", ".join(f"{n} from {s}" for s, n in sorted(starts.items())) or "none"
