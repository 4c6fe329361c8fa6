"""keep_original: enhance stores validate's normalized image, but the record lists it among
the variants only once compress has finished the image. Until then (and for good when the
image is rejected later) the console, the variants endpoint and a replay's sweep see no
variant, while delete and cleanup still find the object by listing its folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pytest
from minio import Minio

from schemas.events import (
    Envelope,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Source,
    StageState,
    decoder,
    encode,
)
from streams.catalog.listing import ListedIndex
from streams.config.settings import BucketSettings
from streams.config.topics import Topics
from streams.ops.objects import ObjectFinder
from streams.runner.records import Origin, failure
from streams.runner.stage import BlobWrite, PermanentError, StageContext, StageResult
from streams.stages import image_stages
from streams.stages.settings import StageSettings
from tests.support.photos import encode as encode_image
from tests.support.photos import photo

KEEP = StageSettings.model_validate({"compress": {"keep_original": True}})
ORIGINAL_KEY = "other/original/img-1.png"


def _ctx(stage: str, params: object) -> StageContext:
    return StageContext(stage=stage, buckets=BucketSettings(), params=params)


def _enhanced() -> tuple[StageResult, list[BlobWrite]]:
    """validate and enhance of one photo under keep_original, with every blob written."""
    submitted = ImageSubmitted(
        image_id="img-1",
        submitted_at="2026-01-01T00:00:00Z",
        source=Source(object=ObjectRef(bucket="pixelfleet-incoming", key="img-1/photo.png")),
    )
    record = ImageRecord(image_id="img-1", status="processing", updated_at="")
    envelope = Envelope(submitted=submitted, route=["validate"], record=record)
    png = encode_image(photo("coffee"), "PNG")
    validated = image_stages.validate_stage(
        envelope, png, _ctx("validate", image_stages.ValidateParams(KEEP))
    )
    enhanced = image_stages.enhance_stage(
        validated.envelope, validated.blobs[0].data, _ctx("enhance", KEEP)
    )
    return enhanced, [*validated.blobs, *enhanced.blobs]


def _through_kafka(envelope: Envelope) -> Envelope:
    """What the next stage reads: the envelope as encoded on its inbox."""
    return decoder(Envelope).decode(encode(envelope))


def _thumb(record: ImageRecord) -> tuple[str, str] | None:
    index = ListedIndex()
    index.apply_many([(record.image_id.encode(), encode(record))])
    row = index.row(record.image_id)
    assert row is not None
    return row.thumb


def test_the_original_is_stored_by_enhance_but_listed_only_when_compress_is_done() -> None:
    enhanced, _ = _enhanced()
    [original] = [b for b in enhanced.blobs if b.bucket == "pixelfleet-images"]
    assert original.key == ORIGINAL_KEY
    after_enhance = _through_kafka(enhanced.envelope)
    # Still processing: no variant, so no full-size PNG as the console's thumbnail.
    assert after_enhance.record.variants == []
    assert _thumb(after_enhance.record) is None
    kept = after_enhance.kept_original
    assert kept is not None and kept.object.key == ORIGINAL_KEY and kept.variant == "original"
    assert kept.bytes == len(original.data)

    blob = next(b.data for b in enhanced.blobs if b.bucket == "pixelfleet-work")
    done = image_stages.compress_stage(after_enhance, blob, _ctx("compress", KEEP))
    record = done.envelope.record
    assert not any(b.key == ORIGINAL_KEY for b in done.blobs)  # stored once, by enhance
    assert {v.variant for v in record.variants} == {"thumbnail", "preview", "full", "original"}
    assert [v for v in record.variants if v.variant == "original"] == [kept]
    # Done: the narrowest variant is the thumbnail, never the original.
    thumbnail = min(record.variants, key=lambda v: v.width)
    assert _thumb(record) == (thumbnail.object.bucket, thumbnail.object.key)
    assert thumbnail.variant == "thumbnail"


def test_an_image_enhanced_by_the_previous_version_keeps_its_listed_original() -> None:
    # That version put the original straight into the record's variants; compress takes it
    # from there instead of storing its own (reduced) input as the original.
    enhanced, _ = _enhanced()
    envelope = enhanced.envelope
    assert envelope.kept_original is not None
    envelope.record.variants, envelope.kept_original = [envelope.kept_original], None
    blob = next(b.data for b in enhanced.blobs if b.bucket == "pixelfleet-work")
    done = image_stages.compress_stage(envelope, blob, _ctx("compress", KEEP))
    assert not any(b.key == ORIGINAL_KEY for b in done.blobs)
    originals = [v for v in done.envelope.record.variants if v.variant == "original"]
    assert [v.object.key for v in originals] == [ORIGINAL_KEY]


@dataclass(frozen=True)
class _Listed:
    object_name: str
    is_dir: bool
    size: int


class _Bucketful:
    """The listing half of S3 over blobs written by the stages: enough for ObjectFinder."""

    def __init__(self, writes: list[BlobWrite]) -> None:
        self.objects = {(w.bucket, w.key): len(w.data) for w in writes}

    def list_objects(
        self, bucket: str, prefix: str = "", recursive: bool = False
    ) -> Iterator[_Listed]:
        folders: set[str] = set()
        for (name, key), size in sorted(self.objects.items()):
            if name != bucket or not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if recursive or "/" not in rest:
                yield _Listed(key, False, size)
            elif (folder := prefix + rest.split("/", 1)[0] + "/") not in folders:
                folders.add(folder)
                yield _Listed(folder, True, 0)


def test_an_image_rejected_at_compress_lists_no_variants_and_cleanup_finds_its_original() -> None:
    enhanced, written = _enhanced()
    envelope = _through_kafka(enhanced.envelope)
    with pytest.raises(PermanentError) as caught:
        # Its input gone (the work bucket expired it): rejected, as any bad input is.
        image_stages.compress_stage(envelope, None, _ctx("compress", KEEP))
    state = StageState(outcome="rejected", started_at="2026-01-01T00:00:01Z", seconds=0.1)
    origin = Origin("pixelfleet.compress", 0, 7, b"img-1", encode(envelope))
    out = failure(
        Topics("pixelfleet"),
        "compress",
        origin,
        envelope,
        kind="permanent",
        reason_class=caught.value.reason_class,
        reason=caught.value.reason,
        state=state,
        quarantined=None,
        now="2026-01-01T00:00:02Z",
    )
    [meta] = [m for m in out if m.topic == "pixelfleet.metadata"]
    rejected = decoder(ImageRecord).decode(meta.value)
    assert rejected.status == "rejected"
    assert rejected.variants == []  # nothing for the variants endpoint or the console
    assert _thumb(rejected) is None

    # The object is still there, and still the image's: delete and cleanup list the
    # category's folders, the original's among them, not the record's variants.
    finder = ObjectFinder(cast(Minio, _Bucketful(written)), BucketSettings())
    for thorough in (True, False):
        found = {(o.bucket, o.key) for o in finder.find("img-1", rejected, thorough=thorough)}
        assert ("pixelfleet-images", ORIGINAL_KEY) in found
