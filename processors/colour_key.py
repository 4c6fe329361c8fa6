"""A colour key (PNG's tRNS on grey or truecolour pixels) as an alpha mask.

Pillow reads the key as the file stores it, at the file's bit depth, but hands over pixels
it has already scaled: 1-, 2- and 4-bit grey stretched to 0-255, 16-bit RGB cut to its high
bytes. Compared as they come, a 2-bit key never matches, a 16-bit key over 255 cannot even
be compared, and a 16-bit black key makes every pixel darker than 256/65536 transparent.
So the key is compared at the depth the file declares.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from processors.decode import strict_decoding

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _TRUECOLOUR = 0, 2


def png_depth(data: bytes | None) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, which must come first; None otherwise."""
    if data is None or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if len(data) < 26:
        return None
    return data[24], data[25]


def key_mask(image: Image.Image, source: bytes | None) -> Image.Image | None:
    """The alpha of a colour-keyed image (opaque where a pixel is not the key), the key
    taken out of its info. None when it has no key, keeps alpha its own way, or has a key
    no pixel of its depth can equal (the image is then opaque, as a decoder shows it)."""
    key = image.info.get("transparency")
    if key is None or image.mode in ("P", "PA", "LA", "RGBA"):
        return None
    image.info.pop("transparency")
    header = png_depth(source)
    depth = header[0] if header else 8
    opaque: NDArray[np.bool_] | None
    if image.mode == "RGB" and isinstance(key, tuple) and len(key) >= 3:
        if depth == 16 and header and header[1] == _TRUECOLOUR and source is not None:
            opaque = _rgb16_opaque(image, source, key[:3])
        else:
            opaque = _opaque(np.asarray(image), key[:3])
    elif image.mode == "1" and isinstance(key, int):
        opaque = np.asarray(image) != bool(key)
    elif isinstance(key, int) and image.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        if image.mode == "L" and header and header[1] == _GREY and depth in (1, 2, 4):
            key = _scaled_grey_key(key, depth)
        opaque = None if key is None else _opaque(np.asarray(image), (key,))
    else:
        opaque = None  # a key that does not fit the pixels: nothing is transparent
    if opaque is None:
        return None
    return Image.fromarray((opaque * 255).astype("uint8"), "L")


def _scaled_grey_key(key: int, depth: int) -> int | None:
    """A low-depth grey key as the 0-255 value Pillow stretches that grey level to."""
    top = (1 << depth) - 1
    if not 0 <= key <= top:
        return None  # the spec keeps the unused high bits zero: this key matches no pixel
    return key * 255 // top


def _opaque(pixels: NDArray[Any], key: tuple[int, ...]) -> NDArray[np.bool_] | None:
    """Where pixels differ from the key; None when the key is out of the pixels' range."""
    if pixels.dtype.kind in "iu":
        limits = np.iinfo(pixels.dtype)
        if any(not limits.min <= k <= limits.max for k in key):
            return None  # comparing would overflow, and no pixel can hold the value anyway
    wanted = np.asarray(key, dtype=pixels.dtype)
    if pixels.ndim == 3:
        return np.asarray(np.any(pixels[..., : len(key)] != wanted, axis=-1), dtype=bool)
    return np.asarray(pixels != wanted[0], dtype=bool)


def _rgb16_opaque(
    image: Image.Image, source: bytes, key: tuple[int, ...]
) -> NDArray[np.bool_] | None:
    """Compare a 16-bit RGB image with its key at 16 bits. Pillow keeps the high byte of
    each sample; decoding the same rows as little-endian keeps the low byte instead (the
    same 48 bits a pixel, so the same PNG filtering), and both bytes together are exact."""
    if any(not 0 <= k <= 0xFFFF for k in key):
        return None
    high = np.asarray(image)
    with strict_decoding(None), Image.open(io.BytesIO(source), formats=["PNG"]) as low_image:
        low_image.tile = [tile._replace(args="RGB;16L") for tile in low_image.tile]
        low_image.load()
        low = np.asarray(low_image)
    if low.shape != high.shape:
        return None  # not the frame we were given: leave the image opaque
    key_high = np.asarray([k >> 8 for k in key], dtype=np.uint8)
    key_low = np.asarray([k & 0xFF for k in key], dtype=np.uint8)
    return np.asarray(np.any((high != key_high) | (low != key_low), axis=-1), dtype=bool)
