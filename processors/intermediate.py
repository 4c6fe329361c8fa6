"""The lossless image one stage hands the next through the work bucket.

PNG, even at compression level 1, cost about 1 s to write and 0.4 s to read a 24-megapixel
photo on the development machine, twice per image on its way through the fleet. QOI
writes and reads the same photo in about 0.12 s each, for files about 1.4 times larger
(the work bucket expires them within a day). QOI has no place for metadata, so the
intermediate is a small frame:

    b"PFI1" | EXIF length (4 bytes, big-endian) | EXIF bytes | QOI image

Modes QOI cannot hold (greyscale, palette, 16-bit, ...) are written as PNG as before, and
`decode` reads either, so intermediates written before this change still read.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import qoi
from PIL import Image

MAGIC = b"PFI1"
CONTENT_TYPE = "application/x-pixelfleet-qoi"
PNG_TYPE = "image/png"
_HEADER = len(MAGIC) + 4


def png_bytes(image: Image.Image, exif: bytes | None = None) -> bytes:
    """PNG at compression level 1: the intermediate for modes QOI cannot hold."""
    out = io.BytesIO()
    params: dict[str, Any] = {"exif": exif} if exif else {}
    image.save(out, "PNG", compress_level=1, **params)
    return out.getvalue()


def encode(image: Image.Image, exif: bytes | None = None) -> tuple[bytes, str]:
    """The intermediate's bytes and content type."""
    if image.mode not in ("RGB", "RGBA"):
        return png_bytes(image, exif), PNG_TYPE
    meta = exif or b""
    pixels = qoi.encode(np.asarray(image))
    return b"".join((MAGIC, len(meta).to_bytes(4, "big"), meta, pixels)), CONTENT_TYPE


def is_framed(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def decode(data: bytes) -> Image.Image:
    """An intermediate, loaded; its EXIF (if any) in `info["exif"]`. Raises ValueError or
    OSError on bytes that are neither a frame nor an image."""
    if not is_framed(data):
        opened = Image.open(io.BytesIO(data))
        opened.load()
        return opened
    if len(data) < _HEADER:
        raise ValueError("a truncated intermediate frame")
    length = int.from_bytes(data[len(MAGIC) : _HEADER], "big")
    if _HEADER + length > len(data):
        raise ValueError("an intermediate frame whose EXIF runs past its end")
    exif = data[_HEADER : _HEADER + length]
    image = Image.fromarray(qoi.decode(data[_HEADER + length :]))
    if exif:
        image.info["exif"] = exif
    return image
