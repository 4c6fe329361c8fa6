"""What a TIFF stores per pixel, read from its first directory without decoding it.

TIFF can hold layouts Pillow has no mode for (RGB of 32-bit floats, CMYK with an alpha
sample, 12-bit samples...). Pillow then cannot even identify the file, which would read as
a damaged header; this says what the pixels are instead, so the refusal names the layout
and what to save the image as.
"""

from __future__ import annotations

import io
import struct

from PIL import TiffImagePlugin

_BITS, _PHOTOMETRIC, _SAMPLES, _SAMPLE_FORMAT = 258, 262, 277, 339
_WANTED = frozenset({_BITS, _PHOTOMETRIC, _SAMPLES, _SAMPLE_FORMAT})
# Field types that can hold these tags: SHORT and LONG.
_TYPES = {3: ("H", 2), 4: ("I", 4)}
# A first directory longer than this is no real TIFF's.
_MAX_ENTRIES = 4096
_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating point", 4: "untyped"}
_PHOTOMETRICS = {
    0: "grey, white is zero",
    1: "grey",
    2: "RGB",
    3: "palette",
    4: "mask",
    5: "CMYK",
    6: "YCbCr",
    8: "CIELab",
}


def _tags(data: bytes) -> dict[int, tuple[int, ...]] | None:
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        if ifd < 8:  # inside the header: no directory at all
            return None
        (count,) = struct.unpack_from(order + "H", data, ifd)
        if count > _MAX_ENTRIES:
            return None
        found: dict[int, tuple[int, ...]] = {}
        for index in range(count):
            tag, kind, n, inline = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * index)
            if tag not in _WANTED or kind not in _TYPES or n < 1:
                continue
            code, size = _TYPES[kind]
            n = min(n, 16)  # one value per sample; no layout has more
            if n * size <= 4:
                raw = inline
            else:
                (at,) = struct.unpack(order + "I", inline)
                raw = data[at : at + n * size]
            found[tag] = struct.unpack(order + code * n, raw[: n * size])
    except struct.error:
        return None  # cut short: a damaged header after all
    # A directory that says nothing about its pixels is no layout to name.
    return found if _PHOTOMETRIC in found or _BITS in found else None


def tiff_layout(data: bytes) -> str | None:
    """The first image's pixel layout in words ("3 samples of 32-bit floating point,
    RGB"), or None when the bytes hold no readable TIFF directory."""
    tags = _tags(data)
    if tags is None:
        return None
    samples = tags.get(_SAMPLES, (1,))[0]
    bits = sorted(set(tags.get(_BITS, (1,))))
    sample_format = _FORMATS.get(tags.get(_SAMPLE_FORMAT, (1,))[0], "unknown")
    photometric = tags.get(_PHOTOMETRIC, (None,))[0]
    space = _PHOTOMETRICS.get(photometric or 0, f"photometric {photometric}")
    if photometric is None:
        space = "no photometric interpretation"
    depth = "/".join(str(b) for b in bits)
    plural = "s" if samples != 1 else ""
    return f"{samples} sample{plural} of {depth}-bit {sample_format}, {space}"


def undecodable_layout(data: bytes) -> str | None:
    """The layout in words when the TIFF is whole but Pillow has no mode for its pixels;
    None when the failure is something else (a damaged or missing tag). Pillow's own
    reading of the header decides, so the two never disagree about what it decodes."""
    tags = _tags(data)
    if tags is None or not {_BITS, _PHOTOMETRIC, _SAMPLES} <= tags.keys():
        # Pillow fills a missing tag with a default that may name no mode: a file without
        # its own says nothing of its layout, and is damaged.
        return None
    try:
        TiffImagePlugin.TiffImageFile(io.BytesIO(data))
    except SyntaxError as exc:
        if str(exc) == "unknown pixel mode":
            return tiff_layout(data)
    except Exception:  # any other failure is damage, said as such by the caller
        return None
    return None
