"""The pure choosing of the operations commands: durations, filters, dead letters, plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Category, DeadLetter, ImageRecord
from streams.ops.dlq import RedriveMark, original_bytes, plan
from streams.ops.erase import with_duplicates
from streams.ops.objects import owns
from streams.ops.selection import (
    LetterAt,
    counts_by_reason,
    expired,
    human_bytes,
    parse_duration,
    parse_since,
    parse_where,
    select_letters,
    select_records,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _record(
    image_id: str,
    *,
    status: str = "done",
    category: str | None = "rings",
    at: str = "2026-10-01T00:00:00.000Z",
    duplicate_of: str | None = None,
) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        status=status,  # type: ignore[arg-type]
        updated_at=at,
        category=Category(name=category, score=1.0) if category else None,
        duplicate_of=duplicate_of,
    )


def _letter(stage: str, reason: str, at: str, offset: int) -> LetterAt:
    letter = DeadLetter(
        image_id=f"img-{offset}",
        stage=stage,
        reason_class=reason,
        reason="why",
        topic="pf.ingest",
        partition=0,
        offset=offset,
        attempts=1,
        at=at,
        original="{}",
    )
    return LetterAt(letter, partition=1, offset=offset)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "d", "30y", "-1d", ""])
def test_bad_durations_say_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="like 30d"):
        parse_duration(text)


def test_since_is_a_duration_back_or_a_time() -> None:
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("2026-12-01T08:00:00Z", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_since("2026-12-01", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    # Both forms are named: a failed time alone hid that 2h works too.
    with pytest.raises(ValueError, match=r"'yesterday' is neither a duration back from now \(2h"):
        parse_since("yesterday", NOW)


def test_where_pairs_and_repeats() -> None:
    assert parse_where("category=rings,status=done,status=rejected") == {
        "category": {"rings"},
        "status": {"done", "rejected"},
    }
    with pytest.raises(ValueError, match="knows"):
        parse_where("colour=red")
    with pytest.raises(ValueError, match="field=value"):
        parse_where("category")


def test_select_records_filters_and_orders_oldest_first() -> None:
    records = {
        r.image_id: r
        for r in (
            _record("b", at="2026-11-01T00:00:00.000Z"),
            _record("a", at="2026-11-01T00:00:00.000Z"),
            _record("c", category="other", at="2026-10-01T00:00:00.000Z"),
            _record("d", status="processing", at="2026-09-01T00:00:00.000Z"),
        )
    }
    chosen = select_records(records, where={"category": {"rings"}})
    assert [r.image_id for r in chosen] == ["d", "a", "b"]
    since = datetime(2026, 10, 15, tzinfo=UTC)
    assert [r.image_id for r in select_records(records, since=since)] == ["a", "b"]
    assert [r.image_id for r in select_records(records, finished_only=True)] == ["c", "a", "b"]


def test_expired_never_takes_an_image_in_flight_or_too_recent() -> None:
    records = {
        r.image_id: r
        for r in (
            _record("old-done"),
            _record("old-rejected", status="rejected"),
            _record("old-busy", status="processing"),
            _record("recent", at="2026-12-01T00:00:00.000Z"),
            _record("old-other", category="other"),
        )
    }
    month = timedelta(days=30)
    assert [r.image_id for r in expired(records, now=NOW, older_than=month)] == [
        "old-done",
        "old-other",
        "old-rejected",
    ]
    only = expired(records, now=NOW, older_than=month, category="rings", status="rejected")
    assert [r.image_id for r in only] == ["old-rejected"]


def test_letters_by_stage_reason_and_time_and_their_counts() -> None:
    letters = [
        _letter("validate", "too_large", "2026-12-01T00:00:00.000Z", 1),
        _letter("validate", "too_large", "2026-12-02T00:00:00.000Z", 2),
        _letter("compress", "bad_request", "2026-12-02T00:00:00.000Z", 3),
    ]
    assert [x.offset for x in select_letters(letters, stage="validate")] == [1, 2]
    assert [x.offset for x in select_letters(letters, reason="bad_request")] == [3]
    since = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert [x.offset for x in select_letters(letters, since=since)] == [2, 3]
    assert counts_by_reason(letters) == [
        ("validate", "too_large", 2),
        ("compress", "bad_request", 1),
    ]
    assert letters[0].position == "1:1"


def test_redrive_plan_sends_each_letter_once_per_redrive() -> None:
    letters = [_letter("validate", "x", "2026-12-01T00:00:00.000Z", n) for n in range(3)]

    def mark(redrive_id: str) -> RedriveMark:
        return RedriveMark(redrive_id=redrive_id, image_id="i", to_topic="t", at="now")

    marks = {"1:0": mark("r-1"), "1:1": mark("r-2")}
    send, done = plan(letters, marks, "r-1", again=False)
    assert [x.offset for x in send] == [2] and [x.offset for x in done] == [0, 1]
    # --again re-sends what other redrives sent, never what this one sent.
    send, done = plan(letters, marks, "r-1", again=True)
    assert [x.offset for x in send] == [1, 2] and [x.offset for x in done] == [0]


def test_original_bytes_of_either_encoding() -> None:
    text = _letter("validate", "x", "2026-12-01T00:00:00.000Z", 1).letter
    assert original_bytes(text) == b"{}"
    binary = DeadLetter(**{**_fields(text), "original": "AAEC", "original_encoding": "base64"})
    assert original_bytes(binary) == b"\x00\x01\x02"


def _fields(letter: DeadLetter) -> dict[str, object]:
    return {name: getattr(letter, name) for name in letter.__struct_fields__}


def test_duplicates_of_erased_images_go_with_them() -> None:
    records = {
        "a": _record("a"),
        "dup-1": _record("dup-1", duplicate_of="a"),
        "dup-2": _record("dup-2", duplicate_of="b"),
        "dup-3": _record("dup-3", duplicate_of="a"),
    }
    assert with_duplicates(["a"], records) == ["dup-1", "dup-3"]
    assert with_duplicates(["a", "dup-1"], records) == ["dup-3"]


@pytest.mark.parametrize(
    ("rest", "image_id", "mine"),
    [
        ("a/photo.jpg", "a", True),
        ("a.webp", "a", True),
        ("a.b.webp", "a", False),  # image a.b's variant
        ("a.b.webp", "a.b", True),
        ("ab.webp", "a", False),
        ("ab/photo.jpg", "a", False),
        ("a.", "a", False),
    ],
)
def test_an_image_owns_only_keys_of_its_own_id(rest: str, image_id: str, mine: bool) -> None:
    assert owns(rest, image_id) is mine


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1610) == "1.6 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"
