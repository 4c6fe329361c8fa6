"""Near-duplicate lookup over the fleet's 64-bit perceptual hashes, by multi-index hashing.

A hash is cut into m chunks. Two hashes within Hamming distance d differ by at most d bits in
all, so in at least one chunk by at most d // m bits (pigeonhole). Per chunk the index keeps
every row's chunk value in a sorted array; a query looks up every value within that radius of
its own chunk values (a few hundred binary searches) and checks the candidates with
popcount(xor). Answers are exact, never approximate.

Writes go to a delta of rows that every query checks in full; once the delta (plus the rows
removed since) reaches 1/32 of the index it is merged into freshly sorted arrays. An add then
costs microseconds amortized, and a query checks at most 1/32 of the rows one by one.

The image ids, not the hashes, are what costs memory: a million `sha256-...` ids as Python
strings keyed in a dict take about 160 MB, more than the whole budget. They are kept as bytes
in one buffer instead, found through a sorted array of their Python hashes; only the ids added
since the last merge sit in a dict.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np
from numpy.typing import NDArray

_HEX = re.compile(r"[0-9a-fA-F]{16}")
_PLANNED_SIZE = 1 << 20  # the index size the chunking is tuned for
_MAX_PROBES = 1 << 14  # the most lookups a query makes; where more are needed it checks every row
_MIN_DELTA = 4096  # small indexes merge this often at most: a merge re-sorts every row
_MAX_ID_BYTES = 0xFFFF  # id lengths are kept as uint16

Rows = NDArray[np.int32]
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def parse_phash(text: str) -> int:
    """The 64-bit value of a hash as `str(imagehash.phash(...))` writes it: 16 hex digits."""
    if not isinstance(text, str) or _HEX.fullmatch(text) is None:
        raise ValueError(f"a 64-bit perceptual hash is 16 hex digits, not {text!r}")
    return int(text, 16)


def _popcount_table(values: NDArray[np.uint64]) -> NDArray[np.uint8]:
    # numpy < 2 has no bitwise_count; pyproject still admits numpy 1.26.
    bits = _BYTE_BITS[values.view(np.uint8).reshape(-1, 8)]
    counts: NDArray[np.uint8] = bits.sum(axis=1, dtype=np.uint8)
    return counts


def popcount(values: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """The number of set bits of every value."""
    if hasattr(np, "bitwise_count"):
        counts: NDArray[np.uint8] = np.bitwise_count(values)
        return counts
    return _popcount_table(values)


@dataclass(frozen=True)
class Match:
    """An indexed image near the hash asked about, and how many bits apart."""

    image_id: str
    distance: int


@dataclass(frozen=True)
class _Chunk:
    shift: int
    bits: int
    masks: NDArray[np.uint32]  # every xor of at most `radius` bits, fewest bits first
    upto: tuple[int, ...]  # upto[r]: how many masks flip at most r bits


def _plan(max_distance: int) -> tuple[_Chunk, ...] | None:
    """The chunks that make a query at max_distance cheapest, or None where a scan is."""
    best: tuple[float, list[int]] | None = None
    for m in range(2, 17):
        widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        lookups = [sum(comb(w, k) for k in range(max_distance // m + 1)) for w in widths]
        # Cost: the lookups plus the candidates they bring at the planned size.
        cost = sum(n * (1 + _PLANNED_SIZE / 2**w) for n, w in zip(lookups, widths, strict=True))
        if sum(lookups) <= _MAX_PROBES and (best is None or cost < best[0]):
            best = (cost, widths)
    if best is None or best[0] > _PLANNED_SIZE / 8:
        return None
    widths = best[1]
    radius = max_distance // len(widths)
    chunks, shift = [], 0
    for w in widths:
        masks = [0]
        upto = [1]
        for k in range(1, radius + 1):
            masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(w), k)]
            upto.append(len(masks))
        chunks.append(_Chunk(shift, w, np.array(masks, dtype=np.uint32), tuple(upto)))
        shift += w
    return tuple(chunks)


@dataclass(frozen=True)
class _Merged:
    """The sorted arrays of the last merge; replaced whole, never changed."""

    keys: tuple[NDArray[np.uint32], ...]  # per chunk: the chunk values, sorted
    rows: tuple[Rows, ...]  # per chunk: the row of each key
    id_hash: NDArray[np.int64]  # hash() of each id, sorted
    id_rows: Rows


def _ranges(starts: NDArray[np.intp], counts: NDArray[np.intp]) -> NDArray[np.intp]:
    """Every index of every [start, start + count) range, concatenated."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    indices: NDArray[np.intp] = np.arange(total) + np.repeat(starts - (ends - counts), counts)
    return indices


class NearDupIndex:
    """64-bit perceptual hashes by image id; thread-safe for one writer and many readers."""

    def __init__(self, max_distance: int = 8) -> None:
        if not 0 <= max_distance <= 64:
            raise ValueError(f"max_distance is 0 to 64, not {max_distance}")
        self._max = max_distance
        self._chunks = _plan(max_distance)
        # Readers hold _lock for a whole query, so each sees one state; the writer holds it only
        # while it changes something. _write keeps a second writer out of a merge in progress.
        self._lock = threading.Lock()
        self._write = threading.Lock()
        self._size = 0  # rows in use or freed, below _codes.size
        self._count = 0
        self._codes = np.zeros(0, dtype=np.uint64)
        self._live = np.zeros(0, dtype=np.bool_)
        self._id_hash = np.zeros(0, dtype=np.int64)
        self._id_start = np.zeros(0, dtype=np.int64)
        self._id_len = np.zeros(0, dtype=np.uint16)
        self._free = array("q")  # removed rows, taken again before new ones
        self._blob = np.zeros(0, dtype=np.uint8)  # every id's UTF-8 bytes
        self._blob_used = 0
        self._blob_dead = 0  # bytes of removed ids, dropped at a merge once they are many
        self._delta = np.zeros(0, dtype=np.int32)  # rows whose hash changed since the merge
        self._delta_n = 0
        self._removed = 0  # rows removed since the merge: still among its candidates
        self._recent: dict[str, int] = {}  # ids added since the merge
        empty = tuple(np.zeros(0, dtype=np.uint32) for _ in self._chunks or ())
        rows = tuple(np.zeros(0, dtype=np.int32) for _ in self._chunks or ())
        self._merged = _Merged(empty, rows, np.zeros(0, np.int64), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return self._count

    @property
    def max_distance(self) -> int:
        """The largest distance a query may ask for: what the chunking was planned for."""
        return self._max

    def add(self, image_id: str, phash_hex: str) -> None:
        """Index an image's hash, replacing the one it had."""
        self.add_many([(image_id, phash_hex)])

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        """add() for each (image_id, phash_hex), merging at most once, at the end."""
        with self._write:
            if isinstance(items, list | tuple):  # a bulk load: room for all at once, exactly
                text = sum(len(i) for i, _ in items if isinstance(i, str))
                self._reserve(self._size + len(items), self._blob_used + text)
            try:
                for image_id, phash_hex in items:
                    code, raw = parse_phash(phash_hex), _encode_id(image_id)
                    self._reserve(self._size + 1, self._blob_used + len(raw))
                    with self._lock:
                        row = self._find(image_id)
                        if row is None:
                            self._append(image_id, raw, code)
                        elif int(self._codes[row]) != code:
                            self._codes[row] = code
                            self._push_delta(row)
            finally:  # a bad item stops the load; what came before it is kept, and merged
                self._merge_if_due()

    def remove(self, image_id: str) -> None:
        """Forget an image; an id the index does not hold is no error."""
        with self._write:
            with self._lock:
                row = self._find(image_id)
                if row is None:
                    return
                self._live[row] = False
                self._free.append(row)
                self._recent.pop(image_id, None)
                self._count -= 1
                self._removed += 1
                self._blob_dead += int(self._id_len[row])
            self._merge_if_due()

    def query(
        self,
        phash_hex: str,
        max_distance: int | None = None,
        limit: int = 20,
        exclude: str | None = None,
    ) -> list[Match]:
        """The images within max_distance of a hash, nearest first, then by id."""
        code = parse_phash(phash_hex)
        distance = self._max if max_distance is None else max_distance
        if not 0 <= distance <= self._max:
            raise ValueError(f"max_distance is 0 to the index's {self._max}, not {distance}")
        if limit < 0:
            raise ValueError(f"limit is 0 or more, not {limit}")
        if limit == 0:
            return []
        with self._lock:
            rows = self._candidates(code, distance)
            dist = popcount(self._codes[rows] ^ np.uint64(code))
            hit = (dist <= distance) & self._live[rows]
            rows, first = np.unique(rows[hit], return_index=True)  # a row may come many times
            dist = dist[hit][first]
            # Only the nearest are named: ties at the cut are kept so that ids can break them.
            wanted = limit + (exclude is not None)
            if rows.size > wanted:
                keep = dist <= np.partition(dist, wanted - 1)[wanted - 1]
                rows, dist = rows[keep], dist[keep]
            found = sorted(zip(dist.tolist(), self._ids_at(rows), strict=True))
        nearest = [(d, i) for d, i in found if i != exclude][:limit]
        return [Match(i, d) for d, i in nearest]

    def memory_bytes(self) -> int:
        """The bytes the index holds: its arrays, and the ids added since the last merge."""
        with self._lock:
            merged = self._merged
            arrays = [self._codes, self._live, self._id_hash, self._id_start, self._id_len]
            arrays += [self._blob, self._delta, merged.id_hash, merged.id_rows]
            arrays += [*merged.keys, *merged.rows, *(c.masks for c in self._chunks or ())]
            total = sum(a.nbytes for a in arrays) + self._free.itemsize * len(self._free)
            total += sys.getsizeof(self._recent) + sum(map(sys.getsizeof, self._recent))
        return total

    # -- reading (with _lock held) ---------------------------------------------------------

    def _candidates(self, code: int, distance: int) -> Rows:
        if self._chunks is None:
            return np.arange(self._size, dtype=np.int32)
        merged, radius = self._merged, distance // len(self._chunks)
        parts = [self._delta[: self._delta_n]]
        for chunk, keys, rows in zip(self._chunks, merged.keys, merged.rows, strict=True):
            value = (code >> chunk.shift) & ((1 << chunk.bits) - 1)
            probes = chunk.masks[: chunk.upto[radius]] ^ np.uint32(value)
            probes.sort()  # searchsorted narrows each search by the last when keys ascend: -30%
            lo = np.searchsorted(keys, probes, "left")
            counts = np.searchsorted(keys, probes, "right") - lo
            parts.append(rows[_ranges(lo, counts)])
        return np.concatenate(parts)

    def _ids_at(self, rows: Rows) -> list[str]:
        starts, lengths = self._id_start[rows].tolist(), self._id_len[rows].tolist()
        with self._blob.data as blob:
            return [str(blob[s : s + n], "utf-8") for s, n in zip(starts, lengths, strict=True)]

    def _id_at(self, row: int) -> str:
        start, length = int(self._id_start[row]), int(self._id_len[row])
        return str(self._blob.data[start : start + length], "utf-8")

    def _find(self, image_id: str) -> int | None:
        """The live row of an id, or None."""
        row = self._recent.get(image_id)
        if row is not None:
            return row
        merged, key = self._merged, hash(image_id)
        at = int(np.searchsorted(merged.id_hash, key))
        # Rows are checked because the merge's entries go stale: the row may have been
        # removed, or taken again by another id. Equal hashes of different ids are compared.
        while at < merged.id_hash.size and int(merged.id_hash[at]) == key:
            row = int(merged.id_rows[at])
            if self._live[row] and int(self._id_hash[row]) == key and self._id_at(row) == image_id:
                return row
            at += 1
        return None

    # -- writing (by the one writer) -------------------------------------------------------

    def _reserve(self, rows: int, blob_bytes: int) -> None:
        """Room for rows and id bytes, a quarter more at least so that appends stay cheap."""
        grown: dict[str, NDArray[Any]] = {}
        if rows > self._codes.size:
            size = max(rows, self._codes.size * 5 // 4, 1024)
            for name in ("_codes", "_live", "_id_hash", "_id_start", "_id_len"):
                old = getattr(self, name)
                grown[name] = np.zeros(size, dtype=old.dtype)
                grown[name][: self._size] = old[: self._size]
        if blob_bytes > self._blob.size:
            size = max(blob_bytes, self._blob.size * 5 // 4, 1 << 16)
            grown["_blob"] = np.zeros(size, dtype=np.uint8)
            grown["_blob"][: self._blob_used] = self._blob[: self._blob_used]
        if grown:
            # Copied without _lock (tens of ms at a million rows) while queries go on: only
            # this writer changes the arrays. Swapped in under it.
            with self._lock:
                for name, array_ in grown.items():
                    setattr(self, name, array_)

    def _append(self, image_id: str, raw: bytes, code: int) -> None:
        if self._free:
            row = self._free.pop()
        else:
            row, self._size = self._size, self._size + 1
        self._blob[self._blob_used : self._blob_used + len(raw)] = np.frombuffer(raw, np.uint8)
        self._id_start[row], self._id_len[row] = self._blob_used, len(raw)
        self._blob_used += len(raw)
        self._codes[row], self._live[row], self._id_hash[row] = code, True, hash(image_id)
        self._recent[image_id] = row
        self._count += 1
        self._push_delta(row)

    def _push_delta(self, row: int) -> None:
        if self._delta_n == self._delta.size:
            delta = np.zeros(max(self._delta.size * 2, 1024), dtype=np.int32)
            delta[: self._delta_n] = self._delta[: self._delta_n]
            self._delta = delta
        self._delta[self._delta_n] = row
        self._delta_n += 1

    def _merge_if_due(self) -> None:
        if self._delta_n + self._removed > max(_MIN_DELTA, self._count // 32):
            self._merge()

    def _merge(self) -> None:
        # Built without _lock, so queries go on meanwhile: only this writer changes the rows.
        live = np.flatnonzero(self._live[: self._size]).astype(np.int32)
        codes = self._codes[live]
        keys, rows = [], []
        for chunk in self._chunks or ():
            mask = np.uint64((1 << chunk.bits) - 1)
            values = ((codes >> np.uint64(chunk.shift)) & mask).astype(np.uint32)
            order = np.argsort(values)
            keys.append(values[order])
            rows.append(live[order])
        order = np.argsort(self._id_hash[live])
        merged = _Merged(tuple(keys), tuple(rows), self._id_hash[live][order], live[order])
        compacted = None
        if self._blob_dead > max(self._blob_used // 4, 1 << 16):
            compacted = self._compacted_blob(live)
        with self._lock:
            self._merged = merged
            self._delta_n, self._removed = 0, 0
            self._recent.clear()
            if self._delta.size > 2 * max(_MIN_DELTA, self._count // 32):
                self._delta = np.zeros(0, dtype=np.int32)  # a bulk load's delta, no longer needed
            if compacted is not None:
                self._blob, self._id_start[live], self._blob_used = compacted
                self._blob_dead = 0

    def _compacted_blob(self, live: Rows) -> tuple[NDArray[np.uint8], NDArray[np.int64], int]:
        """The ids of the live rows alone, one after another, and where each now starts."""
        lengths = self._id_len[live].astype(np.int64)
        starts = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        blob = np.zeros(total + total // 8 + (1 << 16), dtype=np.uint8)
        block = 1 << 16  # rows at a time: the index of each byte moved takes 8 bytes
        for at in range(0, live.size, block):
            moved = self._blob[
                _ranges(self._id_start[live[at : at + block]], lengths[at : at + block])
            ]
            blob[starts[at] : starts[at] + moved.size] = moved
        return blob, starts, total


def _encode_id(image_id: str) -> bytes:
    if not isinstance(image_id, str) or not image_id:
        raise ValueError(f"an image id is a non-empty string, not {image_id!r}")
    raw = image_id.encode()
    if len(raw) > _MAX_ID_BYTES:
        raise ValueError(f"an image id is at most {_MAX_ID_BYTES} bytes")
    return raw
