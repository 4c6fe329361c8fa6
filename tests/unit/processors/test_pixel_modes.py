"""Unusual but valid pixel modes come out as what they show: a colour key becomes alpha,
float and 32-bit grey keep their contrast."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from processors.validate import ValidateSettings, validate
from tests.support.icc import grey_profile, rgb_profile

S = ValidateSettings(min_bytes=0)  # flat test images compress to a few hundred bytes


def _png(image: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


def _alpha_where(data: bytes, key_at: tuple[int, int]) -> tuple[str, int, int]:
    out = validate(data, S).image
    assert out.mode == "RGBA"
    alpha = out.getchannel("A")
    return out.mode, alpha.getpixel(key_at), alpha.getpixel((0, 0))  # type: ignore[return-value]


def _keyed(mode: str, size: int = 64) -> tuple[Image.Image, object]:
    """An image whose pixel (5, 5) has the key colour and (0, 0) another."""
    if mode == "RGB":
        image = Image.new("RGB", (size, size), (200, 100, 50))
        image.putpixel((5, 5), (1, 2, 3))
        return image, (1, 2, 3)
    if mode == "1":
        image = Image.new("1", (size, size), 1)
        image.putpixel((5, 5), 0)
        return image, 0
    if mode == "I;16":
        image = Image.new("I;16", (size, size), 40_000)
        image.putpixel((5, 5), 7)
        return image, 7
    image = Image.new("L", (size, size), 180)
    image.putpixel((5, 5), 3)
    return image, 3


def test_a_colour_key_becomes_transparency_in_every_mode() -> None:
    for mode in ("RGB", "1", "I;16", "L"):
        image, key = _keyed(mode)
        assert _alpha_where(_png(image, transparency=key), (5, 5)) == ("RGBA", 0, 255), mode


def test_a_grey_colour_key_survives_colour_management() -> None:
    image, key = _keyed("L")
    grey = _grey_profile()
    assert _alpha_where(_png(image, transparency=key, icc_profile=grey), (5, 5))[1:] == (0, 255)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _raw_png(depth: int, colour: int, rows: list[bytes], width: int, key: bytes) -> bytes:
    """A PNG written byte by byte: Pillow writes neither 16-bit RGB nor 2-bit grey."""
    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour, 0, 0, 0)
    channels = 3 if colour == 2 else 1
    step = max(1, depth * channels // 8)  # bytes per pixel, as PNG's filters count them
    # Filter 1 (Sub) on every row: the pixels must come out right through PNG filtering.
    idat = zlib.compress(b"".join(b"\x01" + _sub_filtered(row, step) for row in rows))
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header), _chunk(b"tRNS", key),
                     _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))  # fmt: skip


def _sub_filtered(row: bytes, step: int) -> bytes:
    raw = np.frombuffer(row, np.uint8).astype(np.int16)
    out = raw.copy()
    out[step:] -= raw[:-step]
    return (out % 256).astype(np.uint8).tobytes()


def _rgb16(key: tuple[int, int, int], keyed: tuple[int, int, int]) -> bytes:
    """80x60 16-bit RGB: the left half `keyed`, the right half noise, tRNS `key`."""
    pixels = np.random.default_rng(0).integers(0, 65536, (60, 80, 3)).astype(">u2")
    pixels[:, :40] = keyed
    return _raw_png(16, 2, [row.tobytes() for row in pixels], 80, struct.pack(">HHH", *key))


def _transparent(data: bytes) -> int | None:
    image = validate(data, S).image
    return None if image.mode != "RGBA" else int((np.asarray(image.getchannel("A")) == 0).sum())


def test_a_16_bit_colour_key_is_compared_at_16_bits() -> None:
    # A key over 255 names a 16-bit colour, not one Pillow's 8-bit pixels can hold.
    assert _transparent(_rgb16((65535, 0, 0), (65535, 0, 0))) == 40 * 60
    # Black at 16 bits is 0, not every pixel under 256: the near-black half stays opaque.
    assert _transparent(_rgb16((0, 0, 0), (100, 200, 50))) == 0
    assert _transparent(_rgb16((100, 200, 50), (100, 200, 50))) == 40 * 60


def _grey2(key: int) -> bytes:
    """80x60 2-bit grey: the left half level 3 (white), the rest levels 0 to 2."""
    levels = np.random.default_rng(0).integers(0, 3, (60, 80), dtype=np.uint8)
    levels[:, :40] = 3
    packed = (
        (levels[:, 0::4] << 6) | (levels[:, 1::4] << 4) | (levels[:, 2::4] << 2) | levels[:, 3::4]
    )
    return _raw_png(2, 0, [row.tobytes() for row in packed], 80, struct.pack(">H", key))


def test_a_low_depth_grey_key_names_the_level_not_the_stretched_value() -> None:
    out = validate(_grey2(3), S).image
    alpha = np.asarray(out.getchannel("A"))
    assert (alpha[:, :40] == 0).all() and (alpha[:, 40:] == 255).all()
    assert np.asarray(out.convert("L"))[:, :40].min() == 255  # level 3 shows as white
    # A key past the depth's levels can match no pixel: the image stays opaque, no error.
    assert _transparent(_grey2(7)) is None


def test_an_8_bit_key_out_of_range_leaves_the_image_opaque() -> None:
    image = Image.new("RGB", (64, 64), (200, 100, 50))
    data = _png(image)
    at = data.index(b"IDAT") - 4  # a tRNS of 300/0/0 before the data: no 8-bit pixel is that
    keyed = data[:at] + _chunk(b"tRNS", struct.pack(">HHH", 300, 0, 0)) + data[at:]
    assert validate(keyed, S).image.mode == "RGB"


def _grey_profile() -> bytes:
    """A profile that is not sRGB, so the pixels go through colour management."""
    return grey_profile(gamma=1.0)


def _managed(image: Image.Image, profile: bytes, **params: object) -> tuple[Image.Image, str]:
    result = validate(_png(image, icc_profile=profile, **params), S)
    return result.image, str(result.facts["normalized"]["icc"])


def test_every_mode_with_a_profile_is_converted_through_it() -> None:
    """Linear-light grey 120 is sRGB 182; the RGB profile (sRGB's primaries, linear) moves
    each channel the same way. Alpha stays as it was."""
    grey, rgb = grey_profile(1.0), rgb_profile(1.0)
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([200, 100, 50, 9, 9, 9])
    keyed_palette = palette.copy()
    keyed_palette.putpixel((5, 5), 1)
    cases: dict[str, tuple[Image.Image, bytes, dict[str, object], tuple[int, ...]]] = {
        "L": (Image.new("L", (64, 64), 120), grey, {}, (182, 182, 182)),
        "LA": (Image.new("LA", (64, 64), (120, 200)), grey, {}, (182, 182, 182, 200)),
        "I;16": (Image.new("I;16", (64, 64), 30_840), grey, {}, (182, 182, 182)),
        "P": (palette, rgb, {}, (229, 168, 122)),
        "P keyed": (keyed_palette, rgb, {"transparency": 1}, (229, 168, 122, 255)),
    }
    for name, (image, profile, params, expected) in cases.items():
        out, said = _managed(image, profile, **params)
        got = out.getpixel((0, 0))
        assert isinstance(got, tuple)
        assert all(abs(a - b) <= 2 for a, b in zip(got, expected, strict=True)), (name, got)
        assert said.endswith("-> sRGB"), (name, said)
    out, _ = _managed(keyed_palette, rgb, transparency=1)
    assert out.getchannel("A").getpixel((5, 5)) == 0  # the keyed palette entry stays clear


def test_float_and_32_bit_grey_keep_their_contrast() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (64, 1))
    cases = {
        "float 0-1": Image.fromarray(ramp, "F"),
        "float -1-1": Image.fromarray(ramp * 2 - 1, "F"),
        "int32 large": Image.fromarray((ramp.astype(np.float64) * 2_000_000_000).astype(np.int32)),
    }
    for name, image in cases.items():
        buf = io.BytesIO()
        image.save(buf, "TIFF")
        out = np.asarray(validate(buf.getvalue(), S).image.convert("L"), dtype=np.float64)
        assert out[:, 0].mean() < 10 and out[:, -1].mean() > 245, name  # black to white
