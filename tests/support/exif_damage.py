"""Malformed EXIF blocks written byte by byte, the way broken cameras, editors and fuzzers
write them, to be embedded into real photographs (`Image.save(..., exif=block)` stores the
bytes as they are).

Each case is a TIFF structure after the `Exif\\0\\0` header. Offsets count from the start
of the TIFF header, as the format says.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_SIZE = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}

X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128
MAKE, MODEL, ORIENTATION, SOFTWARE, DATE_TIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
EXPOSURE_TIME, F_NUMBER, USER_COMMENT, MAKER_NOTE = 0x829A, 0x829D, 0x9286, 0x927C
DATE_ORIGINAL, FOCAL_LENGTH, LENS_MODEL = 0x9003, 0x920A, 0xA434
GPS_LATITUDE_REF, GPS_LATITUDE = 0x0001, 0x0002


@dataclass
class Entry:
    tag: int
    type: int
    count: int
    # Bytes of the value (placed inline when they fit in 4, else after the IFDs), or an
    # explicit offset written as is: the way to point past the end.
    data: bytes = b""
    offset: int | None = None


@dataclass
class Ifd:
    entries: list[Entry]
    next_offset: int = 0
    # Entries to claim in the count field; more than written is a truncated IFD.
    claimed: int | None = None
    sub: dict[int, Ifd] = field(default_factory=dict)  # pointer tag -> nested IFD


def rational(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("<II", n, d) for n, d in pairs)


def text(value: bytes) -> Entry:
    return Entry(MAKE, ASCII, len(value), value)


def tiff(root: Ifd, *, truncate_to: int | None = None) -> bytes:
    """Lay out IFD0 and its nested IFDs (little-endian), values after each IFD."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))

    def place(ifd: Ifd) -> int:
        start = len(out)
        count = len(ifd.entries) + len(ifd.sub)
        size = 2 + 12 * count + 4
        out.extend(b"\x00" * size)
        struct.pack_into("<H", out, start, ifd.claimed if ifd.claimed is not None else count)
        pos = start + 2
        entries = list(ifd.entries)
        pointers = [Entry(tag, LONG, 1) for tag in ifd.sub]
        for entry in sorted(entries + pointers, key=lambda e: e.tag):
            if entry.tag in ifd.sub and entry.type == LONG and not entry.data:
                struct.pack_into("<HHI", out, pos, entry.tag, LONG, 1)
                # The nested IFD goes after everything laid out so far.
                struct.pack_into("<I", out, pos + 8, place(ifd.sub[entry.tag]))
            else:
                struct.pack_into("<HHI", out, pos, entry.tag, entry.type, entry.count)
                if entry.offset is not None:
                    struct.pack_into("<I", out, pos + 8, entry.offset)
                elif len(entry.data) <= 4:
                    out[pos + 8 : pos + 8 + len(entry.data)] = entry.data
                else:
                    struct.pack_into("<I", out, pos + 8, len(out))
                    out.extend(entry.data + (b"\x00" if len(entry.data) % 2 else b""))
            pos += 12
        struct.pack_into("<I", out, pos, ifd.next_offset)
        return start

    place(root)
    data = bytes(out)
    return b"Exif\x00\x00" + (data[:truncate_to] if truncate_to else data)


def _camera(make: bytes = b"Canon\x00", model: bytes = b"EOS 5D\x00") -> list[Entry]:
    return [
        Entry(MAKE, ASCII, len(make), make),
        Entry(MODEL, ASCII, len(model), model),
    ]


def cases(seed: int = 7) -> dict[str, bytes]:
    """Every malformed block, by a name that says what is wrong with it."""
    rng = random.Random(seed)
    garbage = bytes(rng.randrange(256) for _ in range(4000))
    good_exif = Ifd([Entry(F_NUMBER, RATIONAL, 1, rational((28, 10)))])
    return {
        # What the first user's camera wrote: a resolution rational stored as text.
        "resolution_as_text": tiff(
            Ifd(
                [
                    *_camera(),
                    Entry(X_RESOLUTION, ASCII, 3, b"72\x00"),
                    Entry(Y_RESOLUTION, RATIONAL, 1, rational((72, 1))),
                    Entry(RESOLUTION_UNIT, SHORT, 1, struct.pack("<H", 2)),
                ]
            )
        ),
        "x_resolution_missing": tiff(
            Ifd(
                [
                    *_camera(),
                    Entry(Y_RESOLUTION, RATIONAL, 1, rational((300, 1))),
                    Entry(RESOLUTION_UNIT, SHORT, 1, struct.pack("<H", 2)),
                ],
                sub={EXIF_IFD: good_exif},
            )
        ),
        "rationals_of_the_wrong_type": tiff(
            Ifd(
                [Entry(X_RESOLUTION, SHORT, 1, struct.pack("<H", 72))],
                sub={
                    EXIF_IFD: Ifd(
                        [
                            Entry(EXPOSURE_TIME, ASCII, 5, b"1/60\x00"),
                            Entry(F_NUMBER, LONG, 1, struct.pack("<I", 28)),
                            Entry(FOCAL_LENGTH, UNDEFINED, 3, b"50m"),
                        ]
                    )
                },
            )
        ),
        "zero_denominators": tiff(
            Ifd(
                [Entry(X_RESOLUTION, RATIONAL, 1, rational((72, 0)))],
                sub={
                    EXIF_IFD: Ifd(
                        [
                            Entry(EXPOSURE_TIME, RATIONAL, 1, rational((0, 0))),
                            Entry(F_NUMBER, SRATIONAL, 1, struct.pack("<ii", -5, 0)),
                        ]
                    )
                },
            )
        ),
        "truncated_ifd": tiff(Ifd(_camera(), claimed=40), truncate_to=60),
        "block_cut_inside_a_value": tiff(
            Ifd(_camera(b"A very long camera maker name\x00")), truncate_to=40
        ),
        "offsets_past_the_end": tiff(
            Ifd(
                [
                    Entry(MAKE, ASCII, 50, offset=0x7FFF0000),
                    Entry(SOFTWARE, ASCII, 20, offset=0xFFFFFFF0),
                    Entry(EXIF_IFD, LONG, 1, struct.pack("<I", 0x00FFFFFF)),
                ]
            )
        ),
        "huge_counts": tiff(
            Ifd(
                [
                    Entry(MAKE, ASCII, 0x7FFFFFFF, offset=26),
                    Entry(X_RESOLUTION, RATIONAL, 0x10000000, offset=8),
                    Entry(DATE_TIME, ASCII, 0xFFFFFFFF, offset=8),
                ]
            )
        ),
        "recursive_ifds": tiff(
            Ifd(
                [*_camera(), Entry(EXIF_IFD, LONG, 1, struct.pack("<I", 8))],
                next_offset=8,  # IFD1 is IFD0 again
            )
        ),
        "non_utf8_strings": tiff(
            Ifd(
                _camera(b"\xff\xfe\xc3\x28Nik\xe9on\x00", b"\x80\x81\x82 D850\x00"),
                sub={
                    EXIF_IFD: Ifd(
                        [
                            Entry(
                                USER_COMMENT, UNDEFINED, 16, b"UNICODE\x00\xd8\x00\xdc\xff\xfe\x00"
                            ),
                            Entry(DATE_ORIGINAL, ASCII, 8, b"\xff\xff\xff\xff\xff\xff\xff\x00"),
                            Entry(LENS_MODEL, ASCII, 6, b"50\xa0mm\x00"),
                        ]
                    )
                },
            )
        ),
        "maker_note_of_garbage": tiff(
            Ifd(
                _camera(),
                sub={EXIF_IFD: Ifd([Entry(MAKER_NOTE, UNDEFINED, len(garbage), garbage)])},
            )
        ),
        "orientation_out_of_range_and_as_text": tiff(
            Ifd([Entry(ORIENTATION, ASCII, 2, b"6\x00"), Entry(SOFTWARE, SHORT, 1, b"\x63\x00")])
        ),
        "orientation_99": tiff(Ifd([Entry(ORIENTATION, SHORT, 1, struct.pack("<H", 99))])),
        "unknown_type_codes": tiff(
            Ifd([Entry(MAKE, 99, 4, b"abcd"), Entry(MODEL, 0, 2, b"xy"), *_camera()[1:]])
        ),
        "gps_of_the_wrong_types": tiff(
            Ifd(
                _camera(),
                sub={
                    GPS_IFD: Ifd(
                        [
                            Entry(GPS_LATITUDE_REF, RATIONAL, 1, rational((1, 1))),
                            Entry(GPS_LATITUDE, ASCII, 9, b"48.8566N\x00"),
                        ]
                    )
                },
            )
        ),
        "bad_byte_order": b"Exif\x00\x00XX*\x00\x08\x00\x00\x00" + b"\x00" * 20,
        "header_only": b"Exif\x00\x00",
        "random_bytes": b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + garbage[:600],
    }
