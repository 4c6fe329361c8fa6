"""Opening untrusted image bytes: sniff, bound, decode fully, normalize.

Everything here refuses early what can be refused from the header, then proves
integrity by decoding every pixel; nothing a file contains may crash the caller.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import NoReturn

import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError
from pillow_jxl import JpegXLImagePlugin

from processors.errors import InputRejectedError
from processors.pillow_limits import strict_decoding, truncated_allowed
from processors.sniff import gif_frames, jpeg_scans, jxl_size, sniff, tiff_pages
from processors.structure import jpeg_padding, png_chunks, png_compressed_text
from processors.tiff_layout import undecodable_layout

# Pillow names the file object in "cannot identify image file <_io.BytesIO object at 0x...>":
# an address that changes every run has no place in a reason people group by.
_FILE_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")
# Scans in a JPEG: baseline has one per component at most, encoders' progressive scripts a
# dozen or so; libjpeg-turbo's own tools suggest a cap of this order (-maxscans).
MAX_SCANS = 100
# Bytes before a JPEG's first scan that belong to no segment: Pillow reads them one at a
# time (about 1.4 us each), so this much costs it under 0.1 s.
MAX_JPEG_PADDING = 64 * 1024
# Markers in a JPEG other than its scans: a real file has tens (a few hundred with a large
# ICC profile or extended XMP split in 64 KB segments). Each costs a turn of a Python loop
# in our walks and in Pillow's before the first scan: ten million 4-byte comments took 12 s.
MAX_JPEG_SEGMENTS = 10_000
# Chunks of a PNG: libpng writes 8 KiB data chunks, so a 50 MB file has some 6,400; this
# many empty ones cost Pillow about half a second.
MAX_PNG_CHUNKS = 100_000

# HEIF/HEIC (every iPhone photo) and JPEG XL come from plugins; registering them is all it
# takes for Image.open. The JXL decoder would use every core; a stage's pool already does.
pillow_heif.register_heif_opener()
JpegXLImagePlugin.DECODE_THREADS = 1


# Compressed text chunks (every zTXt, every iTXt with its compression flag set) one PNG may
# hold before it is refused as `too_much_text`, counted before Pillow opens it. Pillow
# inflates each up to 1 MB whatever the outcome: it swallows a zlib error after the
# inflate, and skips its 64 MB total when the keyword is empty, so counting only what it
# refuses missed those (2,000 took 5 s and the file was accepted). A real file has a
# handful (XMP, a raw profile or two); this caps the inflating at 64 MB, some 0.2 s.
MAX_COMPRESSED_TEXT = 64


@dataclass(frozen=True)
class Limits:
    min_side: int
    max_side: int
    max_pixels: int
    formats: frozenset[str]
    # An animation is kept as its first frame; these refuse animation bombs outright.
    max_frames: int = 1000
    max_animation_pixels: int = 1_000_000_000


@dataclass(frozen=True)
class Opened:
    image: Image.Image  # fully decoded (the first frame of an animation)
    format: str  # what the bytes really are
    frames: int  # 1 for a still


def open_checked(data: bytes, limits: Limits) -> Opened:
    """Decode `data` completely or raise InputRejectedError."""
    true_format = sniff(data)
    if true_format is None:
        raise InputRejectedError(
            "unsupported_format", "not an image format we recognise by its first bytes"
        )
    if true_format not in limits.formats:
        allowed = ", ".join(sorted(limits.formats))
        raise InputRejectedError(
            "format_not_allowed", f"{true_format} is not allowed (allowed: {allowed})"
        )
    if true_format == "JXL":
        # The JXL plugin decodes every pixel when it opens the file: check the size first.
        try:
            _check_size(*jxl_size(data), limits)
        except ValueError as exc:
            raise InputRejectedError("corrupt_header", f"JXL header cannot be read: {exc}") from exc
    _check_structure(data, true_format)
    # Opening reads the header only; our own size check below names the dimensions, and
    # Pillow's limit comes back on for the full decode as a second line of defence.
    with strict_decoding(None):
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputRejectedError("decompression_bomb", str(exc)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as exc:
            # RuntimeError: the JXL plugin decodes every pixel at open, and says so for any
            # damage in them.
            if true_format == "JXL":
                raise InputRejectedError("corrupt", f"JXL cannot be decoded: {exc}") from exc
            layout = undecodable_layout(data) if true_format == "TIFF" else None
            if layout is not None:
                raise InputRejectedError(
                    "unsupported_layout",
                    f"a TIFF of {layout} per pixel, which pixelfleet does not decode; save "
                    "it as 8- or 16-bit integer RGB, RGBA, grey or CMYK",
                ) from exc
            raise InputRejectedError(
                "corrupt_header",
                f"{true_format} header cannot be read: {_FILE_REPR.sub('(the upload)', str(exc))}",
            ) from exc
        # A JPEG whose MPF segment lists more than one picture (stereo cameras, many
        # DSLRs' embedded previews) opens as MPO: still a JPEG, of which the primary
        # picture is the image.
        if true_format == "JPEG" and image.format == "MPO":
            image.format = "JPEG"
        if image.format != true_format:
            raise InputRejectedError(
                "header_mismatch",
                f"the bytes start like {true_format} but decode as {image.format}",
            )
        width, height = image.size
        _check_size(width, height, limits)
        frames = _frames(image, data, true_format, limits)
        if true_format == "TIFF":
            _keep_tiff_orientation(image)
        if true_format == "JPEG":
            _check_scans(data)
    with strict_decoding(limits.max_pixels):
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputRejectedError("decompression_bomb", str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, RuntimeError) as exc:
            # RuntimeError: libavif and libheif report damaged AVIF and HEIF pixels so.
            raise InputRejectedError(
                "truncated" if "truncated" in str(exc) or isinstance(exc, EOFError) else "corrupt",
                describe_damage(data, true_format, exc),
            ) from exc
    if image.size != (width, height):
        raise InputRejectedError(
            "header_mismatch", f"header says {width}x{height}, pixels are {image.size}"
        )
    return Opened(image, true_format, frames)


def _check_structure(data: bytes, fmt: str) -> None:
    """Refuse what Pillow would walk a byte or a chunk at a time in Python for minutes."""
    if fmt == "JPEG":
        preamble = jpeg_padding(data, MAX_JPEG_PADDING, MAX_JPEG_SEGMENTS)
        if preamble.segments > MAX_JPEG_SEGMENTS:
            _too_many_segments("before the first scan")
        if preamble.padding > MAX_JPEG_PADDING:
            # The walk stops once over the limit: the count is what it had met by then.
            raise InputRejectedError(
                "too_much_padding",
                f"at least {preamble.padding:,} bytes of padding before the first scan (the "
                f"limit is {MAX_JPEG_PADDING:,}; real files have none or a few)",
            )
    elif fmt == "PNG":
        if png_chunks(data, MAX_PNG_CHUNKS) > MAX_PNG_CHUNKS:
            raise InputRejectedError(
                "too_many_chunks",
                f"more than {MAX_PNG_CHUNKS:,} chunks (real files have thousands)",
            )
        # Charged whatever Pillow would make of each chunk: the inflate is the cost.
        if png_compressed_text(data, MAX_COMPRESSED_TEXT) > MAX_COMPRESSED_TEXT:
            raise InputRejectedError(
                "too_much_text",
                f"more than {MAX_COMPRESSED_TEXT} compressed PNG text chunks (real files "
                "have a handful)",
            )


def _check_scans(data: bytes) -> None:
    walk = jpeg_scans(data, MAX_SCANS, MAX_JPEG_SEGMENTS)
    if walk.segments > MAX_JPEG_SEGMENTS:
        _too_many_segments("in the image")
    if walk.scans > MAX_SCANS:
        # Each scan of a progressive JPEG is a pass over every pixel, and a scan can
        # take 12 bytes: 150 KB of them keep a worker busy for minutes.
        raise InputRejectedError(
            "too_many_scans", f"more than {MAX_SCANS} scans (real ones have a few dozen)"
        )


def _too_many_segments(where: str) -> NoReturn:
    raise InputRejectedError(
        "too_many_segments",
        f"more than {MAX_JPEG_SEGMENTS:,} JPEG segments {where} (real files have tens)",
    )


def _frames(image: Image.Image, data: bytes, fmt: str, limits: Limits) -> int:
    """The frame count, refusing animation bombs before any frame beyond the first decodes."""
    try:
        # GIF counts by walking its blocks (Pillow would read every frame); the other
        # formats declare the count in a header or index Pillow has already read.
        if fmt == "GIF":
            frames = gif_frames(data, limits.max_frames)
        elif fmt == "TIFF":
            frames = tiff_pages(data, limits.max_frames)
        elif fmt == "JPEG":
            frames = 1  # an MPO's further pictures are previews or the other eye, not frames
        else:
            frames = getattr(image, "n_frames", 1)
    except (OSError, ValueError, EOFError, struct.error, TypeError, RuntimeError) as exc:
        # RuntimeError: pillow-heif and libavif say so of a damaged image sequence.
        raise InputRejectedError(
            "corrupt_header", f"{fmt} frames cannot be counted: {exc}"
        ) from exc
    frames = max(1, int(frames))
    if frames > limits.max_frames:
        raise InputRejectedError(
            "animation_bomb", f"more than {limits.max_frames} frames (the limit)"
        )
    total = frames * image.width * image.height
    if total > limits.max_animation_pixels:
        raise InputRejectedError(
            "animation_bomb",
            f"{frames} frames of {image.width}x{image.height} = {total / 1e6:.0f} MP in all is "
            f"over the {limits.max_animation_pixels / 1e6:.0f} MP limit",
        )
    return frames


def _keep_tiff_orientation(image: Image.Image) -> None:
    """Pillow turns a TIFF upright as it loads it and deletes its Orientation tag: keep the
    value where validate reads a decoder's own rotation (as libheif's for HEIF)."""
    try:
        turned = image.tag_v2.get(ExifTags.Base.Orientation)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, TypeError, struct.error):
        return
    if isinstance(turned, int) and 2 <= turned <= 8:
        image.info["original_orientation"] = turned


def _check_size(width: int, height: int, limits: Limits) -> None:
    if min(width, height) < limits.min_side:
        raise InputRejectedError(
            "too_small", f"{width}x{height} px: the shorter side is under {limits.min_side} px"
        )
    if max(width, height) > limits.max_side:
        raise InputRejectedError(
            "too_large", f"{width}x{height} px: the longer side is over {limits.max_side} px"
        )
    if width * height > limits.max_pixels:
        raise InputRejectedError(
            "decompression_bomb",
            f"{width}x{height} = {width * height / 1e6:.0f} MP is over the "
            f"{limits.max_pixels / 1e6:.0f} MP limit",
        )


def describe_damage(data: bytes, fmt: str, exc: BaseException) -> str:
    """A reason a person understands; for JPEG, how much of the scan data decodes."""
    if fmt == "JPEG":
        share = _jpeg_rows_present(data)
        if share is not None:
            return f"truncated JPEG: {share:.0%} of scan data present".replace("%", " %")
    return f"damaged {fmt}: {exc}"


def _jpeg_rows_present(data: bytes) -> float | None:
    """Decode leniently and count the rows before the decoder's gray fill starts."""
    import numpy as np

    try:
        with truncated_allowed(), Image.open(io.BytesIO(data)) as image:
            image.draft("L", (image.width // 8 or 1, image.height // 8 or 1))
            gray = np.asarray(image.convert("L"), dtype=np.int16)
    except Exception:
        return None
    if gray.size == 0:
        return None
    flat = np.all(np.abs(gray - gray[-1:, :]) <= 1, axis=1) & (np.ptp(gray, axis=1) <= 1)
    rows = len(flat)
    missing = 0
    for is_flat in flat[::-1]:
        if not is_flat:
            break
        missing += 1
    return (rows - missing) / rows
