"""A decoded image made upright, 8-bit RGB or RGBA and sRGB, saying what it changed.

decode.open_checked proves the bytes decode; this turns what they decode to into the one
kind of image every later stage works on.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageCms

from processors import exif
from processors.colour_key import key_mask

_SRGB = ImageCms.createProfile("sRGB")


def normalize(
    image: Image.Image, orientation: int, frames: int = 1, source: bytes | None = None
) -> tuple[Image.Image, dict[str, object]]:
    """Upright (by the EXIF orientation the caller read), 8-bit RGB or RGBA, in sRGB; says
    what it changed. An animation becomes the still of its first frame. `source`, the bytes
    the image was decoded from, lets a colour key be compared at the file's own depth."""
    changes: dict[str, object] = {"mode_in": image.mode}
    if frames > 1:
        image.seek(0)
        changes["frames"] = frames
    # A transparent colour (PNG's tRNS on RGB, grey, bilevel or 16-bit pixels) becomes an
    # alpha channel, taken before colour management and scaling change the pixel values it
    # names (and drop the image's info with it), and turned upright with the pixels.
    alpha = key_mask(image, source)
    upright = exif.upright(image, orientation)
    if alpha is not None:
        alpha = exif.upright(alpha, orientation)
    if orientation != 1:
        changes["orientation"] = orientation
    icc = upright.info.get("icc_profile")
    if isinstance(icc, bytes | bytearray) and icc:
        # Convert through the embedded profile first: a CMYK profile only makes sense on
        # the CMYK pixels it describes.
        upright = _managed(upright, bytes(icc), changes)
    elif icc:
        # A TIFF's ICC tag written with another type (ASCII, say) reads as text or numbers,
        # never a profile: the pixels are fine, so they go on as they are.
        changes["icc"] = "unreadable profile ignored"
    out = _to_8bit(upright)
    if alpha is not None:
        out = out.convert("RGB")
        out.putalpha(alpha)
        changes["transparency"] = "colour key -> alpha"
    changes["mode_out"] = out.mode
    return out, changes


def _managed(image: Image.Image, icc: bytes, changes: dict[str, object]) -> Image.Image:
    """The image through its embedded profile, in a mode LittleCMS converts: a palette's
    colours as RGB(A), a grey image with alpha as its grey channel (the alpha is put back
    after), deep grey as 8-bit grey first (the output is 8-bit anyway)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "CMYK", "L"):
        return _to_srgb(image, icc, changes)
    if mode in ("P", "PA"):
        return _to_srgb(_to_8bit(image), icc, changes)
    if mode == "LA":
        alpha = image.getchannel("A")
        colour = _to_srgb(image.getchannel("L"), icc, changes).convert("RGB")
        colour.putalpha(alpha)
        return colour
    if mode in _DEEP_GREY:
        return _to_srgb(_grey_8bit(image), icc, changes)
    changes["icc"] = f"profile on {mode} pixels ignored"
    return image


_DEEP_GREY = ("I;16", "I;16B", "I;16L", "I", "F")


def _grey_8bit(image: Image.Image) -> Image.Image:
    """Deep grey (16-bit, 32-bit, float) as 8-bit grey, scaled by its real range."""
    import numpy as np

    arr = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(arr)
    arr = np.where(finite, arr, 0.0)  # NaN and infinities: black, never garbage
    low, top = _value_range(image.mode, arr[finite] if finite.any() else np.zeros(1))
    scaled = (arr - low) / ((top - low) or 1.0) * 255.0 + 0.5
    return Image.fromarray(np.clip(scaled, 0, 255).astype("uint8"), "L")


def _to_8bit(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("LA", "PA") or (mode == "L" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode in _DEEP_GREY:
        return _grey_8bit(image).convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB")


def _value_range(mode: str, values: Any) -> tuple[float, float]:
    """The values black and white stand for. A 16-bit image spans 0-65535; a float one
    0-1 by convention; an I image 0-255 or 0-65535 when its values fit, else, like a float
    one outside 0-1, its own range (a 32-bit or signed image has no other scale)."""
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    low, high = float(values.min()), float(values.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if mode == "I" and low >= 0.0 and high <= 65535.0:
        return 0.0, 255.0 if high <= 255.0 else 65535.0
    return low, high


def _to_srgb(image: Image.Image, icc: bytes, changes: dict[str, object]) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(source).strip()
    except (OSError, TypeError, ImageCms.PyCMSError):
        # TypeError: LittleCMS is handed something that is no profile at all.
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
