"""Unusual but valid pixel modes come out as what they show: a colour key becomes alpha,
float and 32-bit grey keep their contrast."""

from __future__ import annotations

import io

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
