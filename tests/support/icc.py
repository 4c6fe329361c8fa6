"""Small ICC v2 display profiles built from their parts, for tests that need a profile
that is not sRGB (Pillow can only make sRGB, Lab and XYZ ones): grey with a gamma curve,
and RGB with sRGB's primaries under another gamma."""

from __future__ import annotations

import struct

# D50, the profile connection space's white, and sRGB's primaries adapted to it.
D50 = (0.9642, 1.0, 0.8249)
PRIMARIES = {
    b"rXYZ": (0.4361, 0.2225, 0.0139),
    b"gXYZ": (0.3851, 0.7169, 0.0971),
    b"bXYZ": (0.1431, 0.0606, 0.7141),
}


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    body = struct.pack(">I", len(ascii_text)) + ascii_text
    body += struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67
    return b"desc\0\0\0\0" + body


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, data = b"", b""
    for signature, blob in tags:
        padded = blob + b"\0" * (-len(blob) % 4)
        entries += signature + struct.pack(">II", offset + len(data), len(blob))
        data += padded
    size = 128 + table_size + len(data)
    header = struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000)
    header += b"mntr" + space + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24
    header += struct.pack(">I", 0) + b"".join(_s15(v) for v in D50)
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + entries + data


def grey_profile(gamma: float = 1.0) -> bytes:
    """Grey pixels under a pure gamma curve (1.0: linear light)."""
    return _profile(
        b"GRAY",
        [
            (b"desc", _description(f"grey gamma {gamma}")),
            (b"wtpt", _xyz(D50)),
            (b"kTRC", _curve(gamma)),
        ],
    )


def rgb_profile(gamma: float = 1.0) -> bytes:
    """sRGB's primaries under a pure gamma curve: not sRGB, so pixels get converted."""
    tags = [(b"desc", _description(f"rgb gamma {gamma}")), (b"wtpt", _xyz(D50))]
    tags += [(name, _xyz(xyz)) for name, xyz in PRIMARIES.items()]
    tags += [(name, _curve(gamma)) for name in (b"rTRC", b"gTRC", b"bTRC")]
    return _profile(b"RGB ", tags)
