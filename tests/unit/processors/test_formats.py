"""HEIF/HEIC and JPEG XL in, JPEG XL out, and animations kept as their first frame with
bombs refused before their frames decode."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
from PIL import Image, ImageCms

from processors.compress import CompressSettings, VariantSpec, compress
from processors.errors import InputRejectedError
from processors.intermediate import png_bytes
from processors.sniff import gif_frames, jxl_size, sniff
from processors.validate import ValidateSettings, validate
from tests.support.photos import encode, photo

S = ValidateSettings()


def _oriented(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 17"
    return exif.tobytes()


def _red_corner(image: Image.Image) -> bool:
    r, g, b = np.asarray(image.convert("RGB"))[5:40, 5:60].mean(axis=(0, 1))
    return bool(r > 180 and g < 90 and b < 90)


def _marked() -> Image.Image:
    """coffee (600x400) with a red mark in its top-left corner, to check orientation."""
    image = photo("coffee").copy()
    image.paste((255, 0, 0), (0, 0, 120, 80))
    return image


@pytest.mark.parametrize(
    "fmt", ["HEIF", "JXL", "JXL-container"], ids=["heic", "jxl", "jxl-container"]
)
def test_heic_and_jpeg_xl_are_validated_oriented_and_measured(fmt: str) -> None:
    # Stored rotated, with orientation 6 saying how to show it, as phones do.
    stored = _marked().transpose(Image.Transpose.ROTATE_90)
    params: dict[str, object] = {"quality": 90, "exif": _oriented(6)}
    if fmt == "JXL-container":
        params["use_container"] = True
    data = encode(stored, fmt.split("-", maxsplit=1)[0], **params)
    assert sniff(data) == fmt.split("-", maxsplit=1)[0]
    result = validate(data, S, declared_name="IMG_0001.HEIC" if fmt == "HEIF" else "a.jxl")
    assert result.facts["format"] == fmt.split("-", maxsplit=1)[0]
    assert result.image.size == (600, 400) and _red_corner(result.image)
    assert result.facts["normalized"]["orientation"] == 6
    assert result.facts["exif"]["camera_make"] == "Apple"
    assert result.quality["sharpness"] > 10 and result.quality["colorfulness"] > 10
    assert result.notes == []  # the extension fits, nothing dropped
    assert result.restore is None or result.restore == "upscale"


def test_a_heic_colour_profile_goes_through_colour_management() -> None:
    # Pillow can build no RGB profile but sRGB; that it is read and named shows the HEIF
    # profile takes the same path as every other format's (converted when not sRGB).
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(photo("coffee"), "HEIF", quality=90, icc_profile=srgb)
    result = validate(data, S)
    assert result.image.mode == "RGB" and result.facts["format"] == "HEIF"
    assert "sRGB" in str(result.facts["normalized"].get("icc"))


def test_avif_is_still_avif_though_it_lists_the_heif_brand() -> None:
    data = encode(photo("coffee"), "AVIF", quality=70)
    assert b"mif1" in data[:40]
    assert sniff(data) == "AVIF"
    assert validate(data, S).facts["format"] == "AVIF"


def test_heif_and_jxl_can_be_left_out_of_the_allow_list() -> None:
    narrow = ValidateSettings(formats=("JPEG", "PNG"))
    for fmt in ("HEIF", "JXL"):
        with pytest.raises(InputRejectedError) as refused:
            validate(encode(photo("coffee"), fmt, quality=80), narrow)
        assert refused.value.reason_class == "format_not_allowed"


@pytest.mark.parametrize("size", [(600, 400), (123, 457), (64, 64), (257, 129), (4000, 3000)])
def test_the_jpeg_xl_size_header_is_read_without_decoding(size: tuple[int, int]) -> None:
    image = photo("chelsea").resize(size)
    assert jxl_size(encode(image, "JXL", quality=70)) == size
    assert jxl_size(encode(image, "JXL", quality=70, use_container=True, exif=_oriented(1))) == size


def _jxl_header(width: int, height: int) -> bytes:
    """A JPEG XL codestream that declares these dimensions and holds nothing else."""
    bits: list[int] = [0]  # not "small"

    def put(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    put(3, 2)  # selector: 30-bit height - 1
    put(height - 1, 30)
    put(0, 3)  # no ratio: the width follows
    put(3, 2)
    put(width - 1, 30)
    raw = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        raw[i // 8] |= bit << (i % 8)
    return b"\xff\x0a" + bytes(raw) + b"\x00" * 4096


def test_a_jpeg_xl_bomb_is_refused_from_its_header() -> None:
    data = _jxl_header(60_000, 60_000)
    assert jxl_size(data) == (60_000, 60_000)
    started = time.perf_counter()
    with pytest.raises(InputRejectedError) as refused:
        validate(data, S)
    assert refused.value.reason_class == "too_large"
    assert time.perf_counter() - started < 1.0  # nothing was decoded
    with pytest.raises(InputRejectedError) as broken:
        validate(b"\xff\x0a" + b"\x00" * 2000, S)
    assert broken.value.reason_class in ("corrupt_header", "corrupt", "too_small")


def _animation(fmt: str, frames: int, size: tuple[int, int] = (120, 90)) -> bytes:
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]
    images = [Image.new("RGB", size, colours[i % 3]) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, fmt, save_all=True, append_images=images[1:], duration=80, loop=0)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_a_small_animation_becomes_a_still_of_its_first_frame(fmt: str) -> None:
    result = validate(_animation(fmt, 6), ValidateSettings(min_bytes=0))
    assert result.facts["normalized"]["frames"] == 6
    assert result.image.size == (120, 90)
    red, green, blue = result.image.getpixel((60, 45))[:3]
    assert red > 250 and green < 5 and blue < 5  # the first frame's red (WebP is lossy)
    assert "animated (6 frames): the first frame is kept as a still" in result.notes
    outputs = compress(png_bytes(result.image), CompressSettings(), formats=("webp",))
    with Image.open(io.BytesIO(outputs[-1].data)) as still:
        assert getattr(still, "n_frames", 1) == 1


def _gif_of_many_frames(frames: int, canvas: tuple[int, int], frame_side: int = 1) -> bytes:
    """A GIF whose logical screen is `canvas`, holding `frames` tiny images (hand-built:
    Pillow would take long to write, and our counter must not need Pillow to read)."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", *canvas) + bytes([0xF0, 0, 0]))
    out += b"\x00\x00\x00\xff\xff\xff"  # a two-colour global table
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for _ in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # 10 ms
        out += b"\x2c" + struct.pack("<HHHH", 0, 0, frame_side, frame_side) + b"\x00"
        out += b"\x02\x02\x44\x01\x00"  # LZW: min code size 2, one pixel
    return bytes(out + b"\x3b")


def test_gif_frames_are_counted_from_the_blocks_up_to_the_cap() -> None:
    assert gif_frames(_animation("GIF", 7), cap=100) == 7
    assert gif_frames(_gif_of_many_frames(5000, (64, 64)), cap=100) == 101
    assert gif_frames(b"GIF89a", cap=10) == 0


@pytest.mark.parametrize(
    ("frames", "canvas", "why"),
    [
        (50_000, (64, 64), "more than 1000 frames"),  # frame count
        (600, (2000, 2000), "MP in all"),  # 600 x 4 MP = 2.4 GP of pixels
    ],
    ids=["many-frames", "many-pixels"],
)
def test_an_animation_bomb_is_refused_before_its_frames_decode(
    frames: int, canvas: tuple[int, int], why: str
) -> None:
    data = _gif_of_many_frames(frames, canvas)
    started = time.perf_counter()
    with pytest.raises(InputRejectedError) as refused:
        validate(data, ValidateSettings(min_bytes=0))
    assert refused.value.reason_class == "animation_bomb"
    assert why in refused.value.reason
    assert time.perf_counter() - started < 2.0


def test_jpeg_xl_is_an_output_format_on_request_with_the_same_quality_handling() -> None:
    source = png_bytes(photo("coffee"))
    made = compress(source, CompressSettings(), formats=("jxl",))  # a request asks for it
    assert [(o.variant, o.format, o.quality) for o in made] == [
        ("thumbnail", "jxl", 82),
        ("preview", "jxl", 82),
        ("full", "jxl", 82),
    ]
    for out in made:
        with Image.open(io.BytesIO(out.data)) as back:
            assert back.format == "JXL" and max(back.size) == max(out.width, out.height)
    target = VariantSpec(name="small", longest_side=600, formats=("jxl",), target_bytes=20_000)
    fitted = compress(source, CompressSettings(variants=(target,)))
    assert len(fitted) == 1 and len(fitted[0].data) <= 20_000
    assert fitted[0].quality is not None and 60 <= fitted[0].quality <= 95
    default = compress(source, CompressSettings())
    assert {o.format for o in default} == {"avif", "webp", "jpeg"}  # jxl only when asked
    with pytest.raises(ValueError, match="unknown output format"):
        compress(source, CompressSettings(), formats=("jpeg2000",))


def test_a_jpeg_with_a_second_picture_is_a_jpeg_of_its_first() -> None:
    # MPF lists a second picture (a preview, a stereo pair's other eye): Pillow opens
    # such a file as MPO; it was refused as header_mismatch.
    first = photo("coffee")
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[first.resize((40, 30))])
    result = validate(buf.getvalue(), ValidateSettings())
    assert (result.facts["format"], result.image.size) == ("JPEG", first.size)
    assert result.notes == []  # one picture, not an animation
