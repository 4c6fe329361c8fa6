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

from processors.pillow_limits import strict_decoding

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
        # Pillow reads any 1-bit key but 0 as white; one bit holds 0 and 1 only, so the
        # key is read from the file, and another (2, 255) names a level no pixel has.
        level = _png_grey_key(source) if header and header[1] == _GREY else min(key, 1)
        opaque = np.asarray(image) != bool(level) if level in (0, 1) else None
    elif isinstance(key, int) and image.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        if image.mode == "L" and header and header[1] == _GREY and depth in (1, 2, 4):
            key = _scaled_grey_key(key, depth)
        opaque = None if key is None else _opaque(np.asarray(image), (key,))
    else:
        opaque = None  # a key that does not fit the pixels: nothing is transparent
    if opaque is None:
        return None
    # 0 or 1 a byte, times 255 in place: no wider array for a 16 MP mask.
    alpha = opaque.astype(np.uint8)
    alpha *= 255
    return Image.fromarray(alpha, "L")


def _png_grey_key(source: bytes | None) -> int | None:
    """The grey key as a PNG's tRNS chunk stores it, or None. The chunks before IDAT are
    walked; decode.open_checked has already refused a file with too many to walk."""
    if source is None:
        return None
    pos = 8
    while pos + 10 <= len(source):
        length = int.from_bytes(source[pos : pos + 4], "big")
        kind = source[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return int.from_bytes(source[pos + 8 : pos + 10], "big") if length >= 2 else None
        if kind == b"IDAT":
            return None  # tRNS must come before the pixels
        pos += 12 + length
    return None


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
    return ~_matches(pixels, np.asarray(key, dtype=pixels.dtype))


def _matches(pixels: NDArray[Any], key: NDArray[Any]) -> NDArray[np.bool_]:
    """Where each channel equals the key's, compared channel by channel: numpy reduces a
    short last axis (np.all(..., axis=-1)) several times slower."""
    if pixels.ndim == 2:
        return np.asarray(pixels == key[0], dtype=bool)
    match = np.asarray(pixels[..., 0] == key[0], dtype=bool)
    for channel in range(1, len(key)):
        match &= pixels[..., channel] == key[channel]
    return match


def _rgb16_opaque(
    image: Image.Image, source: bytes, key: tuple[int, ...]
) -> NDArray[np.bool_] | None:
    """Compare a 16-bit RGB image with its key at 16 bits. Pillow keeps the high byte of
    each sample; decoding the same rows as little-endian keeps the low byte instead (the
    same 48 bits a pixel, so the same PNG filtering), and both bytes together are exact.
    That second decode costs more than the first, so it happens only when some pixel's
    high bytes are the key's: only those pixels can be the key."""
    if any(not 0 <= k <= 0xFFFF for k in key):
        return None
    key_high = np.asarray([k >> 8 for k in key], dtype=np.uint8)
    high = np.asarray(image)
    shape = high.shape
    maybe = _matches(high, key_high)
    del high  # the second decode's pixels take its place
    if not maybe.any():
        return np.ones(shape[:2], dtype=bool)
    with strict_decoding(None), Image.open(io.BytesIO(source), formats=["PNG"]) as low_image:
        low_image.tile = [tile._replace(args="RGB;16L") for tile in low_image.tile]
        low_image.load()
        low = np.asarray(low_image)
    if low.shape != shape:
        return None  # not the frame we were given: leave the image opaque
    key_low = np.asarray([k & 0xFF for k in key], dtype=np.uint8)
    opaque = ~maybe
    opaque[maybe] = np.any(low[maybe] != key_low, axis=-1)  # (pixels, 3): the few that may be
    return opaque
