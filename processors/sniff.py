"""What untrusted bytes are, read from their first bytes, before any decoder sees them.

Also the few facts a decoder would learn too late to refuse cheaply: the dimensions a JPEG
XL codestream declares (the JXL plugin decodes every pixel as soon as it opens a file),
and how many frames a GIF holds (Pillow walks them all to count).
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

# Magic numbers, checked in order.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\x0a", "JXL"),  # a bare JPEG XL codestream
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL"),  # the JPEG XL container
]
# ISO BMFF brands (the `ftyp` box). AVIF's brands win over the generic HEIF ones: an AVIF
# file often lists mif1 as well.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}
_HEIF_BRANDS |= {b"msf1", b"mif2"}
# How far into an ftyp box brands are read: real ones list a handful.
_MAX_FTYP = 256


def _brands(data: bytes) -> set[bytes]:
    if data[4:8] != b"ftyp" or len(data) < 16:
        return set()
    size = min(max(int.from_bytes(data[:4], "big"), 16), len(data), _MAX_FTYP)
    compatible = {data[i : i + 4] for i in range(16, size - 3, 4)}
    return {data[8:12], *compatible}


# The media type of each format sniff names: what an original is stored and served as,
# whatever the uploader's file name suggested.
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "JXL": "image/jxl",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
}


def media_type(data: bytes) -> str:
    """The media type of the bytes as sniffed; octet-stream for what is no image we read."""
    return MEDIA_TYPES.get(sniff(data) or "", "application/octet-stream")


def sniff(data: bytes) -> str | None:
    """The format the bytes really are (Pillow's name for it), or None."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    brands = _brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


# -- JPEG XL ----------------------------------------------------------------------------


class _Bits:
    """JPEG XL's bit reader: least significant bit first."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("JPEG XL header ends early")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def u32_size(self) -> int:
        """The U32 of SizeHeader: a 2-bit selector, then 9, 13, 18 or 30 bits, plus one."""
        return self.read((9, 13, 18, 30)[self.read(2)]) + 1


_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _codestream(data: bytes) -> bytes:
    """The codestream of a bare stream or of a container (its jxlc or first jxlp box)."""
    if data.startswith(b"\xff\x0a"):
        return data
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:  # a 64-bit size follows
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:  # the box runs to the end
            size = len(data) - pos
        if kind == b"jxlc":
            return data[pos + header : pos + size]
        if kind == b"jxlp":
            return data[pos + header + 4 : pos + size]  # after the part's index
        if size < header:
            break
        pos += size
    raise ValueError("JPEG XL container without a codestream box")


def jxl_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG XL SizeHeader (ISO/IEC 18181-1), or ValueError."""
    stream = _codestream(data)
    if not stream.startswith(b"\xff\x0a"):
        raise ValueError("not a JPEG XL codestream")
    bits = _Bits(stream[2:])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    ratio = bits.read(3)
    if ratio:
        num, den = _RATIOS[ratio]
        width = height * num // den
    else:
        width = (bits.read(5) + 1) * 8 if small else bits.u32_size()
    return width, height


# -- GIF --------------------------------------------------------------------------------


def gif_frames(data: bytes, cap: int) -> int:
    """The number of images in a GIF, counted up to `cap` + 1 by walking its blocks.

    Pillow's `n_frames` reads every frame to count them, so a GIF of a million tiny frames
    would keep a worker busy before any limit could refuse it.
    """
    if len(data) < 13:
        return 0
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 7) + 1)
    frames = 0
    while pos < len(data) and frames <= cap:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10
            if flags & 0x80:  # local colour table
                pos += 3 << ((flags & 7) + 1)
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW code size
        else:
            break  # garbage: what was counted stands
    return frames


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


# A JPEG marker where a decoder finds one: 0xFF, then a byte that is neither a stuffed zero
# (entropy-coded data), a restart marker (which lives inside entropy-coded data) nor more
# 0xFF fill. Searching for it is also how libjpeg resynchronises after stray bytes.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_EOI, _SOS = 0xD9, 0xDA
_STANDALONE = frozenset({0x01, 0xD8})  # TEM and SOI carry no length


class JpegScans(NamedTuple):
    """What a walk of a JPEG's segments met, each counted until one passes its cap."""

    scans: int  # start-of-scan segments
    segments: int  # every other marker met (fill bytes and RST markers are not markers here)


def jpeg_scans(data: bytes, cap: int, max_segments: int) -> JpegScans:
    """Start-of-scan segments of a JPEG, counted up to `cap` + 1, as the decoder meets them.

    Segments are skipped by their length (an APPn's EXIF thumbnail and its scans are not the
    image's), entropy-coded data up to the next real marker, and the count stops at the
    EOI that ends the image: what follows it, such as the MP4 of a motion photo, is never
    decoded, so its bytes (FF DA among them, by chance) are not scans. Each marker is one
    turn of a Python loop, so the walk also stops past `max_segments` other markers: 4-byte
    comments (or 2-byte TEMs) fill 38 MB with ten million of them.
    """
    scans, segments, pos = 0, 0, 2
    while scans <= cap and segments <= max_segments:
        found = _MARKER.search(data, pos)
        if found is None:
            break
        marker = data[found.start() + 1]
        pos = found.end()
        if marker == _EOI:
            break
        if marker == _SOS:
            scans += 1
        else:
            segments += 1
        if marker in _STANDALONE or pos + 2 > len(data):
            continue
        # The length counts its own two bytes; after an SOS header the scan's entropy-coded
        # data follows, which the next search steps over to the marker that ends it.
        pos += max(2, int.from_bytes(data[pos : pos + 2], "big"))
    return JpegScans(scans, segments)


def tiff_pages(data: bytes, cap: int) -> int:
    """The pages (IFDs) of a TIFF, counted up to `cap` + 1 by following their chain.

    Pillow's `n_frames` checks each page against a list of the ones seen, so a file of a
    hundred thousand chained pages takes minutes; a loop back to a page seen ends the count.
    """
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF header")
    order = "<" if data[:2] == b"II" else ">"
    (magic,) = struct.unpack_from(order + "H", data, 2)
    if magic == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        offset_format, count_format, entry, first = order + "Q", order + "Q", 20, 8
    elif magic == 42:
        offset_format, count_format, entry, first = order + "I", order + "H", 12, 4
    else:
        raise ValueError(f"TIFF magic {magic}")
    (offset,) = struct.unpack_from(offset_format, data, first)
    seen: set[int] = set()
    pages = 0
    count_size = struct.calcsize(count_format)
    while offset and offset not in seen and pages <= cap:
        if offset + count_size > len(data):
            break  # a dangling offset: the pages before it stand
        seen.add(offset)
        pages += 1
        (entries,) = struct.unpack_from(count_format, data, offset)
        after = offset + count_size + entries * entry
        if after + struct.calcsize(offset_format) > len(data):
            break
        (offset,) = struct.unpack_from(offset_format, data, after)
    return pages
