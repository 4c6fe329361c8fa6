from __future__ import annotations

import contextlib
import hashlib
import io
import random
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from processors.compress import CompressSettings, compress
from processors.errors import InputRejectedError
from processors.intermediate import png_bytes
from processors.validate import ValidateSettings, validate
from streams.config.topics import route
from tests.support.photos import big_photo, encode, noisy, photo

S = ValidateSettings()


def _rejected(
    data: bytes, reason_class: str, settings: ValidateSettings = S, **kwargs: object
) -> InputRejectedError:
    with pytest.raises(InputRejectedError) as caught:
        validate(data, settings, **kwargs)  # type: ignore[arg-type]
    assert caught.value.reason_class == reason_class, caught.value
    return caught.value


def test_a_real_jpeg_is_measured_and_small_ones_are_routed_to_upscale() -> None:
    data = encode(photo("coffee"), "JPEG", quality=92)
    result = validate(data, S)
    f = result.facts
    assert (f["format"], f["width"], f["height"], f["bytes"]) == ("JPEG", 600, 400, len(data))
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(f["phash"]) == 16 and len(f["dhash"]) == 16
    assert result.image.mode == "RGB" and result.image.size == (600, 400)
    q = result.quality
    assert q["resolution_score"] == pytest.approx(600 * 400 / (3840 * 2160), abs=1e-4)
    assert q["sharpness"] > 50 and 0 < q["brightness"] < 255 and q["colorfulness"] > 10
    assert result.restore == "upscale"
    assert route(restore=result.restore is not None) == [
        "validate",
        "categorize",
        "enhance",
        "restore",
        "compress",
    ]


def test_a_large_clean_photo_skips_restore_and_a_noisy_one_is_denoised() -> None:
    clean = big_photo("coffee", 3000)
    result = validate(encode(clean, "JPEG", quality=95), S)
    assert result.restore is None
    assert route(restore=result.restore is not None) == [
        "validate",
        "categorize",
        "enhance",
        "compress",
    ]
    noisy_result = validate(encode(noisy(clean, 25), "JPEG", quality=95), S)
    assert noisy_result.quality["noise"] > result.quality["noise"] + 5
    assert noisy_result.restore == "denoise"


def test_an_explicit_request_wins() -> None:
    data = encode(photo("coffee"))
    assert validate(data, S, restore="none").restore is None
    assert validate(data, S, restore="denoise").restore == "denoise"


def test_perceptual_hashes_survive_recompression_and_tell_photos_apart() -> None:
    a = validate(encode(photo("chelsea"), "JPEG", quality=95), S).facts
    b = validate(encode(photo("chelsea"), "JPEG", quality=60), S).facts
    c = validate(encode(photo("astronaut"), "JPEG", quality=95), S).facts

    def distance(x: str, y: str) -> int:
        return bin(int(x, 16) ^ int(y, 16)).count("1")

    assert distance(a["phash"], b["phash"]) <= 4
    assert distance(a["phash"], c["phash"]) > 16


def test_truncated_jpeg_says_how_much_is_there() -> None:
    data = encode(photo("astronaut"), "JPEG", quality=90)
    err = _rejected(data[: int(len(data) * 0.6)], "truncated")
    assert err.reason.startswith("truncated JPEG: ")
    share = int(err.reason.split(": ", 1)[1].split(" ", 1)[0])
    assert 35 <= share <= 75, err.reason


def test_truncated_png_is_rejected_not_loaded_gray() -> None:
    data = encode(photo("chelsea"), "PNG")
    with pytest.raises(InputRejectedError) as caught:
        validate(data[: len(data) // 2], S)
    assert caught.value.reason_class in ("truncated", "corrupt")


def test_corrupted_scan_data_is_rejected() -> None:
    data = bytearray(encode(photo("chelsea"), "PNG"))
    for i in range(len(data) // 2, len(data) // 2 + 200):
        data[i] ^= 0xFF
    with pytest.raises(InputRejectedError) as caught:
        validate(bytes(data), S)
    assert caught.value.reason_class in ("corrupt", "truncated")


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (7900, 7900)), "PNG", optimize=True)
    assert len(bomb) < 100_000  # tiny on disk, 62 MP in memory
    started = time.perf_counter()
    err = _rejected(bomb, "decompression_bomb")
    assert time.perf_counter() - started < 1.0
    assert "MP" in err.reason


def test_too_large_and_too_small_dimensions() -> None:
    any_size = ValidateSettings(min_bytes=0)
    _rejected(encode(Image.new("L", (9000, 60)), "PNG"), "too_large", any_size)
    _rejected(encode(Image.new("L", (40, 4000)), "PNG"), "too_small", any_size)


def test_bytes_outside_the_size_limits() -> None:
    _rejected(b"", "too_few_bytes")
    _rejected(b"\xff\xd8\xff" + b"\x00" * 500, "too_few_bytes")
    _rejected(b"x" * (S.max_bytes + 1), "too_many_bytes")


def test_unknown_bytes_and_disallowed_formats() -> None:
    _rejected(b"hello world, certainly not an image " * 100, "unsupported_format")
    ico = encode(photo("coffee").resize((64, 64)), "ICO")
    _rejected(ico + b"\x00" * 2000, "unsupported_format")
    only_png = ValidateSettings(formats=("PNG",))
    with pytest.raises(InputRejectedError) as caught:
        validate(encode(photo("coffee")), only_png)
    assert caught.value.reason_class == "format_not_allowed"


def test_wrong_extension_uses_the_content_and_says_so() -> None:
    result = validate(encode(photo("coffee"), "PNG"), S, declared_name="holiday.jpg")
    assert result.facts["format"] == "PNG"
    assert "does not match its content (PNG)" in result.notes[0]


def test_cmyk_jpeg_becomes_rgb_with_the_same_colours() -> None:
    rgb = photo("coffee")
    result = validate(encode(rgb.convert("CMYK"), "JPEG", quality=95), S)
    assert result.facts["normalized"]["mode_in"] == "CMYK"
    assert result.image.mode == "RGB"
    diff = np.abs(np.asarray(result.image, float) - np.asarray(rgb, float)).mean()
    assert diff < 12


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    sixteen = Image.fromarray(ramp)
    assert sixteen.mode == "I;16"
    data = encode(sixteen, "PNG")
    result = validate(data, ValidateSettings(min_bytes=0))
    assert result.image.mode == "RGB"
    row = np.asarray(result.image)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and abs(int(row[128]) - 128) <= 1


def test_palette_png_keeps_its_transparency() -> None:
    image = Image.new("P", (120, 80), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (60, 0, 120, 80))
    data = encode(image, "PNG", transparency=0)
    result = validate(data + b"", ValidateSettings(min_bytes=0))
    assert result.image.mode == "RGBA"
    px = result.image.load()
    assert px[10, 10][3] == 0 and px[100, 10] == (0, 255, 0, 255)


# Orientation n stores the picture transformed; these make the stored pixels from upright.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    upright = photo("coffee").copy()
    upright.paste((255, 0, 0), (0, 0, 120, 80))  # a red mark in the top-left corner
    op = _STORE[orientation]
    stored = upright.transpose(op) if op is not None else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = validate(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), S)
    assert result.image.size == (600, 400)
    corner = np.asarray(result.image)[10:70, 10:110].mean(axis=(0, 1))
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60, (orientation, corner)


def test_animated_gif_takes_the_first_frame_and_records_the_count() -> None:
    frames = [Image.new("RGB", (100, 100), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = validate(out.getvalue(), ValidateSettings(min_bytes=0))
    assert result.facts["normalized"]["frames"] == 3
    assert result.image.getpixel((50, 50))[:3] == (255, 0, 0)


def test_rgba_stays_rgba_and_an_srgb_profile_is_kept() -> None:
    rgba = photo("chelsea").convert("RGBA")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    result = validate(encode(rgba, "PNG", icc_profile=icc), S)
    assert result.image.mode == "RGBA"
    assert "sRGB" in str(result.facts["normalized"]["icc"])


def test_gps_is_stripped_unless_allowed() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Acme"
    exif[0x0110] = "Cam 1"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    data = encode(photo("coffee"), "JPEG", exif=exif.tobytes())
    kept = validate(data, S).facts["exif"]
    assert kept["camera_make"] == "Acme" and kept["camera_model"] == "Cam 1"
    assert "gps" not in kept
    assert "gps" in validate(data, ValidateSettings(keep_gps=True)).facts["exif"]


def test_the_normalized_intermediate_is_lossless() -> None:
    result = validate(encode(photo("chelsea"), "PNG"), S)
    again = Image.open(io.BytesIO(png_bytes(result.image)))
    assert np.array_equal(np.asarray(again), np.asarray(result.image))


_SEEDS = [
    encode(photo("chelsea").resize((160, 120)), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP")
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=4096)
    | st.tuples(st.sampled_from(range(4)), st.integers(0, 2**32), st.integers(1, 40)).map(
        lambda t: _mutate(_SEEDS[t[0]], t[1], t[2])
    )
)
def test_no_bytes_crash_or_hang_validate(data: bytes) -> None:
    small = ValidateSettings(min_bytes=0)
    started = time.perf_counter()
    with contextlib.suppress(InputRejectedError):
        validate(data, small)
    assert time.perf_counter() - started < 2.0


def _mutate(seed: bytes, rnd: int, flips: int) -> bytes:
    rng = random.Random(rnd)
    data = bytearray(seed)
    for _ in range(flips):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.3:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


def _exif_seed() -> tuple[bytes, int, int]:
    """A JPEG with a full EXIF block (IFD0, Exif IFD, GPS) and where that block lies."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112], exif[0x011A] = "Acme", "Cam 1", 6, 300.0
    exif.get_ifd(0x8769).update({0x829A: 1 / 60, 0x829D: 2.8, 0x9003: "2026:01:01 12:00:00"})
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0)})
    block = exif.tobytes()
    data = encode(photo("chelsea").resize((160, 120)), "JPEG", exif=block, quality=85)
    start = data.index(b"Exif\x00\x00")
    return data, start, start + len(block)


_EXIF_SEED = _exif_seed()


def _mutate_exif(rnd: int, flips: int, cut: bool) -> bytes:
    """The seed with bytes of its EXIF segment (only) changed, or the segment cut short
    while the JPEG's own segment length still claims the original size."""
    data, start, end = _EXIF_SEED
    rng = random.Random(rnd)
    out = bytearray(data)
    for _ in range(flips):
        out[rng.randrange(start + 6, end)] = rng.randrange(256)
    if cut:
        keep = rng.randrange(start + 6, end)
        out[keep:end] = b"\x00" * (end - keep)
    return bytes(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 30), st.booleans())
def test_mutated_exif_never_fails_a_photo(rnd: int, flips: int, cut: bool) -> None:
    """Whatever the EXIF bytes, the pixels are fine: validate accepts the photo, and the
    intermediate and the outputs carry only what writes cleanly."""
    result = validate(_mutate_exif(rnd, flips, cut), ValidateSettings(min_bytes=0, keep_gps=True))
    assert result.image.size in ((160, 120), (120, 160))
    intermediate = png_bytes(result.image, result.exif)
    outputs = compress(intermediate, CompressSettings(keep_exif=True), formats=("jpeg",))
    assert [o.variant for o in outputs] == ["thumbnail", "preview", "full"]
