"""validate, categorize, enhance and compress as runner stages."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image

from processors import intermediate
from processors.categorize import Hints, ImageClassifier, categorize
from processors.compress import compress, largest_side, pre_reduce
from processors.enhance import choose_profile, enhance
from processors.validate import validate
from schemas.events import Category, Envelope, Variant
from streams.config.topics import route
from streams.runner.stage import BlobWrite, PermanentError, StageContext, StageResult, StageSpec
from streams.stages import dedup
from streams.stages.common import (
    admit_url,
    open_intermediate,
    ref,
    rejected_as_permanent,
    work_key,
)
from streams.stages.dedup import CatalogLink
from streams.stages.fingerprint import fingerprint
from streams.stages.settings import StageSettings

PNG = "image/png"


@dataclass(frozen=True)
class ValidateParams:
    stages: StageSettings
    catalog: CatalogLink | None = None  # None: no deduplication


def validate_stage(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    params: ValidateParams = ctx.params
    settings = params.stages
    if blob is None:
        raise PermanentError("missing_input", "validate needs the submitted image")
    submitted = envelope.submitted
    source = submitted.source.object
    name = submitted.hints.file_name or (source.key if source else None)
    result = rejected_as_permanent(
        lambda: validate(blob, settings.validate_, submitted.request.restore, declared_name=name)
    )
    record = envelope.record
    record.original = {**result.facts, "notes": result.notes}
    record.quality = result.quality
    record.restore = {"planned": result.restore} if result.restore else None
    record.fingerprint = fingerprint(settings, submitted.request)
    envelope.route = route(restore=result.restore is not None, fetch="fetch" in envelope.route)
    notes = list(result.notes)
    if params.catalog is not None:
        phash = result.facts.get("phash")
        verdict = dedup.ask(params.catalog, envelope, result.facts["sha256"], phash)
        record.near_duplicates = verdict.near
        notes += [verdict.note] if verdict.note else []
        if verdict.duplicate_of is not None:
            dedup.mark_duplicate(envelope, verdict.duplicate_of)
            said = f"duplicate of {verdict.duplicate_of.image_id}"
            return StageResult(envelope, detail="; ".join([said, *notes]))
    data, kind = intermediate.encode(result.image, result.exif)
    key = work_key("validate", envelope, "v2")
    record.current = ref(ctx.buckets.work, key, data, kind)
    detail = "; ".join(notes) or None
    return StageResult(envelope, [BlobWrite(ctx.buckets.work, key, data, kind)], detail=detail)


def categorize_stage(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    settings: StageSettings = ctx.params
    classifier = _classifier(settings.classifier) if settings.classifier else None
    image = open_intermediate(blob, "categorize") if classifier else None
    hints = envelope.submitted.hints
    source = envelope.submitted.source.object
    found = categorize(
        Hints(
            title=hints.title,
            keywords=tuple(hints.keywords),
            page_url=hints.page_url,
            file_name=hints.file_name or (source.key.rsplit("/", 1)[-1] if source else None),
        ),
        settings.categorize,
        image=image,
        classifier=classifier,
    )
    envelope.record.category = Category(
        name=found.category, score=found.score, evidence=found.evidence
    )
    return StageResult(envelope, detail=f"{found.category} ({found.score:g})")


def enhance_stage(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    settings: StageSettings = ctx.params
    image = open_intermediate(blob, "enhance")
    category = envelope.record.category.name if envelope.record.category else None
    profile = choose_profile(envelope.submitted.request.profile, category, settings.enhance)
    reference = _reference(settings.reference_image) if profile == "match" else None
    try:
        result = enhance(image, profile, settings.enhance, reference=reference)
    except ValueError as exc:
        raise PermanentError("bad_request", str(exc)) from exc
    envelope.record.enhancement = result.record()
    writes: list[BlobWrite] = []
    if settings.compress.keep_original:
        # enhance is the last stage that reads validate's normalized image: the original a
        # user asked to keep is stored from here, before any profile or model changes it.
        # It stays off the record's variants until compress finishes the image: until then
        # it would be the narrowest "variant" (the console's full-size thumbnail), and an
        # image rejected later would hand it out as its only output.
        write, envelope.kept_original = _original(envelope, blob, image, ctx)
        writes.append(write)
    kept = result.kept_original is not None or profile == "none"
    out = result.image
    if "restore" not in envelope.route:  # compress is next: hand it only what it uses
        request = envelope.submitted.request
        variants = tuple(request.variants) if request.variants else None
        out = pre_reduce(out, largest_side(settings.compress, variants), settings.compress)
    if kept and out is result.image:
        # Nothing changed: the next stage reads the same intermediate.
        return StageResult(
            envelope, writes, outcome="skipped", detail=result.kept_original or "profile none"
        )
    data, kind = intermediate.encode(out, image.info.get("exif"))
    key = work_key("enhance", envelope, profile, settings.enhance.model_dump_json(), out.size, "v3")
    envelope.record.current = ref(ctx.buckets.work, key, data, kind)
    writes.append(BlobWrite(ctx.buckets.work, key, data, kind))
    if kept:
        detail = f"{result.kept_original or 'profile none'}; reduced to {out.width}x{out.height}"
        return StageResult(envelope, writes, outcome="skipped", detail=detail)
    return StageResult(envelope, writes, detail=profile)


def _original(
    envelope: Envelope, blob: bytes | None, image: Image.Image, ctx: StageContext
) -> tuple[BlobWrite, Variant]:
    """The image `blob` holds, as `{category}/original/{image_id}.png` in the images bucket."""
    record = envelope.record
    category = record.category.name if record.category else "other"
    key = f"{category}/original/{record.image_id}.png"
    data = blob or b""
    if not blob or intermediate.is_framed(blob):  # a QOI frame is ours alone: ship a PNG
        data = intermediate.png_bytes(image, image.info.get("exif"))
    variant = Variant(
        variant="original",
        format="png",
        width=image.width,
        height=image.height,
        bytes=len(data),
        object=ref(ctx.buckets.images, key, data, PNG),
    )
    return BlobWrite(ctx.buckets.images, key, data, PNG), variant


def _listed_original(envelope: Envelope) -> Variant | None:
    """The original an enhance of an earlier version put straight into the record's variants
    (work in flight across the upgrade that moved it to `kept_original`)."""
    return next((v for v in envelope.record.variants if v.variant == "original"), None)


@cache
def _classifier(reference: str) -> ImageClassifier:
    module, _, name = reference.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PermanentError("bad_config", f"stages.classifier {reference!r}: {exc}") from exc
    return found  # type: ignore[no-any-return]


@cache  # one decode per process, not one per message; callers only read it
def _reference(path: str | None) -> Image.Image:
    if not path:
        raise PermanentError("bad_request", "the match profile needs stages.reference_image set")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise PermanentError("bad_request", f"reference image {path}: {exc}") from exc


def compress_stage(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    settings: StageSettings = ctx.params
    if blob is None:
        raise PermanentError("missing_input", "compress needs the previous stage's image")
    request = envelope.submitted.request
    formats = tuple(request.formats) if request.formats else None
    variants = tuple(request.variants) if request.variants else None
    try:
        outputs = compress(blob, settings.compress, formats=formats, variants=variants)
    except ValueError as exc:
        raise PermanentError("bad_request", str(exc)) from exc
    record = envelope.record
    category = record.category.name if record.category else "other"
    original_bytes = int((record.original or {}).get("bytes") or len(blob))
    writes: list[BlobWrite] = []
    made: list[Variant] = []
    for out in outputs:
        key = f"{category}/{out.variant}/{record.image_id}.{out.extension}"
        writes.append(BlobWrite(ctx.buckets.images, key, out.data, out.content_type))
        made.append(
            Variant(
                variant=out.variant,
                format=out.format,
                width=out.width,
                height=out.height,
                bytes=len(out.data),
                quality=out.quality,
                compression_ratio=round(original_bytes / max(1, len(out.data)), 3),
                object=ref(ctx.buckets.images, key, out.data, out.content_type),
            )
        )
    stored = envelope.kept_original or _listed_original(envelope)
    if settings.compress.keep_original and stored is None:
        # Enhanced before enhance stored originals (work in flight across an upgrade): the
        # input is all there is to keep.
        write, stored = _original(envelope, blob, intermediate.decode(blob), ctx)
        writes.append(write)
    # Only now, with the image done, is the original one of its outputs.
    record.variants = made + ([stored] if stored is not None else [])
    record.current = None
    return StageResult(envelope, writes, detail=f"{len(made)} outputs")


# Seconds of work per batch for the stages that take seconds per image: a batch is only
# seen downstream once committed, so short batches let the stages work side by side
# instead of in turns (a commit costs tens of milliseconds).
IMAGE_BATCH_BUDGET_S = 4.0


def decoded_bytes(envelope: Envelope) -> int | None:
    """The input's pixels once decoded (8-bit RGB), from the facts validate recorded: what
    a batch of enhance holds per image, many times its compressed size. Two 48 MP images
    (144 MB each) then no longer share a 256 MiB batch, and a pool process each."""
    original = envelope.record.original or {}
    width, height = original.get("width"), original.get("height")
    if not isinstance(width, int) or not isinstance(height, int):
        return None
    return width * height * 3


def stage_specs(
    settings: StageSettings, catalog: CatalogLink | None = None
) -> dict[str, StageSpec]:
    spec_args: dict[str, Any] = {
        "cpu_bound": True,
        "params": settings,
        "batch_budget_s": IMAGE_BATCH_BUDGET_S,
    }
    return {
        "validate": StageSpec(
            "validate",
            validate_stage,
            reads_blob=True,
            admit=admit_url,
            cpu_bound=True,
            params=ValidateParams(settings, catalog),
            batch_budget_s=IMAGE_BATCH_BUDGET_S,
        ),
        # Hints only unless a classifier is configured: then it needs the pixels too.
        "categorize": StageSpec(
            "categorize",
            categorize_stage,
            reads_blob=settings.classifier is not None,
            cpu_bound=settings.classifier is not None,
            params=settings,
        ),
        "enhance": StageSpec(
            "enhance", enhance_stage, reads_blob=True, working_bytes=decoded_bytes, **spec_args
        ),
        "compress": StageSpec("compress", compress_stage, reads_blob=True, **spec_args),
    }
