"""Finding every object of one image in the fleet's four buckets.

The key layouts (docs/architecture.md, "Storage"), by the depth at which the image id sits:

- incoming:   `{image_id}/{file name}`; a fetched URL at `url/{digest}/{name}` (on the record)
- work:       `{stage}/{image_id}/{digest}`
- quarantine: `{stage}/{image_id}/{file name}`, `couldnt_denoise/{image_id}.png`, ...
- images:     `{category}/{variant}/{image_id}.{ext}`

So the finder lists the folders above the id once per run (stages, categories, variants:
tens of names), then one prefix per folder and image. A duplicate's record lists the
variants of the image it repeats: those are not its objects, so only keys that carry this
image's id are ever returned.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from minio import Minio
from minio.error import S3Error

from schemas.events import ImageRecord, ObjectRef
from streams.config.settings import BucketSettings


def exists(s3: Minio, ref: ObjectRef, missing: Collection[str]) -> bool:
    """Whether the object is there; an S3 error whose code is in `missing` means it is not,
    any other is raised."""
    try:
        s3.stat_object(ref.bucket, ref.key)
    except S3Error as exc:
        if exc.code in missing:
            return False
        raise
    return True


@dataclass(frozen=True, order=True)
class StoredObject:
    bucket: str
    key: str
    size: int


def owns(key_rest: str, image_id: str) -> bool:
    """Whether what follows a folder prefix is this image's: `{id}/...` or `{id}.{ext}`
    (an extension without dots, so image `a` never claims `a.b.webp` of image `a.b`)."""
    if key_rest.startswith(image_id + "/"):
        return True
    if key_rest.startswith(image_id + "."):
        ext = key_rest[len(image_id) + 1 :]
        return bool(ext) and "." not in ext and "/" not in ext
    return False


class ObjectFinder:
    def __init__(self, s3: Minio, buckets: BucketSettings) -> None:
        self.s3 = s3
        self.buckets = buckets
        self._folders: dict[tuple[str, int], list[str]] = {}

    def folders(self, bucket: str, depth: int) -> list[str]:
        """The folder prefixes `depth` levels down (`a/`, `a/b/`), listed once per finder."""
        cached = self._folders.get((bucket, depth))
        if cached is not None:
            return cached
        level = [""]
        for _ in range(depth):
            level = [
                obj.object_name or ""
                for prefix in level
                for obj in self.s3.list_objects(bucket, prefix=prefix, recursive=False)
                if obj.is_dir
            ]
        self._folders[(bucket, depth)] = level
        return level

    def _under(self, bucket: str, folders: Iterable[str], image_id: str) -> list[StoredObject]:
        found = []
        for folder in folders:
            # `{id}` as the prefix catches both `{id}/...` and `{id}.{ext}`; owns() drops
            # the keys of other images whose ids merely start with this one.
            for obj in self.s3.list_objects(bucket, prefix=folder + image_id, recursive=True):
                name = obj.object_name or ""
                if not obj.is_dir and owns(name[len(folder) :], image_id):
                    found.append(StoredObject(bucket, name, obj.size or 0))
        return found

    def find(
        self, image_id: str, record: ImageRecord | None, *, thorough: bool = True
    ) -> list[StoredObject]:
        """Every object of the image. `thorough` looks under every category; otherwise only
        under the record's category (what cleanup does for millions of images, where a
        category never changes without a replay that also moves the variants)."""
        b = self.buckets
        found = self._under(b.incoming, [""], image_id)
        fetched = record.fetch.object if record and record.fetch else None
        if fetched is not None and fetched.bucket == b.incoming:
            found.extend(self._exact(fetched.bucket, fetched.key))
        found += self._under(b.work, self.folders(b.work, 1), image_id)
        found += self._under(b.quarantine, self.folders(b.quarantine, 1), image_id)
        image_folders = self.folders(b.images, 2)
        if not thorough and record is not None and record.category is not None:
            mine = record.category.name + "/"
            image_folders = [f for f in image_folders if f.startswith(mine)]
        found += self._under(b.images, image_folders, image_id)
        return sorted(set(found))

    def variants_of(self, image_id: str, categories: Iterable[str]) -> list[StoredObject]:
        """The image's objects in the images bucket under these categories' folders."""
        wanted = tuple(f"{c}/" for c in categories)
        folders = [f for f in self.folders(self.buckets.images, 2) if f.startswith(wanted)]
        return self._under(self.buckets.images, folders, image_id)

    def _exact(self, bucket: str, key: str) -> list[StoredObject]:
        for obj in self.s3.list_objects(bucket, prefix=key):
            if obj.object_name == key:
                return [StoredObject(bucket, key, obj.size or 0)]
        return []

    def still_there(self, objects: Iterable[StoredObject]) -> list[StoredObject]:
        """Those of `objects` that exist now (a resumed erasure deletes only these)."""
        return [o for o in objects if self._exact(o.bucket, o.key)]


def stale_variants(old: ImageRecord, new: ImageRecord) -> list[StoredObject]:
    """The image's own variant objects the old record listed and the new one no longer does
    (another format, another category): what a replay leaves behind. A duplicate's variants
    are another image's objects, never stale here."""
    if old.duplicate_of is not None:
        return []
    current = {(v.object.bucket, v.object.key) for v in new.variants}
    return sorted(
        {
            StoredObject(v.object.bucket, v.object.key, v.bytes)
            for v in old.variants
            if (v.object.bucket, v.object.key) not in current
            and owns(v.object.key.rsplit("/", 1)[-1], old.image_id)
        }
    )
