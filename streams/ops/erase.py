"""Erasing images for good: every object, and the record (a tombstone on the metadata topic).

The order, per batch of images, and why:

1. One Kafka transaction writes, for every image of the batch, the metadata tombstone and
   an entry on `<prefix>.erasures` listing the objects about to go.
2. The objects are deleted.
3. A second transaction replaces each erasures entry by a tombstone: nothing left to do.

The record goes first because the other order can leave a record that points at a missing
object (a crash after the objects, before the tombstone): `status` and the catalog would
then hand out links to nothing. With the record first, a crash can only leave objects that
no record names, and the erasures entry written atomically with the tombstone says exactly
which: the next `delete` or `cleanup` reads it, deletes those of the listed objects that are
still there (none twice) and closes the entry. Deleting an object never fails because it is
already gone, so a retried batch is harmless too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from minio import Minio
from minio.deleteobjects import DeleteObject

from schemas.events import ImageRecord
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.failures import OperationError
from streams.ops import ledger
from streams.ops.objects import ObjectFinder, StoredObject
from streams.runner.records import OutMessage, now_iso

# Images per batch: one transaction for their tombstones, one bulk delete per bucket.
BATCH_IMAGES = 100
# S3 deletes at most this many keys per request.
DELETE_MAX = 1000


class ErasureEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An erasure in progress, on `<prefix>.erasures` (key image_id) until it is finished."""

    image_id: str
    at: str
    objects: list[StoredObject]


@dataclass
class Erased:
    image_id: str
    objects: list[StoredObject]
    record: ImageRecord | None = None
    note: str = ""

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)


@dataclass
class Resumed:
    finished: list[Erased] = field(default_factory=list)
    # Entries dropped without deleting: the image came back (a newer record) since.
    superseded: list[str] = field(default_factory=list)


def with_duplicates(chosen: Iterable[str], records: Mapping[str, ImageRecord]) -> list[str]:
    """The images whose records say they repeat one of `chosen`: their variants are the
    chosen images' objects, so they must go too or point at nothing."""
    wanted = set(chosen)
    return sorted(
        image_id
        for image_id, record in records.items()
        if record.duplicate_of in wanted and image_id not in wanted
    )


def _chunks(items: Sequence[Erased], size: int) -> list[Sequence[Erased]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class Eraser:
    def __init__(
        self, settings: FleetSettings, s3: Minio | None = None, batch_images: int = BATCH_IMAGES
    ) -> None:
        self.settings = settings
        self.s3 = s3 or clients.s3(settings.s3)
        self.finder = ObjectFinder(self.s3, settings.buckets)
        self.batch_images = batch_images
        self.metadata = Topics(settings.topic_prefix).metadata
        self.journal = ledger.erasures_topic(settings.topic_prefix)
        self._writer: ledger.TransactionalWriter | None = None

    def plan(
        self,
        image_ids: Iterable[str],
        records: Mapping[str, ImageRecord],
        *,
        thorough: bool = True,
    ) -> list[Erased]:
        """What erasing each image removes, found now; nothing is changed. A fetched URL's
        body is one object for every image submitted from that URL: it goes only with the
        last of them (among `records`)."""
        chosen = list(image_ids)
        leaving = set(chosen)
        kept = {
            (r.fetch.object.bucket, r.fetch.object.key)
            for i, r in records.items()
            if i not in leaving and r.fetch is not None and r.fetch.object is not None
        }
        plans = []
        for i in chosen:
            found = self.finder.find(i, records.get(i), thorough=thorough)
            mine = [o for o in found if (o.bucket, o.key) not in kept]
            plans.append(Erased(i, mine, records.get(i)))
        return plans

    def erase(
        self, plans: Sequence[Erased], on_done: Callable[[Erased], None] | None = None
    ) -> None:
        """Erase in batches, in the order the module explains; `on_done` after each image."""
        ledger.ensure_ledgers(self.settings)
        for batch in _chunks(plans, self.batch_images):
            at = now_iso()
            self._txn(
                msg
                for item in batch
                for msg in (
                    self._tombstone(self.metadata, item.image_id),
                    self._entry(ErasureEntry(image_id=item.image_id, at=at, objects=item.objects)),
                )
            )
            self._remove([o for item in batch for o in item.objects])
            self._txn(self._tombstone(self.journal, item.image_id) for item in batch)
            for item in batch:
                if on_done:
                    on_done(item)

    def pending(self) -> list[ErasureEntry]:
        """Erasures an earlier run began and did not finish."""
        decode = msgspec.json.Decoder(ErasureEntry).decode
        return [
            decode(value) for value in ledger.latest_by_key(self.settings, self.journal).values()
        ]

    def resume(self, records: Mapping[str, ImageRecord]) -> Resumed:
        """Finish what an interrupted run left: delete the listed objects still there.

        An image with a record newer than its tombstone was submitted again since; its
        objects are the new run's now, so the entry is closed without deleting anything.
        """
        result = Resumed()
        entries = self.pending()
        if not entries:
            return result
        ledger.ensure_ledgers(self.settings)
        for entry in entries:
            if entry.image_id in records:
                result.superseded.append(entry.image_id)
                self._txn([self._tombstone(self.journal, entry.image_id)])
                continue
            left = self.finder.still_there(entry.objects)
            self._remove(left)
            self._txn([self._tombstone(self.journal, entry.image_id)])
            result.finished.append(Erased(entry.image_id, left, note="resumed"))
        return result

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    # -- Kafka and S3 --------------------------------------------------------

    def _txn(self, messages: Iterable[OutMessage]) -> None:
        if self._writer is None:
            self._writer = ledger.TransactionalWriter(self.settings, "erase")
        self._writer.commit(messages)

    def _tombstone(self, topic: str, image_id: str) -> OutMessage:
        return OutMessage(topic, image_id.encode(), b"", [])

    def _entry(self, entry: ErasureEntry) -> OutMessage:
        return OutMessage(self.journal, entry.image_id.encode(), msgspec.json.encode(entry), [])

    def _remove(self, objects: Sequence[StoredObject]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for obj in objects:
            by_bucket.setdefault(obj.bucket, []).append(obj.key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), DELETE_MAX):
                batch = [DeleteObject(k) for k in keys[start : start + DELETE_MAX]]
                errors = list(self.s3.remove_objects(bucket, batch))
                if errors:
                    shown = "; ".join(f"{e.name}: {e.code}" for e in errors[:3])
                    raise OperationError(
                        f"could not delete {len(errors)} object(s) of {bucket}: {shown}"
                    )
