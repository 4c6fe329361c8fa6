"""The console's view of the index: every image in the order it last changed, with the few
fields a gallery filters on, paged by a cursor.

`ListedIndex` is a CatalogIndex that also keeps, per image, a sequence number (bumped at
each new state) and a row of small fields. A page walks sequence numbers down from the
cursor and stops after `SCAN_BUDGET` steps whatever it found, so a request costs the same at
a thousand images as at a million: a filter that matches little answers short pages with a
cursor to go on from, never a scan of the whole fleet.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from streams.catalog.index import CatalogIndex

SCAN_BUDGET = 50_000  # sequence numbers one page may step over
MAX_LIMIT = 200
# The statuses whose last error is the reason the image went to the dead-letter topic.
_DEAD = frozenset({"rejected", "failed"})


class _Error(msgspec.Struct):
    stage: str = "?"
    reason_class: str = "unknown"


class _Ref(msgspec.Struct):
    bucket: str
    key: str


class _Variant(msgspec.Struct):
    variant: str = ""
    width: int = 0
    object: _Ref | None = None


class _Stage(msgspec.Struct):
    outcome: str = "ok"


class _Category(msgspec.Struct):
    name: str = "other"


class _Near(msgspec.Struct):
    image_id: str = ""


class _Slim(msgspec.Struct):
    """The fields of an ImageRecord the listing reads; the rest is skipped while decoding."""

    image_id: str
    status: str = "processing"
    updated_at: str = ""
    route: list[str] = msgspec.field(default_factory=list)
    stages: dict[str, _Stage] = msgspec.field(default_factory=dict)
    original: dict[str, Any] | None = None
    category: _Category | None = None
    variants: list[_Variant] = msgspec.field(default_factory=list)
    errors: list[_Error] = msgspec.field(default_factory=list)
    duplicate_of: str | None = None
    near_duplicates: list[_Near] = msgspec.field(default_factory=list)


_decode = msgspec.json.Decoder(_Slim).decode


class _Hints(msgspec.Struct):
    title: str | None = None
    keywords: list[str] = msgspec.field(default_factory=list)


class _Submitted(msgspec.Struct):
    hints: _Hints | None = None


class _Ingested(msgspec.Struct):
    """A message of the ingest topic: a submission (hints at the top) or the envelope fetch
    sends back (hints under `submitted`); the rest is skipped while decoding."""

    hints: _Hints | None = None
    submitted: _Submitted | None = None


_decode_ingested = msgspec.json.Decoder(_Ingested).decode
MAX_WORDS_CHARS = 400  # of title and keywords kept per image, to bound the memory


def searchable(value: bytes) -> str | None:
    """The title and keywords of an ingest message, lower-cased, one per line; None when
    the message has none (or is not a submission)."""
    try:
        message = _decode_ingested(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    hints = message.hints or (message.submitted.hints if message.submitted else None)
    if hints is None:
        return None
    parts = [hints.title or "", *hints.keywords]
    text = "\n".join(p.strip() for p in parts if p and p.strip()).lower()
    return text[:MAX_WORDS_CHARS] or None


@dataclass(frozen=True, slots=True)
class Row:
    """What a gallery card and its filters need of one image."""

    seq: int
    image_id: str
    status: str
    updated_at: str
    category: str | None
    route: str
    restore: str | None  # the restore stage's outcome, if the image went through it
    duplicate: str | None  # "exact", "near" or None
    sha256: str | None
    thumb: tuple[str, str] | None  # (bucket, key) of the narrowest variant
    dead: tuple[str, str] | None  # (stage, reason class) of a rejected or failed image


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    category: str | None = None
    route: str | None = None
    restore: str | None = None
    duplicate: str | None = None  # "exact", "near", "any" or "none"
    since: str | None = None  # ISO date or time: updated_at >= since
    until: str | None = None  # updated_at < until
    # An image id prefix, a sha256 (or its prefix), or words that all appear in the
    # submission's title or keywords.
    q: str | None = None

    def admits(self, row: Row, words: str = "") -> bool:
        checks = (
            self.status is None or row.status == self.status,
            self.category is None or row.category == self.category,
            self.route is None or row.route == self.route,
            self.restore is None or row.restore == self.restore,
            self._duplicate(row),
            self.since is None or row.updated_at >= self.since,
            self.until is None or row.updated_at < self.until,
            self._query(row, words),
        )
        return all(checks)

    def _duplicate(self, row: Row) -> bool:
        if self.duplicate in (None, ""):
            return True
        if self.duplicate == "any":
            return row.duplicate is not None
        if self.duplicate == "none":
            return row.duplicate is None
        return row.duplicate == self.duplicate

    def _query(self, row: Row, words: str) -> bool:
        if not self.q:
            return True
        q = self.q.lower().strip()
        if row.image_id.lower().startswith(q) or bool(row.sha256 and row.sha256.startswith(q)):
            return True
        return bool(words) and all(term in words for term in q.split())


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    cursor: int | None  # pass back to go on; None: nothing older remains
    scanned: int
    # The numbering the rows and the cursor belong to, read with them (order_by_time may
    # renumber between two requests, never within one).
    epoch: str = ""
    stale: bool = False  # the cursor given was of another numbering: no rows were read


def _row(seq: int, image_id: str, slim: _Slim) -> Row:
    sha = (slim.original or {}).get("sha256")
    # keep_original's full-size PNG is never a thumbnail (a 50 MP photo: ~100 MB per row),
    # even on a record an earlier enhance wrote with it as the only variant.
    framed = [
        v for v in slim.variants if v.object is not None and v.width > 0 and v.variant != "original"
    ]
    thumb = min(framed, key=lambda v: v.width) if framed else None
    restore = slim.stages.get("restore")
    last = slim.errors[-1] if slim.errors else None
    dead = (last.stage, last.reason_class) if last and slim.status in _DEAD else None
    duplicate = "exact" if slim.duplicate_of else ("near" if slim.near_duplicates else None)
    return Row(
        seq=seq,
        image_id=image_id,  # the topic's key, as the CatalogIndex keys it
        status=slim.status,
        updated_at=slim.updated_at,
        category=slim.category.name if slim.category else None,
        route=">".join(slim.route),
        restore=restore.outcome if restore else None,
        duplicate=duplicate,
        sha256=sha.lower() if isinstance(sha, str) else None,
        thumb=(thumb.object.bucket, thumb.object.key) if thumb and thumb.object else None,
        dead=dead,
    )


class ListedIndex(CatalogIndex):
    """A CatalogIndex that can also list images, newest change first."""

    def __init__(self, near_dup_distance: int = 8) -> None:
        super().__init__(near_dup_distance)
        self._rows_lock = threading.Lock()
        # Sequence numbers are this index's own (the order its feed read the partitions
        # in): a cursor names the index that made it, so another replica's, or one from
        # before a restart, is refused instead of skipping or repeating images.
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._low = 1  # no live row below this sequence number
        self._by_seq: dict[int, Row] = {}
        self._seq_of: dict[str, int] = {}
        self._dead: Counter[tuple[str, str]] = Counter()
        self._values: Counter[tuple[str, str]] = Counter()  # (field, value): images
        # Title and keywords per image, from the ingest topic (the record has neither).
        self._words: dict[str, str] = {}

    def apply_submissions(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        """Messages of the ingest topic: the newest hints of each image are what it is
        found by. A message without hints leaves what an earlier one gave."""
        found: dict[str, str] = {}
        for key, value in messages:
            if key is None or not value:
                continue
            text = searchable(value)
            if text is not None:
                found[key.decode("utf-8", "replace")] = text
        if found:
            with self._rows_lock:
                self._words.update(found)

    def apply_many(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        batch = list(records)
        super().apply_many(batch)
        with self._rows_lock:
            for key, value in batch:
                if key is None:
                    continue
                image_id = key.decode("utf-8", "replace")
                self._drop(image_id)
                if value is None:
                    self._words.pop(image_id, None)  # erased: its words go with it
                    continue
                try:
                    slim = _decode(value)
                except msgspec.DecodeError:
                    continue  # counted by the CatalogIndex already
                self._seq += 1
                self._keep(_row(self._seq, image_id, slim))

    def order_by_time(self) -> None:
        """Number every row again, oldest change first; for the end of the first catch-up.

        The catch-up reads the topic's partitions as the broker hands them out, so its read
        order is no time order: a gallery opened just after a start listed one partition's
        images, then another's. From then on each new state is read as it is written, so
        read order is the order of change. Cursors of the old numbering become stale."""
        with self._rows_lock:
            rows = sorted(self._by_seq.values(), key=lambda r: (r.updated_at, r.seq))
            self._by_seq = {seq: replace(row, seq=seq) for seq, row in enumerate(rows, 1)}
            self._seq_of = {row.image_id: seq for seq, row in self._by_seq.items()}
            self._seq = len(rows)
            self._low = 1
            self.epoch = secrets.token_hex(4)

    def _drop(self, image_id: str) -> None:
        seq = self._seq_of.pop(image_id, None)
        if seq is None:
            return
        row = self._by_seq.pop(seq)
        self._tally(row, -1)
        # Amortised O(1): the watermark only rises, past each number once.
        while self._low <= self._seq and self._low not in self._by_seq:
            self._low += 1

    def _keep(self, row: Row) -> None:
        self._seq_of[row.image_id] = row.seq
        self._by_seq[row.seq] = row
        self._tally(row, 1)

    def _tally(self, row: Row, sign: int) -> None:
        if row.dead is not None:
            self._dead[row.dead] += sign
        for name, value in (("restore", row.restore), ("duplicate", row.duplicate)):
            if value is not None:
                self._values[(name, value)] += sign

    # --- questions ---------------------------------------------------------------------

    def row(self, image_id: str) -> Row | None:
        with self._rows_lock:
            seq = self._seq_of.get(image_id)
            return self._by_seq.get(seq) if seq is not None else None

    def page(
        self,
        filters: Filters,
        cursor: int | None,
        limit: int,
        budget: int = SCAN_BUDGET,
        epoch: str | None = None,
    ) -> Page:
        """Up to `limit` rows that pass the filters, from just below `cursor` (or the newest)
        down; stops after `budget` sequence numbers even if the page is not full. A cursor's
        `epoch` other than the index's gives a `stale` page, checked under the same lock."""
        limit = max(1, min(limit, MAX_LIMIT))
        found: list[Row] = []
        with self._rows_lock:
            if cursor is not None and epoch is not None and epoch != self.epoch:
                return Page([], None, 0, self.epoch, stale=True)
            top = self._seq if cursor is None else min(cursor - 1, self._seq)
            seq = top
            floor = max(self._low - 1, top - budget)
            while seq > floor and len(found) < limit:
                row = self._by_seq.get(seq)
                if row is not None and filters.admits(row, self._words.get(row.image_id, "")):
                    found.append(row)
                seq -= 1
            # The next page starts below the last sequence number looked at.
            more = seq >= self._low
            return Page(found, seq + 1 if more else None, top - seq, self.epoch)

    def dead_letter_reasons(self) -> list[dict[str, Any]]:
        with self._rows_lock:
            counted = [(k, n) for k, n in self._dead.items() if n > 0]
        counted.sort(key=lambda item: (-item[1], item[0]))
        return [{"stage": s, "reason": r, "images": n} for (s, r), n in counted]

    def facets(self) -> dict[str, Any]:
        """The values each filter can take, with counts, for the console's menus."""
        stats = self.stats()
        with self._rows_lock:
            values: dict[str, dict[str, int]] = {}
            for (name, value), n in sorted(self._values.items()):
                if n > 0:
                    values.setdefault(name, {})[value] = n
        return {
            "status": stats["by_status"],
            "category": stats["by_category"],
            "route": stats["by_route"],
            "restore": values.get("restore", {}),
            "duplicate": values.get("duplicate", {}),
        }
