"""The compress stage's image work: size variants x formats, as fast as the codecs allow.

Decode once (with JPEG DCT scaling at the largest size needed), derive each smaller
variant from the next larger one, never upscale, keep the aspect ratio.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from PIL import Image, ImageCms

# Registers the JXL encoder with Pillow (decode.py registers it for reading too).
from pillow_jxl import JpegXLImagePlugin  # noqa: F401
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors import exif as exif_tags
from processors import intermediate

# jxl is off by default (no browser but Safari shows it yet); ask for it per variant or
# per request.
Format = Literal["avif", "webp", "jpeg", "png", "jxl"]
EXTENSIONS: dict[str, str] = {
    "avif": "avif",
    "webp": "webp",
    "jpeg": "jpg",
    "png": "png",
    "jxl": "jxl",
}
CONTENT_TYPES: dict[str, str] = {
    "avif": "image/avif",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "jxl": "image/jxl",
}
_SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# What every encoder takes as a quality: 0 gives outputs nobody wants, and libavif and
# Pillow refuse over 100 only once an image is being encoded.
Quality = Annotated[int, Field(ge=1, le=100)]


class VariantSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    longest_side: int = Field(ge=1)
    formats: tuple[Format, ...] = Field(default=("avif", "webp", "jpeg"), min_length=1)
    # Quality per format; a format missing here uses CompressSettings.default_quality.
    quality: dict[str, Quality] = Field(default_factory=dict)
    # Search the quality (within quality_range) for the largest output under this size.
    target_bytes: int | None = Field(default=None, ge=1)

    @field_validator("quality")
    @classmethod
    def _known_formats(cls, quality: dict[str, int]) -> dict[str, int]:
        # A misspelt key ("jpg") would leave that format at the default quality, unsaid.
        unknown = sorted(set(quality) - set(get_args(Format)))
        if unknown:
            known = ", ".join(get_args(Format))
            raise ValueError(f"quality for unknown format(s) {unknown} (known: {known})")
        return quality


DEFAULT_VARIANTS = (
    VariantSpec(name="thumbnail", longest_side=150, quality={"avif": 70, "webp": 75, "jpeg": 80}),
    VariantSpec(name="preview", longest_side=500, quality={"avif": 75, "webp": 80, "jpeg": 85}),
    VariantSpec(name="full", longest_side=2048, quality={"avif": 80, "webp": 85, "jpeg": 90}),
)
LADDER_VARIANTS = (
    VariantSpec(name="low", longest_side=300, quality={"avif": 65, "webp": 70, "jpeg": 75}),
    VariantSpec(name="medium", longest_side=800, quality={"avif": 72, "webp": 78, "jpeg": 82}),
    VariantSpec(name="high", longest_side=1200, quality={"avif": 78, "webp": 83, "jpeg": 88}),
    VariantSpec(name="ultra", longest_side=2000, quality={"avif": 85, "webp": 88, "jpeg": 92}),
)
PROFILES: dict[str, tuple[VariantSpec, ...]] = {
    "default": DEFAULT_VARIANTS,
    "ladder": LADDER_VARIANTS,
}


class CompressSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str = "default"
    variants: tuple[VariantSpec, ...] | None = None  # overrides the profile's variants
    default_quality: Quality = 82
    quality_range: tuple[Quality, Quality] = (60, 95)
    webp_lossless: bool = False
    jpeg_background: tuple[int, int, int] = (255, 255, 255)  # JPEG has no alpha
    keep_exif: bool = False  # otherwise outputs carry no EXIF (the record keeps a subset)
    keep_original: bool = False
    avif_speed: int = Field(default=8, ge=0, le=10)
    webp_method: int = Field(default=4, ge=0, le=6)
    # libjxl's effort: 1 fastest, 9 smallest; 7 is libjxl's own default.
    jxl_effort: int = Field(default=7, ge=1, le=9)
    encoder_threads: int = Field(default=1, ge=1)
    resample: Literal["lanczos", "bicubic", "bilinear"] = "lanczos"
    # Pillow's reducing_gap: a box reduction by an integer factor first, leaving at least
    # this much scale to the filter; None filters the whole way. 1.0 resized a 21 MP photo
    # to 2048 px 2.5x faster, but its outputs lost SSIM against libvips' at the same bytes
    # (AVIF 0.9801 against 0.9820; 0.9827 at 2.0, 0.9832 with none:
    # bench/compress_vs_libvips.py), and speed is not bought with quality.
    reducing_gap: float | None = Field(default=2.0, ge=1.0)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        # Checked at start: otherwise every image fails in enhance (which sizes its output
        # for compress) and compress.
        if profile not in PROFILES:
            raise ValueError(f"unknown variant profile {profile!r} (known: {', '.join(PROFILES)})")
        return profile

    @field_validator("variants")
    @classmethod
    def _named_once(
        cls, variants: tuple[VariantSpec, ...] | None
    ) -> tuple[VariantSpec, ...] | None:
        if variants is None:
            return None
        if not variants:
            raise ValueError("lists no variant: every image would end with no outputs")
        names = [v.name for v in variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # both would be written to the same objects
            raise ValueError(f"variants named more than once: {twice}")
        return variants

    @model_validator(mode="after")
    def _range_in_order(self) -> CompressSettings:
        low, high = self.quality_range
        if low > high:  # the search would find no quality and ignore target_bytes
            raise ValueError(f"quality_range ({low}, {high}) must run from low to high")
        return self

    def variant_specs(self) -> tuple[VariantSpec, ...]:
        if self.variants is not None:
            return self.variants
        if self.profile not in PROFILES:
            raise ValueError(
                f"unknown variant profile {self.profile!r} (known: {', '.join(PROFILES)})"
            )
        return PROFILES[self.profile]


@dataclass(frozen=True)
class Output:
    variant: str
    format: str
    width: int
    height: int
    data: bytes
    quality: int | None
    # Input bytes over output bytes, where the input is what compress() was given (in the
    # fleet, the lossless intermediate). Not the record's Variant.compression_ratio, which
    # is over the bytes of the original upload.
    ratio_to_input: float

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def decode_for(data: bytes, largest: int) -> Image.Image:
    """Decode once; JPEG's DCT scaling skips the work for pixels we would throw away."""
    if intermediate.is_framed(data):
        return intermediate.decode(data)
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG" and max(image.size) > 2 * largest:
        scale = largest / max(image.size)
        image.draft("RGB", (max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    image.load()
    return image


def target_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    width, height = size
    if max(width, height) <= longest:
        return width, height  # never upscale
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def largest_side(settings: CompressSettings, variants: tuple[str, ...] | None = None) -> int:
    """The longest side of the largest variant compress will make (0: none)."""
    specs = [v for v in settings.variant_specs() if variants is None or v.name in variants]
    return max((v.longest_side for v in specs), default=0)


def pre_reduce(image: Image.Image, largest: int, settings: CompressSettings) -> Image.Image:
    """The integer box reduction compress's first resize starts with, done ahead.

    The stage before compress hands it only the pixels its largest variant uses: the
    intermediate shrinks with the square of the factor, and so do its encode, its trip
    through S3 and compress's decode. The variants come out as from the full image (to a
    pixel of rounding): compress's own resize then finds nothing left to reduce. With
    `reducing_gap` None the image goes on whole. (`keep_original` needs no whole image at
    compress: enhance stores the original from its own input.)
    """
    gap = settings.reducing_gap
    if gap is None or largest <= 0:
        return image
    factor = int(max(image.size) / largest / gap)
    if factor < 2:
        return image
    return image.reduce(factor)


def compress(
    data: bytes,
    settings: CompressSettings,
    formats: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
) -> list[Output]:
    """Every requested variant in every requested format, smallest variant first.

    Each variant is made in its configured formats, or in `formats` when given (a request's
    choice, which may name a format no variant lists, such as jxl).
    """
    unknown = sorted(set(formats or ()) - set(EXTENSIONS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown} (known: {', '.join(EXTENSIONS)})")
    specs = list(settings.variant_specs())
    unknown = sorted(set(variants or ()) - {v.name for v in specs})
    if unknown:
        # A request that names no variant we make would finish with no outputs at all.
        known = ", ".join(v.name for v in specs)
        raise ValueError(f"unknown variant(s) {unknown} (known: {known})")
    specs = [v for v in specs if variants is None or v.name in variants]
    if not specs:
        return []
    ordered = sorted(specs, key=lambda v: v.longest_side, reverse=True)
    decoded = decode_for(data, ordered[0].longest_side)
    # Outputs are upright (the pipeline's intermediates already are); whatever EXIF the
    # input carries, only tags that write cleanly go on.
    found = exif_tags.read(decoded)
    image = exif_tags.upright(decoded, found.orientation)
    exif = exif_tags.carried(found, keep_gps=True)[0] if settings.keep_exif else None
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert(
            "RGBA" if "transparency" in image.info or "A" in image.mode else "RGB"
        )
    original_bytes = len(data)
    outputs: list[Output] = []
    current = image
    for spec in ordered:
        size = target_size(current.size, spec.longest_side)
        if size != current.size:
            # Each variant comes from the next larger one: less work, same quality.
            current = current.resize(
                size, _RESAMPLE[settings.resample], reducing_gap=settings.reducing_gap
            )
        for fmt in formats if formats is not None else spec.formats:
            encoded, quality = _encode_variant(current, fmt, spec, settings, exif)
            outputs.append(
                Output(
                    variant=spec.name,
                    format=fmt,
                    width=current.width,
                    height=current.height,
                    data=encoded,
                    quality=quality,
                    ratio_to_input=round(original_bytes / max(1, len(encoded)), 3),
                )
            )
    return outputs[::-1]


def _encode_variant(
    image: Image.Image,
    fmt: str,
    spec: VariantSpec,
    settings: CompressSettings,
    exif: bytes | None,
) -> tuple[bytes, int | None]:
    if fmt == "png" or (fmt == "webp" and settings.webp_lossless):
        return encode(image, fmt, None, settings, exif), None
    quality = spec.quality.get(fmt, settings.default_quality)
    if spec.target_bytes is None:
        return encode(image, fmt, quality, settings, exif), quality
    return _search_quality(image, fmt, spec.target_bytes, settings, exif)


def _search_quality(
    image: Image.Image,
    fmt: str,
    target: int,
    settings: CompressSettings,
    exif: bytes | None,
) -> tuple[bytes, int]:
    """The highest quality in range whose output fits the target (the lowest if none does)."""
    low, high = settings.quality_range
    best: tuple[bytes, int] | None = None
    while low <= high:
        mid = (low + high) // 2
        data = encode(image, fmt, mid, settings, exif)
        if len(data) <= target:
            best = (data, mid)
            low = mid + 1
        else:
            high = mid - 1
    if best is None:
        q = settings.quality_range[0]
        return encode(image, fmt, q, settings, exif), q
    return best


JPEG_EXIF_MAX = 65_533


def encode(
    image: Image.Image,
    fmt: str,
    quality: int | None,
    settings: CompressSettings,
    exif: bytes | None = None,
) -> bytes:
    out = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": _SRGB_ICC}
    # A JPEG holds EXIF in one APP1 segment of at most 65,533 bytes (Pillow raises "EXIF
    # data is too long" past it): a larger block stays out of JPEG outputs only.
    if exif and (fmt != "jpeg" or len(exif) <= JPEG_EXIF_MAX):
        extra["exif"] = exif
    if fmt == "jpeg":
        rgb = flatten(image, settings.jpeg_background) if image.mode == "RGBA" else image
        subsampling = "4:2:0" if (quality or 0) < 90 else "4:4:4"
        try:
            rgb.save(
                out,
                "JPEG",
                quality=quality,
                progressive=True,
                optimize=True,
                subsampling=subsampling,
                **extra,
            )
        except OSError:
            # Progressive output is built in one buffer Pillow sizes at width x height bytes;
            # very noisy pictures at high quality outgrow it. Baseline JPEG streams instead.
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=quality, subsampling=subsampling, **extra)
    elif fmt == "webp":
        params = {"lossless": True} if quality is None else {"quality": quality}
        image.save(out, "WEBP", method=settings.webp_method, **params, **extra)
    elif fmt == "avif":
        image.save(
            out,
            "AVIF",
            quality=quality,
            speed=settings.avif_speed,
            max_threads=settings.encoder_threads,
            **extra,
        )
    elif fmt == "png":
        image.save(out, "PNG", optimize=False, compress_level=6, **extra)
    elif fmt == "jxl":
        # libjxl encodes in its own colour space and tags the result sRGB. exif=b"" stops the
        # plugin from serialising the image's own EXIF when we carry none.
        image.save(
            out,
            "JXL",
            quality=quality,
            effort=settings.jxl_effort,
            num_threads=settings.encoder_threads,
            exif=exif or b"",
        )
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return out.getvalue()


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    base = Image.new("RGB", image.size, background)
    base.paste(image, mask=image.getchannel("A"))
    return base
