"""The validate stage's image work: refuse, decode, normalize, measure, plan restoring."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import imagehash
from PIL import ExifTags, Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from processors import exif
from processors.decode import Limits, open_checked
from processors.errors import InputRejectedError
from processors.normalize import normalize
from processors.pillow_limits import TEXT_SKIPPED
from processors.quality import measure

RestoreMode = Literal["auto", "denoise", "upscale", "none"]
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF", "JXL")
# Hashes are computed on a copy resized by us, with this filter, so that stored hashes stay
# comparable across library versions; the tag is stored beside them.
HASH_RESAMPLE = Image.Resampling.LANCZOS
HASH_VERSION = "v1-lanczos"
# A note names this many dropped EXIF tags; facts["exif_dropped"] up to MAX_DROPPED.
MAX_NAMED_TAGS = 8


class ValidateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_bytes: int = Field(default=1024, ge=0)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    formats: tuple[str, ...] = ALLOWED_FORMATS
    min_side: int = Field(default=50, ge=1)
    max_side: int = Field(default=8000, ge=1)
    # An error, not Pillow's warning: no file may make us allocate more than this.
    max_pixels: int = Field(default=50_000_000, ge=1)
    # Animations (GIF, WebP, APNG, AVIF and HEIF sequences) are kept as their first frame;
    # past these they are refused as animation bombs.
    max_frames: int = Field(default=1000, ge=1)
    max_animation_pixels: int = Field(default=1_000_000_000, ge=1)
    upscale_below: float = Field(default=0.25, ge=0, le=1)  # resolution score
    denoise_above: float = Field(default=6.0, ge=0)  # noise sigma, grey levels
    keep_gps: bool = False
    hash_size: int = 8

    @field_validator("hash_size")
    @classmethod
    def _hash_of_64_bits(cls, size: int) -> int:
        # The catalog's near-duplicate index and its lookup compare 64-bit perceptual hashes
        # (16 hex digits) and refuse any other length: another size would turn
        # deduplication off without a word. The setting stays, to say so where it is sought.
        if size != 8:
            raise ValueError(
                f"must be 8 (got {size}): the catalog compares 64-bit perceptual hashes, and "
                "any other size would turn deduplication off"
            )
        return size


@dataclass
class Validated:
    image: Image.Image  # upright, 8-bit RGB(A), sRGB
    facts: dict[str, Any]
    quality: dict[str, float]
    restore: str | None  # "denoise", "upscale" or None: the runner builds the route from it
    notes: list[str] = field(default_factory=list)
    # EXIF to carry to the outputs (orientation applied, GPS dropped unless allowed).
    exif: bytes | None = None


def validate(
    data: bytes,
    settings: ValidateSettings,
    restore: RestoreMode = "auto",
    declared_name: str | None = None,
) -> Validated:
    """Everything the validate stage learns about one image, or InputRejectedError."""
    size = len(data)
    if size < settings.min_bytes:
        raise InputRejectedError(
            "too_few_bytes", f"{size} bytes is under the {settings.min_bytes} byte minimum"
        )
    if size > settings.max_bytes:
        raise InputRejectedError(
            "too_many_bytes",
            f"{size / 2**20:.1f} MiB is over the {settings.max_bytes / 2**20:.0f} MiB limit",
        )
    limits = Limits(
        settings.min_side,
        settings.max_side,
        settings.max_pixels,
        frozenset(settings.formats),
        settings.max_frames,
        settings.max_animation_pixels,
    )
    opened = open_checked(data, limits)
    decoded, fmt = opened.image, opened.format
    notes = []
    if declared_name and not _extension_fits(declared_name, fmt):
        notes.append(
            f"file name {declared_name!r} does not match its content ({fmt}); used the content"
        )
    facts: dict[str, Any] = {
        "format": fmt,
        "mode": decoded.mode,
        "width": decoded.width,
        "height": decoded.height,
        "bytes": size,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    found = exif.read(decoded)
    facts["exif"] = exif_subset(found, settings.keep_gps)
    image, changes = normalize(decoded, found.orientation, opened.frames, source=data)
    skipped = decoded.info.pop(TEXT_SKIPPED, None)
    if skipped:
        notes.append(f"PNG text left out as unreadable or too large: {', '.join(skipped[:8])}")
    turned = decoded.info.get("original_orientation")
    if isinstance(turned, int) and turned != 1 and "orientation" not in changes:
        changes["orientation"] = turned  # HEIF: libheif applied it while decoding
    if opened.frames > 1:
        notes.append(f"animated ({opened.frames} frames): the first frame is kept as a still")
    carried, unwritable = exif.carried(found, settings.keep_gps)
    dropped = found.dropped + unwritable
    if dropped:
        # The camera wrote something unreadable; the pixels are fine, so say it and go on.
        # Each IFD entry can be one dropped name: a crafted block has thousands.
        facts["exif_dropped"] = dropped[:MAX_DROPPED] + (
            [f"... and {len(dropped) - MAX_DROPPED} more"] if len(dropped) > MAX_DROPPED else []
        )
        shown = ", ".join(dropped[:MAX_NAMED_TAGS])
        more = f" and {len(dropped) - MAX_NAMED_TAGS} more" if len(dropped) > MAX_NAMED_TAGS else ""
        notes.append(f"EXIF left out as unreadable or unwritable: {shown}{more}")
    facts["normalized"] = changes
    facts["width"], facts["height"] = image.size  # after orientation
    facts.update(hashes(image, settings.hash_size))
    quality = measure(image)
    return Validated(
        image=image,
        facts=facts,
        quality=quality,
        restore=plan_restore(quality, restore, settings),
        notes=notes,
        exif=carried,
    )


def hashes(image: Image.Image, hash_size: int) -> dict[str, str]:
    side = hash_size * 4
    small = image.convert("L").resize((side, side), HASH_RESAMPLE)
    return {
        "phash": str(imagehash.phash(small, hash_size=hash_size)),
        "dhash": str(imagehash.dhash(small, hash_size=hash_size)),
        "hash_version": HASH_VERSION,
    }


def plan_restore(
    quality: dict[str, float], requested: RestoreMode, settings: ValidateSettings
) -> str | None:
    """Whether this image is restored, and how: only where it helps (or is asked for)."""
    if requested == "none":
        restore = None
    elif requested in ("denoise", "upscale"):
        restore = requested
    elif quality["resolution_score"] < settings.upscale_below:
        restore = "upscale"
    elif quality["noise"] > settings.denoise_above:
        restore = "denoise"
    else:
        restore = None
    return restore


_EXIF_KEEP = {
    "Make": "camera_make",
    "Model": "camera_model",
    "LensModel": "lens",
    "DateTimeOriginal": "captured_at",
    "DateTime": "modified_at",
    "FNumber": "f_number",
    "ExposureTime": "exposure_time",
    "ISOSpeedRatings": "iso",
    "FocalLength": "focal_length",
}


def exif_subset(found: exif.ExifRead, keep_gps: bool) -> dict[str, Any]:
    """The few EXIF facts the record keeps, as plain JSON values."""
    out: dict[str, Any] = {}
    for tag, value in {**found.base, **found.exif}.items():
        name = ExifTags.TAGS.get(tag)
        if name in _EXIF_KEEP:
            out[_EXIF_KEEP[name]] = _plain(value)
    if keep_gps and found.gps:
        out["gps"] = {ExifTags.GPSTAGS.get(k, str(k)): _plain(v) for k, v in found.gps.items()}
    return out


# What one EXIF value may take in the record: the record is one Kafka message (1 MB at
# most), and a `Make` of two million characters would make it one no broker takes.
MAX_TEXT = 256
MAX_ITEMS = 16
MAX_DROPPED = 100


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value[: MAX_TEXT * 4].decode(errors="replace").strip("\x00 ")[:MAX_TEXT]
    if isinstance(value, tuple):
        return [_plain(v) for v in value[:MAX_ITEMS]]
    if isinstance(value, str | int | bool) or value is None:
        return value.strip("\x00 ")[:MAX_TEXT] if isinstance(value, str) else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
    "AVIF": (".avif",),
    "HEIF": (".heic", ".heif", ".hif", ".heics", ".heifs"),
    "JXL": (".jxl",),
}


def _extension_fits(name: str, fmt: str) -> bool:
    lower = name.lower()
    if "." not in lower.rsplit("/", 1)[-1]:
        return True
    return lower.endswith(_EXTENSIONS.get(fmt, ()))
