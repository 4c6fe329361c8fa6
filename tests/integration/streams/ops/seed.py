"""Finished images laid out as the stages lay them out, without running the stages: objects
in all four buckets under the documented keys, and records on the metadata topic."""

from __future__ import annotations

import io

from minio import Minio

from schemas.events import Category, ImageRecord, ObjectRef, StageState, Variant
from streams.app.settings import Settings
from tests.support.catalog_kit import publish


def put(s3: Minio, bucket: str, key: str, size: int) -> ObjectRef:
    s3.put_object(bucket, key, io.BytesIO(b"x" * size), size)
    return ObjectRef(bucket=bucket, key=key, size=size)


def image(
    settings: Settings,
    s3: Minio,
    image_id: str,
    *,
    category: str = "rings",
    status: str = "done",
    updated_at: str = "2026-10-01T08:00:00.000Z",
    duplicate_of: str | None = None,
) -> ImageRecord:
    """One image's objects (none of its own for a duplicate) and its record, not published."""
    b = settings.buckets
    variants: list[Variant] = []
    if duplicate_of is None:
        put(s3, b.incoming, f"{image_id}/photo.jpg", 1000)
        put(s3, b.work, f"validate/{image_id}/0123456789abcdef", 300)
        put(s3, b.quarantine, f"couldnt_denoise/{image_id}.png", 200)
        for name, size in (("web", 100), ("thumb", 10)):
            obj = put(s3, b.images, f"{category}/{name}/{image_id}.webp", size)
            variants.append(
                Variant(variant=name, format="webp", width=1, height=1, bytes=size, object=obj)
            )
    else:
        variants = [
            Variant(
                variant="web",
                format="webp",
                width=1,
                height=1,
                bytes=100,
                object=ObjectRef(bucket=b.images, key=f"{category}/web/{duplicate_of}.webp"),
            )
        ]
    state = StageState(outcome="ok", started_at=updated_at, seconds=0.1)
    return ImageRecord(
        image_id=image_id,
        status=status,  # type: ignore[arg-type]
        updated_at=updated_at,
        stages={"validate": state, "compress": state},
        route=["validate", "categorize", "enhance", "compress"],
        category=Category(name=category, score=1.0),
        variants=variants,
        duplicate_of=duplicate_of,
    )


# What image() writes of one image that is not a duplicate: 5 objects, 1,610 bytes.
OBJECTS_PER_IMAGE = 5
BYTES_PER_IMAGE = 1000 + 300 + 200 + 100 + 10


def seed(settings: Settings, s3: Minio, records: list[ImageRecord]) -> None:
    publish(settings, records)
