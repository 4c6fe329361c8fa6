"""Opening untrusted image bytes: sniff, bound, decode fully, normalize.

Everything here refuses early what can be refused from the header, then proves
integrity by decoding every pixel; nothing a file contains may crash the caller.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from processors.errors import InputRejectedError

# Magic numbers of the formats we know, checked before Pillow sees the bytes.
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
]
_SRGB = ImageCms.createProfile("sRGB")


def sniff(data: bytes) -> str | None:
    """The format the bytes really are, from their magic number."""
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"mif1", b"msf1"):
        return "AVIF"
    return None


@contextlib.contextmanager
def _strict_decoding(max_pixels: int | None) -> Iterator[None]:
    # Pillow's limits are module globals; a processor runs one image at a time per
    # process, so setting them around one decode is safe and keeps callers pure.
    saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


@dataclass(frozen=True)
class Limits:
    min_side: int
    max_side: int
    max_pixels: int
    formats: frozenset[str]


def open_checked(data: bytes, limits: Limits) -> tuple[Image.Image, str]:
    """Decode `data` completely or raise InputRejectedError; return it and its true format."""
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
    # Opening reads the header only; our own size check below names the dimensions, and
    # Pillow's limit comes back on for the full decode as a second line of defence.
    with _strict_decoding(None):
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputRejectedError("decompression_bomb", str(exc)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputRejectedError(
                "corrupt_header", f"{true_format} header cannot be read: {exc}"
            ) from exc
        if image.format != true_format:
            raise InputRejectedError(
                "header_mismatch",
                f"the bytes start like {true_format} but decode as {image.format}",
            )
        width, height = image.size
        _check_size(width, height, limits)
    with _strict_decoding(limits.max_pixels):
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputRejectedError("decompression_bomb", str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise InputRejectedError(
                "truncated" if "truncated" in str(exc) or isinstance(exc, EOFError) else "corrupt",
                describe_damage(data, true_format, exc),
            ) from exc
    if image.size != (width, height):
        raise InputRejectedError(
            "header_mismatch", f"header says {width}x{height}, pixels are {image.size}"
        )
    return image, true_format


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

    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (image.width // 8 or 1, image.height // 8 or 1))
            gray = np.asarray(image.convert("L"), dtype=np.int16)
    except Exception:
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
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


def normalize(image: Image.Image) -> tuple[Image.Image, dict[str, object]]:
    """Upright, 8-bit RGB or RGBA, in sRGB; says what it changed."""
    changes: dict[str, object] = {"mode_in": image.mode}
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        image.seek(0)
        changes["frames"] = frames
    orientation = image.getexif().get(0x0112, 1)
    upright = ImageOps.exif_transpose(image) or image
    if orientation != 1:
        changes["orientation"] = orientation
    icc = upright.info.get("icc_profile")
    if icc and upright.mode in ("RGB", "RGBA", "CMYK", "L"):
        # Convert through the embedded profile first: a CMYK profile only makes sense on
        # the CMYK pixels it describes.
        upright = _to_srgb(upright, icc, changes)
    out = _to_8bit(upright)
    changes["mode_out"] = out.mode
    return out, changes


def _to_8bit(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("LA", "PA") or (mode == "L" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        # Scale by the data's own range: a 16-bit PNG spans 0-65535, an I image may not.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype("uint8")
        return Image.fromarray(gray).convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB")


def _to_srgb(image: Image.Image, icc: bytes, changes: dict[str, object]) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(source).strip()
    except (OSError, ImageCms.PyCMSError):
        changes["icc"] = "unreadable profile ignored"
        return image
    if "srgb" in name.lower() and image.mode in ("RGB", "RGBA"):
        changes["icc"] = name
        return image
    try:
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=mode)
    except ImageCms.PyCMSError:
        changes["icc"] = f"{name} (conversion failed, kept as is)"
        return image
    changes["icc"] = f"{name} -> sRGB"
    return converted if converted is not None else image
