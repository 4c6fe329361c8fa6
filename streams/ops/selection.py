"""Pure choosing: which records, dead letters or images an operations command acts on.

Nothing here talks to Kafka or S3, so every rule is unit-tested on plain values.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.events import DeadLetter, ImageRecord

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Statuses an image no longer changes from on its own: nothing is in flight for it.
FINISHED = frozenset({"done", "rejected", "failed"})
# The fields `--where` may test, and how a record yields each.
WHERE_FIELDS = ("category", "status", "fingerprint", "duplicate")


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` as a timedelta; anything else is a ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 45s or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (the contract's form, `Z` or an offset) or a date; UTC if naive."""
    value = text.strip()
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time like 2026-12-01 or 2026-12-01T08:00:00Z") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from now (`2h`) or a time (`2026-12-01T08:00:00Z`)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration back from now (2h, 30d) nor a time "
            "(2026-12-01 or 2026-12-01T08:00:00Z)"
        ) from None


def parse_where(text: str) -> dict[str, set[str]]:
    """`category=rings,status=done` as {field: accepted values}; a field given twice
    accepts either value (`status=done,status=rejected`)."""
    wanted: dict[str, set[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"--where wants field=value pairs, got {part!r}")
        if name not in WHERE_FIELDS:
            raise ValueError(f"--where knows {', '.join(WHERE_FIELDS)}; not {name!r}")
        wanted.setdefault(name, set()).add(value)
    return wanted


def record_field(record: ImageRecord, name: str) -> str:
    if name == "category":
        return record.category.name if record.category else ""
    if name == "status":
        return record.status
    if name == "fingerprint":
        return record.fingerprint or ""
    if name == "duplicate":
        return "yes" if record.duplicate_of else "no"
    raise KeyError(name)


def record_time(record: ImageRecord) -> datetime:
    return parse_time(record.updated_at)


def matches(record: ImageRecord, where: Mapping[str, set[str]]) -> bool:
    return all(record_field(record, name) in values for name, values in where.items())


def select_records(
    records: Mapping[str, ImageRecord],
    *,
    where: Mapping[str, set[str]] | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
    finished_only: bool = False,
) -> list[ImageRecord]:
    """Records that match every filter, oldest first (then by id, so a run is repeatable).

    `since`/`before` compare the record's last update; `finished_only` leaves out images a
    stage may still be working on, which no command may erase or replay under its feet.
    """
    chosen = [
        r
        for r in records.values()
        if (not where or matches(r, where))
        and (since is None or record_time(r) >= since)
        and (before is None or record_time(r) < before)
        and (not finished_only or r.status in FINISHED)
    ]
    return sorted(chosen, key=lambda r: (r.updated_at, r.image_id))


def expired(
    records: Mapping[str, ImageRecord],
    *,
    now: datetime,
    older_than: timedelta,
    category: str | None = None,
    status: str | None = None,
) -> list[ImageRecord]:
    """What `cleanup` removes: finished images not updated for `older_than`."""
    where: dict[str, set[str]] = {}
    if category:
        where["category"] = {category}
    if status:
        where["status"] = {status}
    return select_records(records, where=where, before=now - older_than, finished_only=True)


@dataclass(frozen=True)
class LetterAt:
    """A dead letter and where it sits on the DLQ: (partition, offset) names it for good."""

    letter: DeadLetter
    partition: int
    offset: int
    correlation_id: str | None = None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


def select_letters(
    letters: Iterable[LetterAt],
    *,
    stage: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
) -> list[LetterAt]:
    """Dead letters of a stage and reason class, dead-lettered at or after `since`, oldest
    first (then by position, so a run is repeatable)."""
    chosen = [
        item
        for item in letters
        if (stage is None or item.letter.stage == stage)
        and (reason is None or item.letter.reason_class == reason)
        and (since is None or parse_time(item.letter.at) >= since)
    ]
    return sorted(
        chosen, key=lambda item: (parse_time(item.letter.at), item.partition, item.offset)
    )


def counts_by_reason(letters: Iterable[LetterAt]) -> list[tuple[str, str, int]]:
    """(stage, reason class, count), most frequent first."""
    counts = Counter((item.letter.stage, item.letter.reason_class) for item in letters)
    return [(stage, reason, n) for (stage, reason), n in counts.most_common()]


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
