from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from processors.compress import CompressSettings, VariantSpec, compress
from tests.support.photos import big_photo, encode, photo

S = CompressSettings()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_default_variants_in_every_format_with_their_sizes_and_qualities() -> None:
    source = encode(big_photo("coffee", 3000), "JPEG", quality=92)  # 3000x2000
    outputs = compress(source, S)
    got = {(o.variant, o.format): o for o in outputs}
    assert set(got) == {
        (v, f) for v in ("thumbnail", "preview", "full") for f in ("avif", "webp", "jpeg")
    }
    sizes = {"thumbnail": (150, 100), "preview": (500, 333), "full": (2048, 1365)}
    qualities = {"thumbnail": (70, 75, 80), "preview": (75, 80, 85), "full": (80, 85, 90)}
    for (variant, fmt), out in got.items():
        image = _open(out.data)
        assert image.format == {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG"}[fmt]
        assert image.size == sizes[variant] == (out.width, out.height)
        assert out.quality == qualities[variant][("avif", "webp", "jpeg").index(fmt)]
        assert out.ratio_to_input == pytest.approx(len(source) / len(out.data), rel=1e-3)
    assert got[("thumbnail", "jpeg")].ratio_to_input > 20
    assert outputs[0].variant == "thumbnail"  # smallest first


def test_never_upscales_and_keeps_the_aspect_ratio() -> None:
    small = encode(photo("coffee").resize((400, 300)), "PNG")
    outputs = {(o.variant, o.format): o for o in compress(small, S, formats=("jpeg",))}
    assert (outputs[("thumbnail", "jpeg")].width, outputs[("thumbnail", "jpeg")].height) == (
        150,
        112,
    )
    assert (outputs[("preview", "jpeg")].width, outputs[("preview", "jpeg")].height) == (400, 300)
    assert (outputs[("full", "jpeg")].width, outputs[("full", "jpeg")].height) == (400, 300)


def test_alpha_is_kept_where_formats_have_it_and_flattened_for_jpeg() -> None:
    rgba = photo("chelsea").convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 100, 100))  # a transparent corner
    settings = CompressSettings(
        variants=(
            VariantSpec(name="full", longest_side=451, formats=("avif", "webp", "png", "jpeg")),
        ),
        jpeg_background=(10, 200, 30),
    )
    outputs = {o.format: _open(o.data) for o in compress(encode(rgba, "PNG"), settings)}
    for fmt in ("avif", "webp", "png"):
        assert outputs[fmt].mode == "RGBA", fmt
        assert outputs[fmt].getpixel((20, 20))[3] == 0, fmt
        assert outputs[fmt].getpixel((300, 200))[3] == 255, fmt
    jpeg = outputs["jpeg"]
    assert jpeg.mode == "RGB"
    corner = np.asarray(jpeg)[5:90, 5:90].mean(axis=(0, 1))
    assert np.allclose(corner, (10, 200, 30), atol=8)


def test_outputs_carry_srgb_and_no_exif() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Acme"
    source = encode(photo("coffee"), "JPEG", exif=exif.tobytes())
    for out in compress(source, S):
        image = _open(out.data)
        assert image.info.get("icc_profile"), (out.variant, out.format)
        assert 0x010F not in image.getexif(), (out.variant, out.format)


def test_target_size_searches_the_quality() -> None:
    source = encode(big_photo("astronaut", 1600), "PNG")
    spec = VariantSpec(
        name="full", longest_side=1200, formats=("jpeg", "webp"), target_bytes=120_000
    )
    outputs = compress(source, CompressSettings(variants=(spec,)))
    for out in outputs:
        assert len(out.data) <= 120_000, out.format
        assert out.quality is not None and 60 <= out.quality <= 95
    roomy = VariantSpec(name="full", longest_side=1200, formats=("jpeg",), target_bytes=400_000)
    [bigger] = compress(source, CompressSettings(variants=(roomy,)))
    assert bigger.quality is not None and bigger.quality >= outputs[0].quality  # type: ignore[operator]


def test_the_ladder_profile_and_lossless_webp() -> None:
    source = encode(big_photo("chelsea", 2400), "JPEG", quality=95)
    ladder = compress(source, CompressSettings(profile="ladder"), formats=("webp",))
    assert [o.variant for o in ladder] == ["low", "medium", "high", "ultra"]
    assert [max(o.width, o.height) for o in ladder] == [300, 800, 1200, 2000]
    lossless = CompressSettings(
        variants=(VariantSpec(name="full", longest_side=451, formats=("webp", "png")),),
        webp_lossless=True,
    )
    original = photo("chelsea")
    outputs = {o.format: o for o in compress(encode(original, "PNG"), lossless)}
    assert outputs["webp"].quality is None
    assert np.array_equal(
        np.asarray(_open(outputs["webp"].data).convert("RGB")), np.asarray(original)
    )
    assert np.array_equal(
        np.asarray(_open(outputs["png"].data).convert("RGB")), np.asarray(original)
    )


def test_unknown_profile_is_a_clear_error() -> None:
    # Refused with the settings, before any image: not once per image in enhance.
    with pytest.raises(ValidationError, match="unknown variant profile 'huge'"):
        CompressSettings(profile="huge")


def test_a_request_for_a_variant_not_made_is_refused_naming_those_that_are() -> None:
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['thumb'\] \(known: thumb"):
        compress(encode(photo()), S, variants=("thumbnail", "thumb"))
    assert {out.variant for out in compress(encode(photo()), S, variants=("preview",))} == {
        "preview"
    }


def test_exif_travels_from_validate_to_the_outputs_only_when_asked() -> None:
    from processors.intermediate import png_bytes
    from processors.validate import ValidateSettings, validate

    exif = Image.Exif()
    exif[0x010F] = "Acme"
    exif[0x0112] = 6  # stored rotated
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    source = encode(
        photo("coffee").transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()
    )
    checked = validate(source, ValidateSettings())
    intermediate = png_bytes(checked.image, checked.exif)
    kept = compress(intermediate, CompressSettings(keep_exif=True), formats=("jpeg", "webp"))
    for out in kept:
        carried = _open(out.data).getexif()
        assert carried[0x010F] == "Acme", out.format
        assert 0x0112 not in carried and 0x8825 not in carried, out.format  # upright, no GPS
        assert (out.width, out.height) in ((150, 100), (500, 333), (600, 400))
    for out in compress(intermediate, CompressSettings(), formats=("jpeg",)):
        assert 0x010F not in _open(out.data).getexif()


def test_a_rotated_jpeg_given_straight_to_compress_comes_out_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = photo("coffee").transpose(Image.Transpose.ROTATE_90)  # 400x600 on disk
    [out] = compress(
        encode(stored, "JPEG", exif=exif.tobytes()),
        CompressSettings(),
        formats=("jpeg",),
        variants=("preview",),
    )
    assert (out.width, out.height) == (500, 333)


def test_a_rotated_jpeg_keeps_its_exif_and_still_comes_out_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Acme"
    stored = photo("coffee").transpose(Image.Transpose.ROTATE_90)
    [out] = compress(
        encode(stored, "JPEG", exif=exif.tobytes()),
        CompressSettings(keep_exif=True),
        formats=("jpeg",),
        variants=("preview",),
    )
    assert (out.width, out.height) == (500, 333)
    carried = _open(out.data).getexif()
    assert carried[0x010F] == "Acme" and 0x0112 not in carried


def test_pure_noise_at_high_quality_still_makes_a_jpeg() -> None:
    # Found by a noisy photo in the restore pipeline: Pillow's progressive JPEG buffer is
    # width x height bytes, and noise at quality 90 (4:4:4) needs more than that.
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    outputs = compress(encode(Image.fromarray(noise), "PNG"), S, formats=("jpeg",))
    full = next(o for o in outputs if o.variant == "full")
    decoded = _open(full.data)
    assert decoded.format == "JPEG" and decoded.size == (300, 300)
    assert len(full.data) > 300 * 300  # bigger than the buffer Pillow guessed
    error = np.abs(np.asarray(decoded, dtype=int) - noise.astype(int)).mean()
    assert error < 12  # a real quality-90 encoding of the noise, not a blank image
