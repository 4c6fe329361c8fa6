"""Damage in a codec's stream or in metadata: each ends as a named rejection or an image
taken with the damage left out, never an exception validate did not expect."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from processors.errors import InputRejectedError
from processors.validate import ValidateSettings, validate
from tests.support.photos import encode

S = ValidateSettings(min_bytes=0)  # a 64x64 AVIF or HEIF is about 3 KB


def _noise(width: int = 64, height: int = 64) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _damaged(fmt: str) -> bytes:
    data = bytearray(encode(_noise(), fmt))
    if fmt == "AVIF":
        at = data.index(b"mdat") + 12  # the AV1 payload itself
        data[at : at + 16] = b"\xff" * 16
    else:
        data[data.index(b"hvcC") + 81] = 0  # the HEVC parameters: a size no frame has
    return bytes(data)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_a_damaged_avif_or_heif_is_refused_as_corrupt(fmt: str) -> None:
    # libavif and libheif raise RuntimeError for these, which once escaped as a crash.
    with pytest.raises(InputRejectedError) as caught:
        validate(_damaged(fmt), S)
    assert caught.value.reason_class == "corrupt"
    assert caught.value.reason.startswith(f"damaged {fmt}: ")


def test_bloated_xmp_in_a_png_is_left_out_and_the_photo_kept() -> None:
    # Photoshop's DocumentAncestors: megabytes of ids that zip to a few KB, past the 1 MB
    # Pillow inflates for one text chunk.
    xmp = "<x:xmpmeta>" + "<rdf:li>xmp.did:0123456789abcdef</rdf:li>" * 40_000 + "</x:xmpmeta>"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp, zip=True)
    info.add_text("Title", "kept")
    data = encode(_noise(100, 100), "PNG", pnginfo=info)
    assert len(data) < 64 * 1024 < len(xmp) // 16
    result = validate(data, S)
    assert np.array_equal(np.asarray(result.image), np.asarray(_noise(100, 100)))
    assert any(
        note == "PNG text left out as unreadable or too large: iTXt" for note in result.notes
    )
    # Pillow's own limit is back once validate is done: the process's other readers keep it.
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):
        Image.open(io.BytesIO(data))


def test_a_tiff_icc_tag_typed_as_text_is_ignored_and_said() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = bytearray(encode(_noise(), "TIFF", icc_profile=profile))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        if struct.unpack_from("<H", data, entry)[0] == 34675:  # InterColorProfile
            struct.pack_into("<H", data, entry + 2, 2)  # type ASCII: Pillow reads a str
    result = validate(bytes(data), S)
    assert result.facts["normalized"]["icc"] == "unreadable profile ignored"
    assert np.array_equal(np.asarray(result.image), np.asarray(_noise()))


def test_the_orientation_pillow_applies_to_a_tiff_is_recorded() -> None:
    image = Image.new("RGB", (100, 60), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # a red top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to view
    result = validate(encode(image, "TIFF", exif=exif), S)
    assert result.image.size == (60, 100)
    assert result.image.getpixel((55, 5)) == (255, 0, 0)  # the corner went top-right
    assert result.facts["normalized"]["orientation"] == 6
