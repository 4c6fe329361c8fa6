from __future__ import annotations

from schemas.events import (
    DeadLetter,
    ImageRecord,
    NearDuplicate,
    ObjectRef,
    StageState,
    Variant,
)
from streams.demo.summary import duplicate_groups, summarize

T = "2026-11-21T10:00:00Z"


def _record(
    image_id: str, status: str, phash: str, seconds: float, restore: str | None = None
) -> ImageRecord:
    stages = {
        "validate": StageState(
            outcome="ok" if status == "done" else "rejected", started_at=T, seconds=seconds
        )
    }
    route = ["validate", "categorize", "enhance", *(["restore"] if restore else []), "compress"]
    variants = (
        [
            Variant(
                variant="preview",
                format="webp",
                width=10,
                height=10,
                bytes=100,
                object=ObjectRef(bucket="b", key=f"{image_id}.webp"),
            )
        ]
        if status == "done"
        else []
    )
    return ImageRecord(
        image_id=image_id,
        status=status,
        updated_at=T,
        stages=stages,
        route=route,  # type: ignore[arg-type]
        original={"phash": phash, "bytes": 1000},
        restore={"outcome": restore} if restore else None,
        variants=variants,
    )


def test_figures_come_from_the_records_of_this_run_only() -> None:
    records = {
        "a": _record("a", "done", "ffff000000000000", 1.0),
        "b": _record("b", "done", "ffff000000000001", 3.0, restore="upscaled"),  # 1 bit off
        "c": _record("c", "rejected", "0000ffff00000000", 0.5),
        "other-run": _record("other-run", "done", "ffff000000000000", 9.0),
    }
    letter = DeadLetter(
        image_id="c",
        stage="validate",
        reason_class="truncated",
        reason="61 %",
        topic="t",
        partition=0,
        offset=1,
        attempts=1,
        at=T,
        original="{}",
    )
    summary = summarize(records, [letter], {"a": "a.jpg", "b": "b.jpg", "c": "c.jpg"})
    assert summary.images == 3 and summary.status == {"done": 2, "rejected": 1}
    validate = summary.stages[0]
    assert (validate.processed, validate.rejected) == (2, 1)
    assert validate.p50_s == 1.0 and validate.p95_s is not None and 2.5 < validate.p95_s <= 3.0
    assert summary.routes == {
        "validate > categorize > enhance > compress": 1,
        "validate > categorize > enhance > restore > compress": 1,
    }
    assert summary.restore == {"upscaled": 1}
    assert (summary.bytes_in, summary.bytes_out, summary.ratio) == (2000, 200, 10.0)
    assert summary.duplicates == [["a.jpg", "b.jpg"]]
    assert summary.dead_letters == {"validate: truncated": 1}


def test_duplicates_need_close_hashes() -> None:
    far = {
        "x": _record("x", "done", "ffffffff00000000", 1),
        "y": _record("y", "done", "00000000ffffffff", 1),
    }
    assert duplicate_groups(far) == []


def test_duplicates_include_what_the_catalog_recorded() -> None:
    # Hashes far apart, but the catalog saw them as near-duplicates (or one as a copy).
    records = {
        "x": _record("x", "done", "ffffffff00000000", 1),
        "y": _record("y", "done", "00000000ffffffff", 1),
        "z": _record("z", "done", "0f0f0f0f0f0f0f0f", 1),
        "w": _record("w", "done", "f0f0f0f0f0f0f0f0", 1),
    }
    records["y"].near_duplicates = [NearDuplicate(image_id="x", distance=6)]
    records["w"].duplicate_of = "z"
    assert duplicate_groups(records) == [["w", "z"], ["x", "y"]]
