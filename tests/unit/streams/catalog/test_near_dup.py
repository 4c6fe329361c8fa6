from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streams.catalog import near_dup
from streams.catalog.near_dup import Match, NearDupIndex, parse_phash


def hx(code: int) -> str:
    return f"{code:016x}"


def flip(code: int, bits: list[int]) -> int:
    for bit in bits:
        code ^= 1 << bit
    return code


def brute(codes: dict[str, int], query: int, distance: int) -> set[tuple[str, int]]:
    """Every (id, distance) within distance, by a numpy scan of all hashes."""
    ids = list(codes)
    values = np.array([codes[i] for i in ids], dtype=np.uint64)
    dist = np.bitwise_count(values ^ np.uint64(query))
    return {(ids[r], int(dist[r])) for r in np.flatnonzero(dist <= distance)}


def found(index: NearDupIndex, query: int, distance: int) -> set[tuple[str, int]]:
    matches = index.query(hx(query), max_distance=distance, limit=len(index) + 1)
    return {(m.image_id, m.distance) for m in matches}


def some_hashes(rng: np.random.Generator, n: int) -> list[int]:
    """Half uniform, half near 50 centres (0 to 10 bits away), as real pHashes cluster."""
    uniform = rng.integers(0, 2**64, size=n // 2, dtype=np.uint64).tolist()
    centres = rng.integers(0, 2**64, size=50, dtype=np.uint64).tolist()
    near = [
        flip(int(centres[i % 50]), rng.choice(64, int(rng.integers(0, 11)), replace=False).tolist())
        for i in range(n - n // 2)
    ]
    return [int(c) for c in uniform] + near


def test_an_identical_hash_is_at_distance_zero() -> None:
    index = NearDupIndex()
    index.add("a", "d1c4f0e8b2a39657")
    assert index.query("d1c4f0e8b2a39657") == [Match("a", 0)]
    assert index.query("D1C4F0E8B2A39657") == [Match("a", 0)]  # hex digits in either case
    assert len(index) == 1


@pytest.mark.parametrize("distance", range(1, 10))
def test_a_hash_some_bits_away_is_found_at_that_distance_up_to_the_maximum(distance: int) -> None:
    rng = np.random.default_rng(distance)
    base = int(rng.integers(0, 2**64, dtype=np.uint64))
    index = NearDupIndex(max_distance=8)
    index.add("near", hx(flip(base, rng.choice(64, distance, replace=False).tolist())))
    expected = [Match("near", distance)] if distance <= 8 else []
    assert index.query(hx(base)) == expected
    assert index.query(hx(base), max_distance=distance - 1) == []


@pytest.mark.parametrize("max_distance", [8, 4, 12, 20])
def test_answers_are_those_of_a_brute_force_scan(
    max_distance: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small merge threshold, so that the hashes are split between merged arrays and delta.
    monkeypatch.setattr(near_dup, "_MIN_DELTA", 512)
    rng = np.random.default_rng(max_distance)
    n = 20_000 if max_distance == 8 else 4_000
    codes = {f"img-{i}": code for i, code in enumerate(some_hashes(rng, n))}
    index = NearDupIndex(max_distance=max_distance)
    for image_id, code in codes.items():
        index.add(image_id, hx(code))

    def check(queries: int) -> None:
        picks = rng.choice(list(codes.values()), queries).tolist()
        for i, code in enumerate(picks):
            query = flip(int(code), rng.choice(64, i % 4, replace=False).tolist())
            distance = [0, 2, max_distance // 2, max_distance][i % 4]
            assert found(index, query, distance) == brute(codes, query, distance)

    check(200 if max_distance == 8 else 40)
    # Churn: removals, new hashes for old ids, new ids taking removed rows.
    ids = list(codes)
    for i in rng.choice(len(ids), n // 10, replace=False).tolist():
        index.remove(ids[i])
        del codes[ids[i]]
    for image_id in rng.choice(list(codes), n // 10, replace=False).tolist():
        codes[image_id] = int(rng.integers(0, 2**64, dtype=np.uint64))
        index.add(image_id, hx(codes[image_id]))
    for i, code in enumerate(some_hashes(rng, n // 5)):
        codes[f"new-{i}"] = code
        index.add(f"new-{i}", hx(code))
    assert len(index) == len(codes)
    check(100 if max_distance == 8 else 40)


def test_adding_an_image_again_replaces_its_hash() -> None:
    index = NearDupIndex()
    index.add("a", "0000000000000000")
    index.add("a", "ffffffffffffffff")
    assert index.query("0000000000000000") == []
    assert index.query("ffffffffffffffff") == [Match("a", 0)]
    assert len(index) == 1


def test_a_removed_image_is_no_longer_found() -> None:
    index = NearDupIndex()
    index.add_many([("a", "00000000000000ff"), ("b", "00000000000000fe")])
    index.remove("a")
    index.remove("a")
    index.remove("never-added")
    assert index.query("00000000000000ff") == [Match("b", 1)]
    assert len(index) == 1
    index.add("a", "00000000000000ff")
    assert index.query("00000000000000ff") == [Match("a", 0), Match("b", 1)]


def test_a_removed_row_taken_by_another_id_after_a_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(near_dup, "_MIN_DELTA", 4)
    index = NearDupIndex()
    codes = np.random.default_rng(7).integers(0, 2**64, size=20, dtype=np.uint64).tolist()
    index.add_many([(f"x{i}", hx(int(code))) for i, code in enumerate(codes)])  # then merged
    index.remove("x3")
    index.add("y", hx(int(codes[3]) ^ 1))  # takes x3's row; the merged entries of x3 are stale
    assert index.query(hx(int(codes[3]))) == [Match("y", 1)]
    index.remove("x3")  # still a no-op: x3's stale entry must not lead to y's row
    assert len(index) == 20
    assert index.query(hx(int(codes[3]) ^ 1), max_distance=0) == [Match("y", 0)]


def test_exclude_leaves_out_the_image_itself() -> None:
    index = NearDupIndex()
    index.add_many([("self", "0f0f0f0f0f0f0f0f"), ("copy", "0f0f0f0f0f0f0f0e")])
    assert index.query("0f0f0f0f0f0f0f0f", exclude="self") == [Match("copy", 1)]
    assert index.query("0f0f0f0f0f0f0f0f", limit=1, exclude="self") == [Match("copy", 1)]


def test_limit_keeps_the_nearest_ordered_by_distance_then_id() -> None:
    index = NearDupIndex()
    index.add_many([(name, hx(flip(0, list(range(d))))) for name, d in [
        ("e", 3), ("d", 1), ("c", 1), ("b", 0), ("a", 2), ("z", 1),
    ]])  # fmt: skip
    assert [(m.image_id, m.distance) for m in index.query(hx(0))] == [
        ("b", 0), ("c", 1), ("d", 1), ("z", 1), ("a", 2), ("e", 3),
    ]  # fmt: skip
    assert index.query(hx(0), limit=3) == [Match("b", 0), Match("c", 1), Match("d", 1)]
    assert index.query(hx(0), limit=0) == []


def test_distances_beyond_the_index_are_refused() -> None:
    index = NearDupIndex(max_distance=6)
    with pytest.raises(ValueError, match="max_distance"):
        index.query(hx(0), max_distance=7)
    with pytest.raises(ValueError, match="max_distance"):
        index.query(hx(0), max_distance=-1)
    with pytest.raises(ValueError, match="limit"):
        index.query(hx(0), limit=-1)
    with pytest.raises(ValueError, match="max_distance"):
        NearDupIndex(max_distance=65)


@pytest.mark.parametrize(
    "text",
    ["", "0123", "0123456789abcdef0", "0x0123456789abcd", "0123_56789abcdef", "g123456789abcdef",
     " 123456789abcdef", "0123456789abcde\n", "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦"],
)  # fmt: skip
def test_a_malformed_hash_is_a_value_error(text: str) -> None:
    index = NearDupIndex()
    with pytest.raises(ValueError, match="16 hex digits"):
        index.add("a", text)
    with pytest.raises(ValueError, match="16 hex digits"):
        index.query(text)
    assert len(index) == 0


def test_a_malformed_id_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="image id"):
        NearDupIndex().add("", hx(1))
    assert parse_phash("ffffffffffffffff") == 2**64 - 1


def test_popcount_without_bitwise_count_agrees() -> None:
    values = np.random.default_rng(0).integers(0, 2**64, size=1000, dtype=np.uint64)
    assert np.array_equal(near_dup._popcount_table(values), np.bitwise_count(values))


def test_memory_is_measured_from_the_arrays() -> None:
    index = NearDupIndex()
    empty = index.memory_bytes()
    index.add_many([(f"sha256-{i:040x}", hx(i)) for i in range(10_000)])
    # At least the hash, the id bytes and three chunk keys and rows per image.
    assert index.memory_bytes() - empty >= 10_000 * (8 + 47 + 3 * 8)


def test_one_writer_and_many_readers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(near_dup, "_MIN_DELTA", 64)  # many merges while the readers read
    index = NearDupIndex()
    index.add_many([(f"keep-{i}", hx(i << 32)) for i in range(1000)])
    errors: list[BaseException] = []
    reads: list[int] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(2000):
                index.add(f"tmp-{i % 500}", hx((i % 1000) << 32 | i))
                if i % 3 == 0:
                    index.remove(f"tmp-{(i * 7) % 500}")
        except BaseException as exc:  # any failure fails the test
            errors.append(exc)
        finally:
            done.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set():
                i = int(rng.integers(0, 1000))
                matches = index.query(hx(i << 32), max_distance=0)
                assert Match(f"keep-{i}", 0) in matches
                reads.append(i)
                time.sleep(0.0002)  # the writer gets the GIL too: the test stays short
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(reads) > 10
    expected: dict[str, int] = {}  # the writer's calls replayed on a dict
    last: dict[str, int] = {}
    for i in range(2000):
        expected[f"tmp-{i % 500}"] = last[f"tmp-{i % 500}"] = (i % 1000) << 32 | i
        if i % 3 == 0:
            expected.pop(f"tmp-{(i * 7) % 500}", None)
    assert len(index) == 1000 + len(expected)
    for image_id, code in last.items():
        ids = {m.image_id for m in index.query(hx(code), max_distance=0, limit=100)}
        assert (image_id in ids) == (image_id in expected)


def test_the_bytes_of_removed_ids_are_dropped_at_a_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(near_dup, "_MIN_DELTA", 16)
    index = NearDupIndex()
    names = [f"{i:04d}-" + "x" * 100 for i in range(2000)]
    index.add_many([(name, hx(i << 20)) for i, name in enumerate(names)])
    for name in names[:1500]:
        index.remove(name)
    assert index._blob_dead < 1500 * 105  # compacted on the way
    for i, name in enumerate(names):
        assert index.query(hx(i << 20), max_distance=0) == ([Match(name, 0)] if i >= 1500 else [])
    for name in names[1500:]:
        index.remove(name)  # every id still found by its entry
    assert len(index) == 0
    index.add("again", hx(5))
    assert index.query(hx(5)) == [Match("again", 0)]


def test_a_bulk_load_stopped_by_a_bad_hash_keeps_and_merges_what_came_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(near_dup, "_MIN_DELTA", 16)
    index = NearDupIndex()
    with pytest.raises(ValueError, match="16 hex digits"):
        index.add_many([*((f"a{i}", hx(i << 8)) for i in range(100)), ("bad", "nope")])
    assert len(index) == 100
    assert index._delta_n == 0
    assert index.query(hx(7 << 8), max_distance=0) == [Match("a7", 0)]
