"""CatalogIndex: what the replica answers for the whole fleet, fed real encoded records."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from schemas.events import Category, ImageRecord, StageState, encode
from streams.catalog.index import CatalogIndex
from streams.catalog.near_dup import Match
from tests.support.catalog_kit import fake_record

FINGERPRINT = "0123456789abcdef"  # the one fake_record writes
ROUTE = ["validate", "categorize", "enhance", "compress"]


def record(image_id: str, *, status: str = "done", **fields: Any) -> ImageRecord:
    """fake_record (seeded by the id, so a test sees the same hashes every run) with some
    fields replaced."""
    rec = fake_record(image_id, random.Random(image_id), status=status)
    for name, value in fields.items():
        setattr(rec, name, value)
    return rec


def same_content(image_id: str, like: ImageRecord, **fields: Any) -> ImageRecord:
    """Another image of the bytes `like` was made from: same sha256 and perceptual hash."""
    assert like.original is not None
    return record(image_id, original=dict(like.original), **fields)


def state(outcome: str, seconds: float) -> StageState:
    return StageState(outcome=outcome, started_at="2026-12-02T08:00:00.000Z", seconds=seconds)  # type: ignore[arg-type]


def put(index: CatalogIndex, *records: ImageRecord) -> None:
    index.apply_many([(r.image_id.encode(), encode(r)) for r in records])


def drop(index: CatalogIndex, image_id: str) -> None:
    index.apply(image_id.encode(), None)


def sha_of(rec: ImageRecord) -> str:
    assert rec.original is not None
    sha: str = rec.original["sha256"]
    return sha


def phash_of(rec: ImageRecord) -> str:
    assert rec.original is not None
    phash: str = rec.original["phash"]
    return phash


def hx(code: int) -> str:
    return f"{code:016x}"


def hashed(image_id: str, phash: str) -> ImageRecord:
    """A finished image whose original has this perceptual hash (valid or not)."""
    rec = record(image_id)
    assert rec.original is not None
    rec.original["phash"] = phash
    return rec


# --- images and content ------------------------------------------------------------------


def test_len_counts_images_once_whatever_the_number_of_their_records() -> None:
    index = CatalogIndex()
    put(index, record("a", status="processing"), record("b"), record("c"))
    put(index, record("a"))  # a's next state replaces its first
    assert len(index) == 3
    assert index.stats()["images"] == 3
    assert index.stats()["by_status"] == {"done": 3}


def test_with_sha256_lists_every_image_of_that_content_sorted() -> None:
    index = CatalogIndex()
    first = record("z-first")
    put(index, first, same_content("a-second", first, status="processing"), record("other"))
    assert index.with_sha256(sha_of(first)) == ["a-second", "z-first"]
    assert index.with_sha256(sha_of(first).upper()) == ["a-second", "z-first"]
    assert index.with_sha256(hashlib.sha256(b"never seen").hexdigest()) == []
    assert index.with_sha256("not hex") == []


def test_done_with_names_only_a_finished_image_processed_on_its_own() -> None:
    index = CatalogIndex()
    busy = record("busy", status="processing")
    failed = record("failed", status="failed")
    twin = record("twin", duplicate_of="elsewhere")  # done, but as a pointer to another image
    put(index, busy, failed, twin)
    assert index.done_with(sha_of(busy), FINGERPRINT) is None
    assert index.done_with(sha_of(failed), FINGERPRINT) is None
    assert index.done_with(sha_of(twin), FINGERPRINT) is None

    put(index, record("busy"))  # now finished
    assert index.done_with(sha_of(busy), FINGERPRINT) == "busy"
    # Other settings are other work; garbage asks get no answer rather than an error.
    assert index.done_with(sha_of(busy), "fedcba9876543210") is None
    assert index.done_with("xyz", FINGERPRINT) is None
    put(index, record("no-print", fingerprint=None))
    assert index.done_with(sha_of(record("no-print")), FINGERPRINT) is None


def test_the_first_finished_image_of_some_content_keeps_answering_for_it() -> None:
    index = CatalogIndex()
    first = record("first")
    put(index, first, same_content("second", first))
    assert index.done_with(sha_of(first), FINGERPRINT) == "first"
    put(index, same_content("second", first, updated_at="2026-12-02T09:00:00.000Z"))
    assert index.done_with(sha_of(first), FINGERPRINT) == "first"

    drop(index, "first")
    assert index.done_with(sha_of(first), FINGERPRINT) != "first"
    put(index, same_content("third", first))
    assert index.done_with(sha_of(first), FINGERPRINT) in {"second", "third"}


@pytest.mark.parametrize("change", ["tombstone", "reprocessing", "other settings"])
def test_the_answer_moves_on_when_the_first_finished_image_goes_or_changes(change: str) -> None:
    index = CatalogIndex()
    first = record("first")
    put(index, first, same_content("second", first))
    if change == "tombstone":
        drop(index, "first")
    elif change == "reprocessing":
        put(index, same_content("first", first, status="processing"))
    else:
        put(index, same_content("first", first, fingerprint="fedcba9876543210"))
    assert index.done_with(sha_of(first), FINGERPRINT) == "second"


# --- tombstones and counts -------------------------------------------------------------------


def test_a_tombstone_takes_the_image_out_of_every_index_and_every_count() -> None:
    others = [
        record("b", status="failed", stages={"validate": state("failed", 0.1)}),
        record("c"),
    ]
    gone = record("a", category=Category(name="watches", score=0.7), quality={"noise": 30.0})
    index = CatalogIndex()
    put(index, gone, *others)
    assert index.stats()["by_category"].get("watches") == 1

    drop(index, "a")
    drop(index, "never-seen")  # harmless
    index.apply(None, None)  # a record without a key names no image: ignored
    without = CatalogIndex()
    put(without, *others)
    assert index.stats() == without.stats()
    assert len(index) == 2
    assert index.with_sha256(sha_of(gone)) == []
    assert index.done_with(sha_of(gone), FINGERPRINT) is None
    assert index.phash_of("a") is None
    assert [m.image_id for m in index.similar(phash_of(gone), 8)] == []
    assert index.stats()["near_duplicate_index"] == {"hashes": 2}

    drop(index, "b")
    drop(index, "c")
    assert index.stats() == CatalogIndex().stats()
    assert index.stats()["success_rate"] is None
    assert index.stats()["seconds_per_image"] == {"mean": None, "histogram": {}}


def test_a_record_updated_from_processing_to_done_moves_every_count() -> None:
    index = CatalogIndex()
    failed = record(
        "b", status="failed", stages={"validate": state("failed", 0.1)}, route=["validate"]
    )
    failed.quality, failed.category = None, None
    busy = record(
        "a",
        status="processing",
        stages={"validate": state("ok", 0.3)},
        route=ROUTE,
        quality={"sharpness": 40.0, "noise": 0.5, "resolution_score": 0.35},
        category=Category(name="rings", score=0.9),
    )
    put(index, failed, busy)
    stats = index.stats()
    assert stats["by_status"] == {"failed": 1, "processing": 1}
    assert stats["by_stage"] == {"validate": {"failed": 1, "ok": 1}}
    assert stats["by_category"] == {"rings": 1}
    assert stats["by_route"] == {"validate": 1, "validate>categorize>enhance>compress": 1}
    assert stats["quality"] == {
        "noise": {"<=1": 1},
        "resolution_score": {"<=0.4": 1},
        "sharpness": {"<=50": 1},
    }
    assert stats["success_rate"] == 0.0  # one finished, and it failed
    # Only a finished image has a processing time.
    assert stats["seconds_per_image"] == {"mean": None, "histogram": {}}

    done = record(
        "a",
        stages={
            "validate": state("ok", 0.3),
            "categorize": state("ok", 0.2),
            "restore": state("ok", 1.25),
            "compress": state("ok", 0.25),
        },
        route=["validate", "categorize", "restore", "compress"],
        quality={"sharpness": 180.5, "noise": 2.1, "resolution_score": 0.8},
        category=Category(name="necklaces", score=0.8),
    )
    put(index, done)
    stats = index.stats()
    assert stats["images"] == 2
    assert stats["by_status"] == {"done": 1, "failed": 1}
    assert stats["by_stage"] == {
        "validate": {"failed": 1, "ok": 1},
        "categorize": {"ok": 1},
        "restore": {"ok": 1},
        "compress": {"ok": 1},
    }
    assert stats["by_category"] == {"necklaces": 1}
    assert stats["by_route"] == {"validate": 1, "validate>categorize>restore>compress": 1}
    # A value on a bucket's upper edge counts in that bucket (0.8 -> "<=0.8").
    assert stats["quality"] == {
        "noise": {"<=3": 1},
        "resolution_score": {"<=0.8": 1},
        "sharpness": {"<=250": 1},
    }
    assert stats["success_rate"] == 0.5
    assert stats["seconds_per_image"] == {"mean": 2.0, "histogram": {"<=2.5": 1}}

    put(index, record("c"))  # fake_record's four stages of 0.05 s
    assert index.stats()["seconds_per_image"] == {
        "mean": 1.1,
        "histogram": {"<=0.25": 1, "<=2.5": 1},
    }
    assert index.stats()["success_rate"] == round(2 / 3, 4)


# --- perceptual hashes ---------------------------------------------------------------------


def test_similar_finds_a_hash_3_bits_away_and_not_one_20_bits_away() -> None:
    base = 0x0123456789ABCDEF
    index = CatalogIndex(near_dup_distance=8)
    put(
        index,
        hashed("base", hx(base)),
        hashed("near", hx(base ^ 0b1011)),
        hashed("far", hx(base ^ 0xFFFFF)),
    )
    assert index.similar(hx(base), 8) == [Match("base", 0), Match("near", 3)]
    assert index.similar(hx(base), 8, exclude="base") == [Match("near", 3)]
    assert index.similar(hx(base), 2, exclude="base") == []
    assert index.phash_of("near") == hx(base ^ 0b1011)

    # A new hash for an image replaces its old one.
    put(index, hashed("near", hx(base ^ (2**64 - 1))))
    assert index.similar(hx(base), 8, exclude="base") == []


def test_an_undecodable_value_is_counted_and_the_rest_of_the_batch_applied() -> None:
    index = CatalogIndex()
    good = [record("a"), record("b")]
    index.apply_many(
        [
            (b"a", encode(good[0])),
            (b"junk", b"not json at all"),
            (b"no-id", b'{"status": "done"}'),
            (b"bad-quality", b'{"image_id": "bad-quality", "quality": {"sharpness": "high"}}'),
            (b"b", encode(good[1])),
        ]
    )
    assert index.rejected_values == 3
    assert len(index) == 2
    assert index.with_sha256(sha_of(good[1])) == ["b"]
    assert index.stats()["by_status"] == {"done": 2}
    put(index, record("c"))  # and the index goes on
    assert len(index) == 3


def test_a_sha256_of_64_non_hex_characters_breaks_nothing() -> None:
    index = CatalogIndex()
    odd = record("odd")
    assert odd.original is not None
    odd.original["sha256"] = "z" * 64
    put(index, odd, record("after"))
    assert len(index) == 2
    assert index.with_sha256(sha_of(record("after"))) == ["after"]


def test_a_malformed_phash_leaves_the_other_hashes_of_its_batch_indexed() -> None:
    index = CatalogIndex()
    base = 0xF0F0F0F0F0F0F0F0
    put(
        index,
        hashed("a", hx(base)),
        hashed("bad", "not-a-phash"),
        hashed("short", "0123"),
        hashed("c", hx(base ^ 1)),
    )
    assert index.similar(hx(base), 8) == [Match("a", 0), Match("c", 1)]
    assert index.phash_of("bad") is None
    assert index.phash_of("short") is None
    assert index.phash_of("c") == hx(base ^ 1)
    # The images themselves are still known; only their hashes are left out.
    assert len(index) == 4
    assert index.stats()["near_duplicate_index"] == {"hashes": 2}


@pytest.mark.parametrize("then", ["tombstone", "no phash"])
def test_a_later_record_of_the_same_image_in_one_batch_wins_for_its_hash(then: str) -> None:
    index = CatalogIndex()
    first = record("a")
    later: bytes | None = None
    if then == "no phash":
        later = encode(record("a", status="processing", original=None))
    index.apply_many([(b"a", encode(first)), (b"a", later)])
    assert index.phash_of("a") is None
    assert index.similar(phash_of(first), 8) == []
    assert index.stats()["near_duplicate_index"] == {"hashes": 0}
