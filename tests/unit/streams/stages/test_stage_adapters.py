"""The image stages as the runner calls them: envelope and blob in, result out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from processors import intermediate
from schemas.events import Envelope, Hints, ImageRecord, ImageSubmitted, ObjectRef, Request, Source
from streams.config.settings import BucketSettings
from streams.runner.stage import PermanentError, StageContext
from streams.stages import image_stages
from streams.stages.settings import StageSettings
from tests.support.photos import big_photo, encode, photo


def fake_classifier(image: Image.Image) -> dict[str, float]:
    return {"watches": 1.0 if image.width > 100 else 0.0}


def _envelope(request: Request | None = None, hints: Hints | None = None) -> Envelope:
    source = ObjectRef(bucket="pixelfleet-incoming", key="img-1/photo.jpg")
    submitted = ImageSubmitted(image_id="img-1", source=Source(object=source),
                               submitted_at="2026-11-21T10:00:00Z", hints=hints or Hints(),
                               request=request or Request())  # fmt: skip
    record = ImageRecord(image_id="img-1", status="processing", updated_at="2026-11-21T10:00:00Z",
                         current=source)  # fmt: skip
    return Envelope(submitted=submitted, route=["validate"], record=record)


def _ctx(settings: StageSettings | None = None) -> StageContext:
    return StageContext(stage="x", buckets=BucketSettings(), params=settings or StageSettings())


def _validate_ctx(settings: StageSettings | None = None) -> StageContext:
    params = image_stages.ValidateParams(settings or StageSettings())
    return StageContext(stage="validate", buckets=BucketSettings(), params=params)


def test_validate_records_facts_plans_the_route_and_writes_a_deterministic_intermediate() -> None:
    data = encode(big_photo("coffee", 2400), "JPEG", quality=90)
    first = image_stages.validate_stage(_envelope(), data, _validate_ctx())
    again = image_stages.validate_stage(_envelope(), data, _validate_ctx())
    env = first.envelope
    assert env.route == ["validate", "categorize", "enhance", "compress"]
    assert env.record.original is not None and env.record.original["width"] == 2400
    [blob] = first.blobs
    assert blob.bucket == "pixelfleet-work" and blob.key.startswith("validate/img-1/")
    assert blob.key == again.blobs[0].key  # a replay overwrites the same object
    assert env.record.current is not None and env.record.current.key == blob.key
    # The intermediate: QOI in pixelfleet's frame, the same pixels as the decoded input.
    assert blob.content_type == intermediate.CONTENT_TYPE
    assert intermediate.decode(blob.data).size == (2400, 1600)


def test_validate_rejections_are_permanent_errors_with_the_reason() -> None:
    with pytest.raises(PermanentError) as caught:
        image_stages.validate_stage(
            _envelope(), b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000, _validate_ctx()
        )
    assert caught.value.reason_class == "corrupt_header"


def test_categorize_uses_hints_and_a_configured_classifier() -> None:
    hinted = image_stages.categorize_stage(
        _envelope(hints=Hints(title="pearl necklace")), None, _ctx()
    )
    assert hinted.envelope.record.category is not None
    assert hinted.envelope.record.category.name in ("pearls", "necklaces")
    settings = StageSettings(
        classifier="tests.unit.streams.stages.test_stage_adapters:fake_classifier"
    )
    spec = image_stages.stage_specs(settings)["categorize"]
    assert spec.reads_blob and spec.cpu_bound
    png = encode(photo("coffee"), "PNG")
    result = image_stages.categorize_stage(_envelope(), png, _ctx(settings))
    assert result.envelope.record.category is not None
    assert result.envelope.record.category.name == "watches"
    assert "image:1.00" in result.envelope.record.category.evidence


def test_enhance_profile_none_is_a_skip_and_keeps_the_input() -> None:
    png = encode(photo("coffee"), "PNG")
    result = image_stages.enhance_stage(_envelope(Request(profile="none")), png, _ctx())
    assert result.outcome == "skipped" and result.blobs == []
    with pytest.raises(PermanentError, match="unknown enhancement profile"):
        image_stages.enhance_stage(_envelope(Request(profile="glow")), png, _ctx())


def test_enhance_hands_compress_only_the_pixels_its_largest_variant_uses() -> None:
    blob, _ = intermediate.encode(big_photo("coffee", 5000))  # 5000 x 3333

    def enhanced(request: Request, route: list[str], settings: StageSettings) -> tuple[int, int]:
        env = _envelope(request)
        env.route = route
        result = image_stages.enhance_stage(env, blob, _ctx(settings))
        *_, written = result.blobs  # after the original, with keep_original
        assert env.record.current is not None and env.record.current.key == written.key
        return intermediate.decode(written.data).size

    to_compress = ["validate", "categorize", "enhance", "compress"]
    defaults = StageSettings()
    # The largest default variant is 2048 px; with the default reducing_gap 2.0 compress
    # reduces nothing ahead of its filter from 5000 px, so neither does enhance.
    assert enhanced(Request(), to_compress, defaults) == (5000, 3333)
    # Only a thumbnail asked for: 150 px, so a box reduction by 16 (5000 / 150 / 2).
    assert enhanced(Request(variants=["thumbnail"]), to_compress, defaults) == (313, 209)
    # Kept pixels (profile none) are reduced too.
    thumb_only = Request(profile="none", variants=["thumbnail"])
    assert enhanced(thumb_only, to_compress, defaults) == (313, 209)
    gap_one = StageSettings.model_validate({"compress": {"reducing_gap": 1.0}})
    assert enhanced(Request(), to_compress, gap_one) == (2500, 1667)
    # Restore comes next, or the original is shipped: every pixel goes on.
    with_restore = ["validate", "categorize", "enhance", "restore", "compress"]
    assert enhanced(Request(variants=["thumbnail"]), with_restore, defaults) == (5000, 3333)
    # keep_original no longer needs every pixel at compress: enhance stored the original.
    keep = StageSettings.model_validate({"compress": {"keep_original": True}})
    assert enhanced(Request(variants=["thumbnail"]), to_compress, keep) == (313, 209)


def test_keep_original_stores_validates_normalized_image_not_the_enhanced_one() -> None:
    settings = StageSettings.model_validate({"compress": {"keep_original": True}})
    # A dim, colour-cast photo: the auto profile changes every pixel of it.
    cast = Image.fromarray((np.asarray(photo("coffee")) * [0.5, 0.4, 0.3]).astype(np.uint8))
    validated = image_stages.validate_stage(
        _envelope(), encode(cast, "PNG"), _validate_ctx(settings)
    )
    normalized = validated.blobs[0].data
    enhanced = image_stages.enhance_stage(validated.envelope, normalized, _ctx(settings))
    assert enhanced.outcome == "ok"
    original, to_compress = enhanced.blobs
    assert original.key == "other/original/img-1.png" and original.bucket == "pixelfleet-images"
    stored = np.asarray(Image.open(io.BytesIO(original.data)))
    assert np.array_equal(stored, np.asarray(intermediate.decode(normalized)))
    assert not np.array_equal(stored, np.asarray(intermediate.decode(to_compress.data)))
    done = image_stages.compress_stage(enhanced.envelope, to_compress.data, _ctx(settings))
    assert not any("/original/" in blob.key for blob in done.blobs)  # written once, by enhance
    variants = {v.variant for v in done.envelope.record.variants}
    assert variants == {"thumbnail", "preview", "full", "original"}


def test_a_request_for_an_unknown_variant_is_a_bad_request() -> None:
    env = _envelope(Request(variants=["thumb"]))
    with pytest.raises(PermanentError) as caught:
        image_stages.compress_stage(env, encode(photo("coffee"), "PNG"), _ctx())
    assert caught.value.reason_class == "bad_request"
    assert "unknown variant(s) ['thumb'] (known: thumbnail, preview, full)" in caught.value.reason


def test_compress_keys_ratios_and_keep_original() -> None:
    # An image enhanced before enhance stored originals: compress keeps its own input.
    env = _envelope(Request(formats=["webp"], variants=["thumbnail", "preview"]))
    env.record.original = {"bytes": 1_000_000}
    settings = StageSettings.model_validate({"compress": {"keep_original": True}})
    result = image_stages.compress_stage(env, encode(photo("coffee"), "PNG"), _ctx(settings))
    keys = sorted(b.key for b in result.blobs)
    assert keys == [
        "other/original/img-1.png",
        "other/preview/img-1.webp",
        "other/thumbnail/img-1.webp",
    ]
    by_variant = {v.variant: v for v in result.envelope.record.variants}
    assert by_variant["thumbnail"].compression_ratio == pytest.approx(
        1_000_000 / by_variant["thumbnail"].bytes, rel=1e-3
    )
    assert by_variant["original"].width == 600
    assert all(b.bucket == "pixelfleet-images" for b in result.blobs)


def test_enhance_counts_an_input_by_its_decoded_pixels() -> None:
    env = _envelope()
    assert image_stages.decoded_bytes(env) is None  # validate has not measured it yet
    env.record.original = {"width": 8000, "height": 6000, "bytes": 12_000_000}
    assert image_stages.decoded_bytes(env) == 8000 * 6000 * 3
    spec = image_stages.stage_specs(StageSettings())["enhance"]
    assert spec.working_bytes is image_stages.decoded_bytes
