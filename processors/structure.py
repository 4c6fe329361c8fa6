"""Counting the parts of a file that Pillow walks one at a time in Python, before it does.

A JPEG may pad its markers with any number of 0xFF fill bytes, and Pillow skips those (and
any stray bytes between segments) a byte per loop turn: 49 MB of fill before the first
scan held a worker for 70 s. A PNG is a chain of chunks, and Pillow reads each chunk header
in Python: 4 million empty chunks took 20 s. Each compressed text chunk on that chain costs
Pillow an inflate of up to 1 MB, kept or not (2,000 of them took 5 s), so those are counted
on the same chain. The walks here are bounded by a cap and run
at C speed where the bytes allow (`re`, `bytes.find`), so a file is judged in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

_FILL = re.compile(rb"\xff+")
# Markers without a length: TEM, RST0-7 and SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_SOS = 0xDA


class JpegPreamble(NamedTuple):
    """What comes before a JPEG's first scan, each counted until one passes its cap."""

    padding: int  # bytes that belong to no segment
    segments: int  # markers met (standalone ones too)


def jpeg_padding(data: bytes, max_padding: int, max_segments: int) -> JpegPreamble:
    """Bytes before a JPEG's first scan that belong to no segment: fill bytes before a
    marker (legal, but a real file has none or a few) and stray bytes between segments,
    and the markers met there. Pillow reads each of those segments in Python, so the walk
    stops as soon as either count passes its cap: each turn of the loop adds padding or a
    marker, and a file of tiny segments is judged in a bounded number of turns. After the
    first scan the bytes are libjpeg's to read, in C."""
    pos, padding, segments, end = 2, 0, 0, len(data)
    while pos < end and padding <= max_padding and segments <= max_segments:
        if data[pos] != 0xFF:
            found = data.find(b"\xff", pos)
            stop = end if found < 0 else found
            padding += stop - pos
            pos = stop
            continue
        run = _FILL.match(data, pos)
        assert run is not None  # data[pos] is 0xFF
        padding += run.end() - pos - 1  # every 0xFF of the run but the marker's own
        if run.end() >= end:
            break
        marker = data[run.end()]
        pos = run.end() + 1
        if marker == 0x00:  # an escaped 0xFF outside any scan: two stray bytes
            padding += 2
            continue
        segments += 1
        if marker == _SOS:
            break
        if marker in _STANDALONE:
            continue
        if pos + 2 > end:
            break
        pos += int.from_bytes(data[pos : pos + 2], "big")  # the length counts itself
    return JpegPreamble(padding, segments)


def _png_chain(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of a PNG up to its IEND, as Pillow follows the chain: its type, where its
    data starts and its declared length. A chain that runs off the end stops here (the
    decoder then says what is wrong with it)."""
    pos, end = 8, len(data)
    while pos + 8 <= end:
        kind = data[pos + 4 : pos + 8]
        length = int.from_bytes(data[pos : pos + 4], "big")
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length  # length, type, data, CRC


def png_chunks(data: bytes, cap: int) -> int:
    """The chunks of a PNG up to its IEND, counted up to `cap` + 1."""
    count = 0
    for _chunk in _png_chain(data):
        count += 1
        if count > cap:
            break
    return count


def png_compressed_text(data: bytes, cap: int) -> int:
    """The text chunks of a PNG that Pillow inflates, counted up to `cap` + 1: every zTXt,
    and every iTXt whose compression flag is set. Pillow inflates each up to 1 MB whatever
    comes of it (text it keeps, a zlib error it swallows, text over its limits it refuses),
    so the count bounds that work before any of it is done. Only the chunk headers and an
    iTXt's keyword are read, no inflate."""
    count = 0
    for kind, start, length in _png_chain(data):
        if kind == b"zTXt" or (kind == b"iTXt" and _itxt_compressed(data, start, length)):
            count += 1
            if count > cap:
                break
    return count


def _itxt_compressed(data: bytes, start: int, length: int) -> bool:
    """Whether an iTXt's compression flag, the byte after its keyword's NUL, is set. Pillow
    takes the keyword to the first NUL, whatever its length, so this does too (a `find` at
    C speed, bounded by the chunk)."""
    stop = min(start + length, len(data))
    nul = data.find(b"\0", start, stop)
    return 0 <= nul < stop - 1 and data[nul + 1] != 0
