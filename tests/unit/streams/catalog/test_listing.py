"""ListedIndex: the console's pages of images, fed real encoded records."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from schemas.events import (
    Envelope,
    ErrorInfo,
    Hints,
    ImageRecord,
    ImageSubmitted,
    NearDuplicate,
    Source,
    StageState,
    encode,
)
from streams.catalog.listing import SCAN_BUDGET, Filters, ListedIndex, Page
from tests.support.catalog_kit import fake_record


def record(image_id: str, *, status: str = "done", **fields: Any) -> ImageRecord:
    rec = fake_record(image_id, random.Random(image_id), status=status)
    return msgspec.structs.replace(rec, **fields) if fields else rec


def put(index: ListedIndex, *records: ImageRecord) -> None:
    index.apply_many([(r.image_id.encode(), encode(r)) for r in records])


def ids(page: Page) -> list[str]:
    return [row.image_id for row in page.rows]


def every_page(index: ListedIndex, filters: Filters, limit: int, budget: int) -> list[str]:
    seen: list[str] = []
    cursor: int | None = None
    for _ in range(10_000):  # bounded: each round moves the cursor down
        page = index.page(filters, cursor, limit, budget=budget)
        seen += ids(page)
        if page.cursor is None:
            return seen
        assert cursor is None or page.cursor < cursor
        cursor = page.cursor
    raise AssertionError("paging never ended")


def test_pages_list_the_most_recently_changed_first_and_end_with_no_cursor() -> None:
    index = ListedIndex()
    put(index, *(record(f"img-{i}") for i in range(5)))
    put(index, record("img-1", status="rejected"))  # a new state moves it to the top
    first = index.page(Filters(), None, 2)
    assert ids(first) == ["img-1", "img-4"]
    assert first.cursor is not None
    second = index.page(Filters(), first.cursor, 2)
    assert ids(second) == ["img-3", "img-2"]
    last = index.page(Filters(), second.cursor, 2)
    assert ids(last) == ["img-0"]
    assert last.cursor is None


def test_after_the_catch_up_the_list_is_in_time_order_not_read_order() -> None:
    """The catch-up reads one partition, then another: its read order is no time order."""
    index = ListedIndex()
    at = "2026-12-0{}T10:00:00.000Z"
    partition_a = [record(f"a{d}", updated_at=at.format(d)) for d in (1, 4, 7)]
    partition_b = [record(f"b{d}", updated_at=at.format(d)) for d in (2, 5, 8)]
    put(index, *partition_a, *partition_b)
    before = index.epoch
    assert ids(index.page(Filters(), None, 6)) == ["b8", "b5", "b2", "a7", "a4", "a1"]
    index.order_by_time()
    assert ids(index.page(Filters(), None, 6)) == ["b8", "a7", "b5", "a4", "b2", "a1"]
    assert index.epoch != before  # a cursor of the old numbering is stale (409)
    # Checked with the rows, under one lock: a renumbering between a request's check and
    # its page could otherwise pair old numbers with the new epoch.
    stale = index.page(Filters(), 3, 2, epoch=before)
    assert (stale.stale, stale.rows, stale.epoch) == (True, [], index.epoch)
    fresh = index.page(Filters(), None, 2)
    assert fresh.epoch == index.epoch and not fresh.stale
    assert index.row("a4") is not None and index.row("a4").seq == 3  # type: ignore[union-attr]
    # Later states are read as they happen, and go on top.
    put(index, record("a1", status="rejected", updated_at="2026-12-09T10:00:00.000Z"))
    assert ids(index.page(Filters(), None, 2)) == ["a1", "b8"]
    assert every_page(index, Filters(), 2, 100) == ["a1", "b8", "a7", "b5", "a4", "b2"]


def test_tombstones_leave_the_listing_and_the_rows_counts() -> None:
    index = ListedIndex()
    put(index, record("a"), record("b", status="rejected", errors=[_error("validate")]))
    assert index.dead_letter_reasons() == [
        {"stage": "validate", "reason": "too_small", "images": 1}
    ]
    index.apply(b"b", None)
    assert ids(index.page(Filters(), None, 10)) == ["a"]
    assert index.row("b") is None
    assert index.dead_letter_reasons() == []


def _error(stage: str, reason: str = "too_small") -> ErrorInfo:
    return ErrorInfo(stage=stage, reason_class=reason, reason="x", at="2026-12-02T08:00:00Z")


def test_every_filter_selects_what_it_names() -> None:
    index = ListedIndex()
    restored = StageState(outcome="ok", started_at="2026-12-02T08:00:00Z", seconds=1.0)
    near = [NearDuplicate(image_id="plain", distance=3)]
    put(
        index,
        record("plain", updated_at="2026-12-01T10:00:00.000Z"),
        record("late", updated_at="2026-12-03T10:00:00.000Z"),
        record("dup", duplicate_of="plain", route=["validate"]),
        record("near", near_duplicates=near),
        record("restored", stages={"restore": restored}, route=["validate", "restore"]),
        record("bad", status="failed", errors=[_error("compress", "encoder")]),
    )

    def only(**given: str) -> set[str]:
        return set(every_page(index, Filters(**given), 50, 1000))

    assert only(status="failed") == {"bad"}
    assert only(duplicate="exact") == {"dup"}
    assert only(duplicate="near") == {"near"}
    assert only(duplicate="any") == {"dup", "near"}
    assert "dup" not in only(duplicate="none")
    assert only(restore="ok") == {"restored"}
    assert only(route="validate") == {"dup"}
    assert only(since="2026-12-02") >= {"late"} and "plain" not in only(since="2026-12-02")
    assert only(until="2026-12-02") == {"plain"}
    assert only(q="res") == {"restored"}
    sha = index.row("late")
    assert sha is not None and sha.sha256 is not None
    assert only(q=sha.sha256[:12].upper()) == {"late"}
    category = index.row("plain")
    assert category is not None and category.category is not None
    assert "plain" in only(category=category.category)
    facets = index.facets()
    assert facets["status"] == {"done": 5, "failed": 1}
    assert facets["duplicate"] == {"exact": 1, "near": 1}
    assert facets["restore"] == {"ok": 1}


def test_the_thumbnail_is_the_narrowest_variant() -> None:
    index = ListedIndex()
    rec = record("a")
    wide = msgspec.structs.replace(rec.variants[0], width=2000, variant="large")
    narrow = msgspec.structs.replace(
        rec.variants[0],
        width=200,
        variant="thumb",
        object=msgspec.structs.replace(rec.variants[0].object, key="thumb/a.webp"),
    )
    put(index, msgspec.structs.replace(rec, variants=[wide, narrow]))
    row = index.row("a")
    assert row is not None and row.thumb == ("pixelfleet-images", "thumb/a.webp")


def test_the_kept_original_is_never_the_thumbnail() -> None:
    index = ListedIndex()
    rec = record("a", status="processing")
    original = msgspec.structs.replace(
        rec.variants[0],
        width=120,  # narrower than any variant, as a small upload would be
        variant="original",
        object=msgspec.structs.replace(rec.variants[0].object, key="other/original/a.png"),
    )
    # Alone, as an enhance of the previous version left it on a record still processing.
    put(index, msgspec.structs.replace(rec, variants=[original]))
    row = index.row("a")
    assert row is not None and row.thumb is None
    put(index, msgspec.structs.replace(rec, status="done", variants=[original, rec.variants[0]]))
    row = index.row("a")
    assert row is not None and row.thumb == (
        rec.variants[0].object.bucket,
        rec.variants[0].object.key,
    )


def test_a_page_stops_after_its_budget_and_paging_still_reaches_every_match() -> None:
    index = ListedIndex()
    put(
        index,
        *(record(f"i{n:04d}", status="failed" if n % 97 == 0 else "done") for n in range(1000)),
    )
    rare = Filters(status="failed")
    first = index.page(rare, None, 50, budget=100)
    assert first.scanned <= 100 and first.cursor is not None
    wanted = {f"i{n:04d}" for n in range(0, 1000, 97)}
    assert set(every_page(index, rare, 50, 100)) == wanted


def test_updates_leave_holes_that_paging_skips_without_empty_last_pages() -> None:
    index = ListedIndex()
    put(index, *(record(f"i{n}") for n in range(100)))
    # Every image changes again: the first hundred sequence numbers are all holes now.
    put(index, *(record(f"i{n}", status="rejected") for n in range(100)))
    listed = every_page(index, Filters(), 30, 1000)
    assert len(listed) == 100 and len(set(listed)) == 100
    pages = 0
    cursor: int | None = None
    while True:
        page = index.page(Filters(), cursor, 50)
        pages += 1
        assert page.rows, "a page past the last image"
        if page.cursor is None:
            break
        cursor = page.cursor
    assert pages == 2


def test_a_page_costs_the_same_at_a_large_index() -> None:
    """100,000 images (a tenth of the million the console is made for): a page of the newest
    steps over no more sequence numbers than it shows, and a page with a filter nothing
    passes stops at the scan budget, not at the end of the index. (No perceptual hashes:
    100,000 equal ones would load the near-duplicate index instead.)"""
    index = ListedIndex()
    plain = record("x")
    assert plain.original is not None
    template = encode(msgspec.structs.replace(plain, original={**plain.original, "phash": None}))
    batch = [
        (f"img-{n:07d}".encode(), template.replace(b'"x"', f'"img-{n:07d}"'.encode()))
        for n in range(100_000)
    ]
    index.apply_many(batch)
    newest = index.page(Filters(), None, 48)
    none = index.page(Filters(status="failed"), None, 48)
    assert len(newest.rows) == 48 and newest.rows[0].image_id == "img-0099999"
    assert newest.scanned == 48  # the newest 48: nothing older looked at
    # The work is counted in sequence numbers stepped over, never timed.
    assert none.rows == [] and none.scanned == SCAN_BUDGET < 100_000
    assert none.cursor is not None


def _submitted(image_id: str, title: str | None, keywords: list[str]) -> ImageSubmitted:
    return ImageSubmitted(
        image_id=image_id,
        source=Source(url=f"https://shop.example/{image_id}.jpg"),
        submitted_at="2026-12-02T08:00:00Z",
        hints=Hints(title=title, keywords=keywords),
    )


def test_search_finds_a_submission_by_its_title_and_keywords() -> None:
    index = ListedIndex()
    put(index, record("ring-1"), record("cup-1"), record("other"))
    ring = _submitted("ring-1", "Gold Ring, 18 carat", ["jewellery", "wedding"])
    cup = _submitted("cup-1", None, ["Coffee", "mug"])
    # fetch sends an envelope back to the ingest topic: its hints sit under `submitted`.
    fetched = Envelope(submitted=cup, route=["validate"], record=record("cup-1"))
    index.apply_submissions(
        [
            (b"ring-1", encode(ring)),
            (b"cup-1", encode(fetched)),
            (b"other", b"not json"),
            (b"other", None),
        ]
    )

    def found(q: str) -> set[str]:
        return set(every_page(index, Filters(q=q), 50, 1000))

    assert found("gold") == {"ring-1"}
    assert found("RING gold") == {"ring-1"}  # every word, any order, any case
    assert found("wedding") == {"ring-1"}
    assert found("coffee") == {"cup-1"}
    assert found("gold coffee") == set()
    assert found("cup-") == {"cup-1"}  # an id prefix still works
    # A later submission without hints keeps the words; erasing the image drops them.
    index.apply_submissions([(b"ring-1", encode(_submitted("ring-1", None, [])))])
    assert found("gold") == {"ring-1"}
    index.apply_many([(b"ring-1", None)])
    put(index, record("ring-1"))
    assert found("gold") == set()
