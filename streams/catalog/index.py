"""What every catalog replica knows of the whole fleet: content hashes, perceptual hashes and
counts, kept up to date one metadata record at a time.

The faust table holds full records, split across replicas by partition. Questions that span
every image (is this content already done? which images look alike? how many failed?) are
answered from this index instead, which each replica builds from the whole topic. It keeps
a few small fields per image, never the record, and no I/O happens here: `apply` takes the
topic's key and value bytes, and the feed that calls it owns the consumer.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from streams.catalog.near_dup import Match, NearDupIndex

# Bucket edges of the distributions /v1/stats reports (a value v counts in the first bucket
# whose upper edge is >= v; the last bucket is open).
QUALITY_EDGES: dict[str, tuple[float, ...]] = {
    "resolution_score": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "sharpness": (10, 50, 100, 250, 500, 1000, 2500, 5000),
    "noise": (1, 2, 3, 5, 8, 12, 20),
}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
SECONDS_EDGES = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Stage(msgspec.Struct):
    outcome: str = "ok"
    seconds: float = 0.0


class _Category(msgspec.Struct):
    name: str = "other"


class _Slim(msgspec.Struct):
    """The fields of an ImageRecord the index reads; the rest is skipped while decoding."""

    image_id: str
    status: str = "processing"
    route: list[str] = msgspec.field(default_factory=list)
    stages: dict[str, _Stage] = msgspec.field(default_factory=dict)
    original: dict[str, Any] | None = None
    quality: dict[str, float] | None = None
    category: _Category | None = None
    fingerprint: str | None = None
    duplicate_of: str | None = None


_decode = msgspec.json.Decoder(_Slim).decode


@dataclass(frozen=True, slots=True)
class _Entry:
    """One image's contribution to the counts, kept to take it back when the image changes."""

    status: str
    category: str | None
    route: str
    stages: tuple[tuple[str, str], ...]
    buckets: tuple[tuple[str, int], ...]
    seconds: float | None  # processing time, once done
    sha: bytes | None
    done_key: tuple[bytes, str] | None  # (sha256, fingerprint) of finished original content


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    return bisect.bisect_left(edges, value)


def _label(index: int, edges: tuple[float, ...]) -> str:
    return f"<={edges[index]:g}" if index < len(edges) else f">{edges[-1]:g}"


def _entry(slim: _Slim) -> tuple[_Entry, str | None]:
    original = slim.original or {}
    sha_hex = original.get("sha256")
    # A record is data from the topic: a malformed hash is absent, never an exception.
    sha = (
        bytes.fromhex(sha_hex) if isinstance(sha_hex, str) and _SHA256.fullmatch(sha_hex) else None
    )
    quality = slim.quality or {}
    buckets = tuple(
        (name, _bucket(float(quality[name]), edges))
        for name, edges in QUALITY_EDGES.items()
        if isinstance(quality.get(name), int | float)
    )
    done = slim.status == "done"
    seconds = sum(s.seconds for s in slim.stages.values()) if done else None
    # Only an image that was processed itself answers for its content: a duplicate points
    # at one that was.
    canonical = done and sha is not None and slim.fingerprint and not slim.duplicate_of
    phash = original.get("phash")
    entry = _Entry(
        status=slim.status,
        category=slim.category.name if slim.category else None,
        route=">".join(slim.route),
        stages=tuple((name, state.outcome) for name, state in slim.stages.items()),
        buckets=buckets,
        seconds=seconds,
        sha=sha,
        done_key=(sha, slim.fingerprint) if canonical else None,  # type: ignore[arg-type]
    )
    return entry, phash if isinstance(phash, str) else None


class CatalogIndex:
    """Secondary indexes and counts over every image; one writer (the feed), many readers."""

    def __init__(self, near_dup_distance: int = 8) -> None:
        self.near = NearDupIndex(max_distance=max(near_dup_distance, 8))
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._by_sha: dict[bytes, set[str]] = {}
        self._done: dict[tuple[bytes, str], str] = {}  # the first finished image wins
        self._phash: dict[str, str] = {}
        self._status: Counter[str] = Counter()
        self._category: Counter[str] = Counter()
        self._route: Counter[str] = Counter()
        self._stages: Counter[tuple[str, str]] = Counter()
        self._quality: Counter[tuple[str, int]] = Counter()
        self._seconds: Counter[int] = Counter()
        self._seconds_sum = 0.0
        self.rejected_values = 0  # values that did not decode as records

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the metadata topic: a new state of its image, or (None) a tombstone."""
        self.apply_many([(key, value)])

    def apply_many(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        # The hashes to index, by image: a later record of the same image in this batch
        # replaces (or, without a hash, withdraws) an earlier one.
        added: dict[str, str] = {}
        with self._lock:
            for key, value in records:
                if key is None:
                    continue
                image_id = key.decode("utf-8", "replace")
                self._forget(image_id)
                added.pop(image_id, None)
                if value is None:
                    continue
                try:
                    slim = _decode(value)
                except msgspec.DecodeError:
                    self.rejected_values += 1
                    continue
                entry, phash = _entry(slim)
                self._remember(image_id, entry)
                if phash:
                    self._phash[image_id] = phash
                    added[image_id] = phash
        if added:
            try:
                self.near.add_many(list(added.items()))
            except ValueError:  # one malformed hash: index the others one by one
                for image_id, phash in added.items():
                    try:
                        self.near.add(image_id, phash)
                    except ValueError:
                        self._phash.pop(image_id, None)

    def _forget(self, image_id: str) -> None:
        old = self._entries.pop(image_id, None)
        if old is None:
            return
        self._count(old, -1)
        if old.sha is not None:
            ids = self._by_sha.get(old.sha)
            if ids is not None:
                ids.discard(image_id)
                if not ids:
                    del self._by_sha[old.sha]
        if old.done_key is not None and self._done.get(old.done_key) == image_id:
            del self._done[old.done_key]
            # Another finished image of the same content and settings answers from now on.
            others = self._by_sha.get(old.done_key[0], ())
            heirs = [i for i in others if self._entries[i].done_key == old.done_key]
            if heirs:
                self._done[old.done_key] = min(heirs)
        if self._phash.pop(image_id, None) is not None:
            self.near.remove(image_id)

    def _remember(self, image_id: str, entry: _Entry) -> None:
        self._entries[image_id] = entry
        self._count(entry, 1)
        if entry.sha is not None:
            self._by_sha.setdefault(entry.sha, set()).add(image_id)
        if entry.done_key is not None:
            self._done.setdefault(entry.done_key, image_id)

    def _count(self, entry: _Entry, sign: int) -> None:
        self._status[entry.status] += sign
        if entry.category:
            self._category[entry.category] += sign
        if entry.route:
            self._route[entry.route] += sign
        for stage in entry.stages:
            self._stages[stage] += sign
        for bucket in entry.buckets:
            self._quality[bucket] += sign
        if entry.seconds is not None:
            self._seconds[_bucket(entry.seconds, SECONDS_EDGES)] += sign
            self._seconds_sum += sign * entry.seconds

    # --- questions ---------------------------------------------------------------------

    def done_with(self, sha256: str, fingerprint: str) -> str | None:
        """The finished image of this content under these settings, if there is one."""
        try:
            sha = bytes.fromhex(sha256)
        except ValueError:
            return None
        with self._lock:
            return self._done.get((sha, fingerprint))

    def with_sha256(self, sha256: str) -> list[str]:
        try:
            sha = bytes.fromhex(sha256)
        except ValueError:
            return []
        with self._lock:
            return sorted(self._by_sha.get(sha, ()))

    def phash_of(self, image_id: str) -> str | None:
        with self._lock:
            return self._phash.get(image_id)

    def similar(
        self, phash: str, max_distance: int, limit: int = 20, exclude: str | None = None
    ) -> list[Match]:
        return self.near.query(phash, max_distance, limit=limit, exclude=exclude)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            status = {k: v for k, v in self._status.items() if v}
            finished = status.get("done", 0) + status.get("rejected", 0) + status.get("failed", 0)
            stages: dict[str, dict[str, int]] = {}
            for (stage, outcome), n in sorted(self._stages.items()):
                if n:
                    stages.setdefault(stage, {})[outcome] = n
            quality: dict[str, dict[str, int]] = {}
            for (name, index), n in sorted(self._quality.items()):
                if n:
                    quality.setdefault(name, {})[_label(index, QUALITY_EDGES[name])] = n
            done = sum(self._seconds.values())
            return {
                "images": len(self._entries),
                "by_status": status,
                "by_stage": stages,
                "by_category": {k: v for k, v in sorted(self._category.items()) if v},
                "by_route": {k: v for k, v in sorted(self._route.items()) if v},
                "quality": quality,
                # Of the images that finished, the share that came out done.
                "success_rate": round(status.get("done", 0) / finished, 4) if finished else None,
                "seconds_per_image": {
                    "mean": round(self._seconds_sum / done, 3) if done else None,
                    "histogram": {
                        _label(i, SECONDS_EDGES): n for i, n in sorted(self._seconds.items()) if n
                    },
                },
                "near_duplicate_index": {"hashes": len(self.near)},
            }
