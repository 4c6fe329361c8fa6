"""EXIF as cameras, editors and fuzzers write it: read it, apply its orientation, carry it.

A camera that stores a resolution as text, an editor that truncates an IFD or an attacker
who points an offset past the end must never fail an image whose pixels are fine. Every
read here is guarded tag by tag; a tag is carried only once it has been written on its own;
what had to be left out is named, so the record can say so.

Pillow's `ImageOps.exif_transpose` re-serialises the whole EXIF block and raises on the
first malformed tag, so orientation is applied here without writing EXIF at all.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image

ORIENTATION = 0x0112
MAKER_NOTE = 0x927C
# Pointers to the sub-IFDs Pillow writes itself; copied as dictionaries, never as values.
_POINTERS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo, ExifTags.IFD.Interop, ExifTags.IFD.IFD1)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow's warning for a tag whose data is out of reach.
_SKIPPED_TAG = re.compile(r"Skipping tag (\d+)")
# No real block is larger than this (JPEG's APP1 tops out at 64 KiB; TIFF and HEIF can be
# bigger, but a carried block this size is almost certainly a thumbnail or garbage).
MAX_CARRIED_BYTES = 256 * 1024
# A TIFF's own layout tags (size, compression, strips, tiles, sample format...), which
# Pillow hands back as the EXIF of a TIFF: they describe the file they came in, and would
# mislabel every output (a 150 px thumbnail saying ImageWidth 3000, strip offsets into
# nothing).
_TIFF_LAYOUT = frozenset(
    {256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338, 339, 347}
    | {530, 531, 532}
)


@dataclass
class ExifRead:
    """Tags that could be read, by IFD, and the names of those that could not."""

    base: dict[int, Any] = field(default_factory=dict)
    exif: dict[int, Any] = field(default_factory=dict)
    gps: dict[int, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    @property
    def orientation(self) -> int:
        value = self.base.get(ORIENTATION, 1)
        return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _name(tag: int, names: dict[int, str]) -> str:
    return names.get(tag, f"tag 0x{tag:04x}")


def _tags(
    load: Callable[[], Any], names: dict[int, str], where: str, out: ExifRead
) -> dict[int, Any]:
    """Every tag of one IFD whose value can be read; the rest are named in `out.dropped`."""
    try:
        ifd = load()
        tags = list(ifd.keys()) if ifd is not None else []
    except Exception as exc:  # a truncated, looping or out-of-range IFD: skip it whole
        out.dropped.append(f"{where} ({type(exc).__name__})")
        return {}
    values: dict[int, Any] = {}
    for tag in tags:
        try:
            values[tag] = ifd[tag]  # values decode lazily: this is where bad ones raise
        except Exception:
            out.dropped.append(f"{where} {_name(tag, names)}")
    return values


def read(image: Image.Image) -> ExifRead:
    """The image's EXIF, as far as it can be read.

    Pillow skips what it cannot read with a warning (data past the end, a short IFD); those
    warnings are caught and named in `dropped` too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _read(image)
    for warning in caught:
        message = str(warning.message)
        skipped = _SKIPPED_TAG.search(message)
        if skipped:
            tag = int(skipped.group(1))
            out.dropped.append(f"{_name(tag, ExifTags.TAGS)} (its data lies past the end)")
        elif "EXIF" in message or "Tag" in message:
            out.dropped.append(f"part of an IFD ({message.strip().rstrip('.')})")
    return out


def _read(image: Image.Image) -> ExifRead:
    out = ExifRead()
    try:
        raw = image.info.get("exif")
        if isinstance(raw, bytes) and len(raw) > MAX_CARRIED_BYTES:
            # Too large to carry anyway, and parsing it costs time and memory in proportion
            # (a PNG, WebP or HEIF may hold megabytes of one tag's values).
            out.dropped.append(f"EXIF block ({len(raw)} bytes, over {MAX_CARRIED_BYTES})")
            return out
        if isinstance(raw, bytes):
            # Parsed afresh (not Pillow's cached copy from open time), so that what it
            # skips is warned about here, where we catch it.
            exif = Image.Exif()
            exif.load(raw)
        else:  # TIFF: the EXIF is the image's own tags
            exif = image.getexif()
    except Exception as exc:
        out.dropped.append(f"EXIF block ({type(exc).__name__})")
        return out
    out.base = {
        tag: value
        for tag, value in _tags(lambda: exif, ExifTags.TAGS, "IFD0", out).items()
        if tag not in _POINTERS and tag not in _TIFF_LAYOUT
    }
    if ExifTags.IFD.Exif in exif:
        out.exif = _tags(lambda: exif.get_ifd(ExifTags.IFD.Exif), ExifTags.TAGS, "Exif", out)
        out.exif.pop(ExifTags.IFD.Interop, None)
    if ExifTags.IFD.GPSInfo in exif:
        out.gps = _tags(lambda: exif.get_ifd(ExifTags.IFD.GPSInfo), ExifTags.GPSTAGS, "GPS", out)
    return out


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """The pixels as they are meant to be seen; the EXIF is not touched."""
    method = _TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _writes(ifd: dict[int, Any], tag: int | None = None) -> bool:
    """Whether Pillow can write this set of tags (at the base, or inside IFD `tag`)."""
    probe = Image.Exif()
    if tag is None:
        probe.update(ifd)
    else:
        probe[tag] = ifd
    try:
        probe.tobytes()
    except Exception:  # Pillow raises TypeError, ValueError, struct.error... on bad values
        return False
    return True


def carried(found: ExifRead, keep_gps: bool) -> tuple[bytes | None, list[str]]:
    """An EXIF block the outputs may carry, and the tags left out because they cannot be
    written. Orientation is left out (the pixels are upright); GPS unless allowed."""
    dropped: list[str] = []
    block = Image.Exif()
    for tag, value in found.base.items():
        if tag == ORIENTATION:
            continue
        if _writes({tag: value}):
            block[tag] = value
        else:
            dropped.append(f"IFD0 {_name(tag, ExifTags.TAGS)}")
    groups = [(ExifTags.IFD.Exif, found.exif, ExifTags.TAGS, "Exif")]
    if keep_gps:
        groups.append((ExifTags.IFD.GPSInfo, found.gps, ExifTags.GPSTAGS, "GPS"))
    for pointer, values, names, where in groups:
        good = {}
        for tag, value in values.items():
            if _writes({tag: value}, pointer):
                good[tag] = value
            else:
                dropped.append(f"{where} {_name(tag, names)}")
        if good:
            block[pointer] = good
    if not len(block):
        return None, dropped
    try:
        data = block.tobytes()
    except Exception:  # each tag wrote alone; together they still may not (offsets)
        return None, [*dropped, "the whole block (its tags do not write together)"]
    if len(data) > MAX_CARRIED_BYTES:
        return None, [*dropped, f"the whole block ({len(data)} bytes is too large to carry)"]
    return data, dropped
