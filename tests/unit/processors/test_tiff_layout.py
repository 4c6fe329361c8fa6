"""A TIFF whose pixel layout Pillow has no mode for is refused by name, not as damage."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import tifffile

from processors.errors import InputRejectedError
from processors.tiff_layout import tiff_layout
from processors.validate import ValidateSettings, validate

S = ValidateSettings(min_bytes=0)


def _tiff(pixels: Any, **options: Any) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, pixels, **options)
    return out.getvalue()


FLOAT_RGB = _tiff(np.random.default_rng(1).random((16, 16, 3), dtype=np.float32), photometric="rgb")
CMYK_ALPHA = _tiff(np.full((16, 16, 5), 90, np.uint8), photometric="separated", extrasamples=[2])


@pytest.mark.parametrize("order", ["<", ">"])
def test_the_layout_is_read_in_either_byte_order(order: str) -> None:
    pixels = np.zeros((8, 8, 3), np.float32)
    data = _tiff(pixels, byteorder=order, photometric="rgb")
    assert tiff_layout(data) == "3 samples of 32-bit floating point, RGB"


def test_layouts_in_words() -> None:
    assert tiff_layout(CMYK_ALPHA) == "5 samples of 8-bit unsigned integer, CMYK"
    grey = _tiff(np.zeros((8, 8), np.uint16))
    assert tiff_layout(grey) == "1 sample of 16-bit unsigned integer, grey"


def test_bytes_that_hold_no_directory_say_nothing() -> None:
    assert tiff_layout(b"II*\x00\xff\xff\xff\x7f") is None  # the directory is past the end
    assert tiff_layout(b"MM\x00*\x00\x00\x00\x08\x00") is None  # cut inside its count
    assert tiff_layout(b"\x89PNG\r\n\x1a\n") is None


@pytest.mark.parametrize(
    ("data", "named"),
    [(FLOAT_RGB, "32-bit floating point, RGB"), (CMYK_ALPHA, "5 samples of 8-bit")],
)
def test_validate_refuses_an_undecodable_layout_by_name(data: bytes, named: str) -> None:
    with pytest.raises(InputRejectedError) as refused:
        validate(data, S)
    assert refused.value.reason_class == "unsupported_layout"
    assert named in str(refused.value) and "save it as" in str(refused.value)


def test_a_tiff_with_a_broken_directory_is_still_a_damaged_header() -> None:
    broken = FLOAT_RGB[:8] + b"\x00" * 4  # the directory offset points at nothing readable
    with pytest.raises(InputRejectedError) as refused:
        validate(broken, S)
    assert refused.value.reason_class != "unsupported_layout"


@pytest.mark.parametrize(
    "tag",
    [256, 258, 262, 277],  # ImageWidth, BitsPerSample, Photometric, SamplesPerPixel
)
def test_an_ordinary_tiff_missing_a_tag_is_damage_not_a_layout(tag: int) -> None:
    """An 8-bit RGB TIFF without one of its tags: Pillow's default for it may name no
    mode, but telling the user to save it as 8-bit RGB would be wrong."""
    data = bytearray(_tiff(np.zeros((16, 16, 3), np.uint8), photometric="rgb"))
    ifd = int.from_bytes(data[4:8], "little")
    for index in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        at = ifd + 2 + 12 * index
        if int.from_bytes(data[at : at + 2], "little") == tag:
            data[at : at + 2] = (65000).to_bytes(2, "little")  # a private tag instead
    with pytest.raises(InputRejectedError) as refused:
        validate(bytes(data) + b"\0" * 1024, S)
    assert refused.value.reason_class == "corrupt_header"
