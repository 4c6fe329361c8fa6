"""Counting the parts of a file that Pillow walks one at a time in Python, before it does.

A JPEG may pad its markers with any number of 0xFF fill bytes, and Pillow skips those (and
any stray bytes between segments) a byte per loop turn: 49 MB of fill before the first
scan held a worker for 70 s. A PNG is a chain of chunks, and Pillow reads each chunk header
in Python: 4 million empty chunks took 20 s. Both walks here are bounded by a cap and run
at C speed where the bytes allow (`re`, `bytes.find`), so a file is judged in milliseconds.
"""

from __future__ import annotations

import re
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


def png_chunks(data: bytes, cap: int) -> int:
    """The chunks of a PNG up to its IEND, counted up to `cap` + 1. A chain that runs off
    the end stops the count (the decoder then says what is wrong with it)."""
    pos, count, end = 8, 0, len(data)
    while pos + 8 <= end and count <= cap:
        length = int.from_bytes(data[pos : pos + 4], "big")
        count += 1
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return count
