"""`pixelfleet replay`: re-send chosen images' inputs, paced; wait; remove stale variants.

Replayed messages go to the same inboxes as live traffic, keyed by image id, so they land
on the image's own partition and keep its order. A stage reads its inbox in offset order,
so a million replayed messages published at once sit ahead of every live image that comes
after them: `--rate` caps how fast the replay enters (a token bucket), which keeps the lag
a live image sees at (replay rate - spare capacity) x duration, zero when the rate is below
what the stage has spare. Deterministic keys make a replay sent twice harmless.

After the new record of an image is committed, the variants its old record listed and the
new one does not (new compress settings: another format or variant set) are removed, and
only those whose object is older than the new record, so an object written by a still newer
run is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from confluent_kafka import KafkaError, Message, Producer
from minio import Minio
from minio.error import S3Error

from schemas.events import ImageRecord
from streams.config.settings import FleetSettings
from streams.io import clients
from streams.io.topic_reader import latest_records
from streams.ops.objects import ObjectFinder, StoredObject, stale_variants
from streams.ops.pacing import Pacer
from streams.ops.replay_plan import ReplayItem
from streams.ops.selection import FINISHED, parse_time
from streams.runner.records import CORRELATION_HEADER, SCHEMA_HEADER

REPLAY_HEADER = "pixelfleet-replay-id"
# How often --wait reads the metadata topic again.
POLL_S = 2.0
LAST_MODIFIED_GRAIN = timedelta(seconds=1)


@dataclass
class Sent:
    count: int = 0
    seconds: float = 0.0
    slept: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class Swept:
    removed: list[StoredObject] = field(default_factory=list)
    # Left in place: written after the new record, so not the replaced run's.
    kept_newer: list[StoredObject] = field(default_factory=list)
    # Left in place: another image's record lists it (a duplicate of the replayed one).
    kept_shared: list[StoredObject] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(o.size for o in self.removed)


class Replayer:
    def __init__(self, settings: FleetSettings, s3: Minio, replay_id: str) -> None:
        self.settings = settings
        self.s3 = s3
        self.replay_id = replay_id
        # Every image's latest record as `wait` last read them: sweep keeps what they list.
        self.seen: Mapping[str, ImageRecord] = {}
        self.finder = ObjectFinder(s3, settings.buckets)

    def send(
        self,
        items: Sequence[ReplayItem],
        pacer: Pacer,
        on_sent: Callable[[int], None] | None = None,
        correlation: Mapping[str, str | None] | None = None,
    ) -> Sent:
        """Publish each item's message to its topic, paced; `on_sent(n)` after each."""
        producer: Producer = clients.producer(self.settings.kafka, **{"linger.ms": 20})
        result = Sent()
        started = time.monotonic()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result.errors.append(f"{msg.key()!r}: {err}")

        for n, item in enumerate(items, start=1):
            assert item.value is not None, "only items with something to send"
            result.slept += pacer.wait()
            headers: list[tuple[str, str | bytes | None]] = [
                (SCHEMA_HEADER, f"{item.kind}/1".encode()),
                (REPLAY_HEADER, self.replay_id.encode()),
            ]
            cid = (correlation or {}).get(item.image_id)
            if cid:
                headers.append((CORRELATION_HEADER, cid.encode()))
            while True:
                try:
                    producer.produce(
                        item.topic,
                        key=item.image_id.encode(),
                        value=item.value,
                        headers=headers,
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            result.count = n
            if on_sent:
                on_sent(n)
        left = producer.flush(60)
        if left:
            result.errors.append(f"{left} message(s) not acknowledged by Kafka in 60 s")
        result.seconds = time.monotonic() - started
        return result

    def wait(
        self,
        old: Mapping[str, ImageRecord],
        timeout_s: float,
        on_poll: Callable[[int], None] | None = None,
    ) -> dict[str, ImageRecord]:
        """The new finished records of the replayed images, as they are committed, until all
        are there or the time is up (those missing then are left out)."""
        deadline = time.monotonic() + timeout_s
        fresh: dict[str, ImageRecord] = {}
        while True:
            latest = latest_records(self.settings, strict=True)
            self.seen = latest
            for image_id, before in old.items():
                now = latest.get(image_id)
                if now is not None and now.status in FINISHED and _newer(now, before):
                    fresh[image_id] = now
            if on_poll:
                on_poll(len(fresh))
            if len(fresh) == len(old) or time.monotonic() >= deadline:
                return fresh
            time.sleep(POLL_S)

    def sweep(self, old: Mapping[str, ImageRecord], new: Mapping[str, ImageRecord]) -> Swept:
        """Remove the variants the new records replaced; only objects older than the new
        record (the replaced run's), never one a still newer run wrote, and only where the
        replay succeeded (a rejected replay's record lists no variants to replace them: not
        even keep_original's original, which enhance stores but only compress lists), and
        never one another image's record lists (read by `wait`)."""
        result = Swept()
        # A duplicate's record lists the variants of the image it duplicates: removing one
        # would leave that record pointing at nothing, so what any other image's latest
        # record lists stays (a duplicate replayed in the same run included: its new record
        # may have copied the old variants before the original's new one was there).
        listed_by: dict[tuple[str, str], set[str]] = {}
        for other in self.seen.values():
            for v in other.variants:
                listed_by.setdefault((v.object.bucket, v.object.key), set()).add(other.image_id)
        for image_id, record in new.items():
            if record.status != "done":
                continue  # a replay that failed keeps the old variants for a person to judge
            committed_at = parse_time(record.updated_at)
            for obj in self._replaced(old[image_id], record):
                if listed_by.get((obj.bucket, obj.key), set()) - {image_id}:
                    result.kept_shared.append(obj)
                    continue
                written = self._written_at(obj)
                if written is None:
                    continue  # already gone
                # Last-Modified has whole seconds: an object of the same second as the
                # record might be a newer run's, so it is kept.
                if written + LAST_MODIFIED_GRAIN < committed_at:
                    self.s3.remove_object(obj.bucket, obj.key)
                    result.removed.append(obj)
                else:
                    result.kept_newer.append(obj)
        return result

    def _replaced(self, old: ImageRecord, new: ImageRecord) -> list[StoredObject]:
        """What the old record listed and the new one does not, and any other object of the
        image under the old or the new category's folders that the new record does not list
        (left by an earlier replay that was not waited for)."""
        if old.duplicate_of is not None or new.duplicate_of is not None:
            return []  # a duplicate's variants are another image's objects
        current = {(v.object.bucket, v.object.key) for v in new.variants}
        categories = {r.category.name for r in (old, new) if r.category is not None}
        listed = [
            o
            for o in self.finder.variants_of(new.image_id, categories)
            if (o.bucket, o.key) not in current
        ]
        found = {(o.bucket, o.key): o for o in [*stale_variants(old, new), *listed]}
        return sorted(found.values())

    def _written_at(self, obj: StoredObject) -> datetime | None:
        try:
            stat = self.s3.stat_object(obj.bucket, obj.key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise
        return stat.last_modified


def _newer(now: ImageRecord, before: ImageRecord) -> bool:
    return parse_time(now.updated_at) > parse_time(before.updated_at)
