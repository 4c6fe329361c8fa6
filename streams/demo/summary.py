"""The demo's end-of-run figures, computed from what the topics and buckets hold."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from schemas.events import DeadLetter, ImageRecord
from streams.config.topics import PLANNED_ONLY, STAGES

DUPLICATE_DISTANCE = 6  # pHash bits (of 64) two copies of one picture differ by at most


@dataclass(frozen=True)
class StageFigures:
    stage: str
    processed: int
    rejected: int
    p50_s: float | None
    p95_s: float | None

    def seconds(self) -> tuple[str, str]:
        """p50 and p95 as shown in the terminal summary and the report: "-" where unknown."""
        return _shown(self.p50_s), _shown(self.p95_s)


def _shown(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


@dataclass
class Summary:
    images: int
    status: Counter[str]
    stages: list[StageFigures]
    routes: Counter[str]
    restore: Counter[str]
    categories: Counter[str]
    bytes_in: int
    bytes_out: int
    variants: int
    duplicates: list[list[str]]
    dead_letters: Counter[str] = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0

    def as_dict(self) -> dict[str, object]:
        """What summary.json holds, for scripts and the tests."""
        return {
            "images": self.images,
            "status": dict(self.status),
            "stages": [s.__dict__ for s in self.stages],
            "routes": dict(self.routes),
            "restore": dict(self.restore),
            "categories": dict(self.categories),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "variants": self.variants,
            "compression_ratio": round(self.ratio, 3),
            "duplicates": self.duplicates,
            "dead_letters": dict(self.dead_letters),
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def duplicate_groups(records: dict[str, ImageRecord]) -> list[list[str]]:
    """Images whose perceptual hashes are within DUPLICATE_DISTANCE bits of each other, joined
    with what the catalog recorded on them (near_duplicates, duplicate_of), among `records`."""
    hashes = {
        image_id: str(r.original["phash"])
        for image_id, r in sorted(records.items())
        if r.original and r.original.get("phash")
    }
    parent = {image_id: image_id for image_id in records}

    def root(image_id: str) -> str:
        while parent[image_id] != image_id:
            parent[image_id] = parent[parent[image_id]]
            image_id = parent[image_id]
        return image_id

    def join(a: str, b: str) -> None:
        if a in parent and b in parent:
            parent[max(root(a), root(b))] = min(root(a), root(b))

    ordered = list(hashes.items())
    for index, (image_id, phash) in enumerate(ordered):
        for other, theirs in ordered[index + 1 :]:
            if _hamming(phash, theirs) <= DUPLICATE_DISTANCE:
                join(image_id, other)
    for image_id, record in records.items():
        for near in record.near_duplicates:
            join(image_id, near.image_id)
        if record.duplicate_of:
            join(image_id, record.duplicate_of)
    groups: dict[str, list[str]] = {}
    for image_id in sorted(records):
        groups.setdefault(root(image_id), []).append(image_id)
    return [group for group in groups.values() if len(group) > 1]


def summarize(
    records: dict[str, ImageRecord], letters: list[DeadLetter], names: dict[str, str]
) -> Summary:
    """Figures for the images of this run (`names`: image id -> file name), from their
    latest records."""
    image_ids = set(names)
    mine = {i: r for i, r in records.items() if i in image_ids}
    seconds: dict[str, list[float]] = {s: [] for s in STAGES}
    outcomes: dict[str, Counter[str]] = {s: Counter() for s in STAGES}
    for record in mine.values():
        for stage, state in record.stages.items():
            if stage in seconds:
                seconds[stage].append(state.seconds)
                outcomes[stage][state.outcome] += 1
    stages = [
        StageFigures(
            stage,
            outcomes[stage]["ok"] + outcomes[stage]["skipped"],
            outcomes[stage]["rejected"] + outcomes[stage]["failed"],
            _quantile(sorted(seconds[stage]), 0.50),
            _quantile(sorted(seconds[stage]), 0.95),
        )
        # A stage an image only takes when it needs it (fetch, restore) is shown only when
        # some image of this run went through it.
        for stage in STAGES
        if stage not in PLANNED_ONLY or seconds[stage]
    ]
    done = [r for r in mine.values() if r.status == "done"]
    return Summary(
        images=len(image_ids),
        status=Counter(r.status for r in mine.values()),
        stages=stages,
        routes=Counter(" > ".join(r.route) for r in done),
        restore=Counter(str(r.restore.get("outcome")) for r in done if r.restore),
        categories=Counter(r.category.name for r in done if r.category),
        bytes_in=sum(int((r.original or {}).get("bytes") or 0) for r in done),
        bytes_out=sum(v.bytes for r in done for v in r.variants),
        variants=sum(len(r.variants) for r in done),
        duplicates=[[names[i] for i in group] for group in duplicate_groups(mine)],
        dead_letters=Counter(
            f"{d.stage}: {d.reason_class}" for d in letters if d.image_id in image_ids
        ),
    )
