"""Photos whose EXIF is malformed in every way we could write go through every image
processor; what could not be read or written is named, never raised."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image

from processors import exif
from processors.categorize import CategorizeSettings, Hints, categorize
from processors.compress import CompressSettings, compress
from processors.enhance import EnhanceSettings, enhance
from processors.intermediate import png_bytes
from processors.validate import ValidateSettings, validate
from tests.support.exif_damage import cases, tiff
from tests.support.photos import encode, photo

CASES = cases()
S = ValidateSettings()


def _through_every_processor(data: bytes, keep_exif: bool) -> tuple[list[str], list[bytes]]:
    """validate -> categorize -> enhance -> compress as the stages call them."""
    result = validate(data, S, declared_name="photo.jpg")
    intermediate = png_bytes(result.image, result.exif)
    categorize(Hints(title="gold ring"), CategorizeSettings())
    enhanced = enhance(Image.open(io.BytesIO(intermediate)), "product", EnhanceSettings())
    again = png_bytes(enhanced.image, Image.open(io.BytesIO(intermediate)).info.get("exif"))
    outputs = compress(again, CompressSettings(keep_exif=keep_exif))
    return result.notes, [out.data for out in outputs]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_with_malformed_exif_goes_through_every_processor(name: str, fmt: str) -> None:
    data = encode(photo("coffee"), fmt, exif=CASES[name], quality=90)
    notes, outputs = _through_every_processor(data, keep_exif=True)
    assert len(outputs) == 9  # three variants in three formats
    for blob in outputs:
        with Image.open(io.BytesIO(blob)) as out:
            out.load()
            assert max(out.size) <= 600
            out.getexif()  # whatever we carried reads back
    assert all(isinstance(note, str) for note in notes)


def test_the_reported_case_names_the_dropped_tag_and_keeps_the_rest() -> None:
    """A resolution stored as text made Pillow's EXIF writer raise TypeError in validate."""
    data = encode(photo("coffee"), "JPEG", exif=CASES["resolution_as_text"], quality=90)
    result = validate(data, S)
    assert result.facts["exif_dropped"] == ["IFD0 XResolution"]
    assert any("XResolution" in note for note in result.notes)
    assert result.facts["exif"]["camera_make"] == "Canon"
    assert result.exif is not None
    carried = Image.Exif()
    carried.load(result.exif)
    assert carried[ExifTags.Base.Make] == "Canon"
    assert ExifTags.Base.XResolution not in carried
    assert carried[ExifTags.Base.YResolution] == 72


def test_unreadable_ifds_are_named_and_the_image_kept() -> None:
    found = exif.read(Image.open(io.BytesIO(encode(photo(), "JPEG", exif=CASES["truncated_ifd"]))))
    assert found.dropped or not found.base  # either named, or nothing was there to read
    looped = exif.read(
        Image.open(io.BytesIO(encode(photo(), "JPEG", exif=CASES["recursive_ifds"])))
    )
    assert looped.base[ExifTags.Base.Make] == "Canon"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_still_applies_beside_broken_tags(orientation: int) -> None:
    from tests.support.exif_damage import (
        ASCII,
        ORIENTATION,
        SHORT,
        X_RESOLUTION,
        Entry,
        Ifd,
    )

    block = tiff(
        Ifd(
            [
                Entry(ORIENTATION, SHORT, 1, orientation.to_bytes(2, "little")),
                Entry(X_RESOLUTION, ASCII, 3, b"72\x00"),
            ]
        )
    )
    base = photo("coffee")  # 600x400
    result = validate(encode(base, "JPEG", exif=block, quality=95), S)
    expected = (600, 400) if orientation == 3 else (400, 600)
    assert result.image.size == expected
    assert result.facts["normalized"]["orientation"] == orientation


def test_out_of_range_orientation_is_ignored() -> None:
    for name in ("orientation_99", "orientation_out_of_range_and_as_text"):
        data = encode(photo("coffee"), "JPEG", exif=CASES[name], quality=90)
        assert validate(data, S).image.size == (600, 400)


def test_a_tiffs_own_layout_tags_are_not_its_exif() -> None:
    # Pillow hands a TIFF's tags back as its EXIF: size, strips, compression describe the
    # file they came in and would mislabel every output.
    image = photo("coffee")
    buf = io.BytesIO()
    image.save(buf, "TIFF", tiffinfo={ExifTags.Base.Make: "Camera Co", 305: "editor"})
    found = exif.read(Image.open(io.BytesIO(buf.getvalue())))
    assert found.base.get(ExifTags.Base.Make) == "Camera Co"
    layout = {256, 257, 258, 259, 262, 273, 277, 278, 279, 284}
    assert not layout & set(found.base)


def test_an_exif_block_too_large_for_a_jpeg_stays_out_of_the_jpeg_outputs_only() -> None:
    image = photo("coffee")
    block = image.getexif()
    block.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"ASCII\0\0\0" + b"x" * 100_000
    buf = io.BytesIO()
    image.save(buf, "PNG", exif=block.tobytes())
    result = validate(buf.getvalue(), ValidateSettings())
    outputs = compress(
        png_bytes(result.image, result.exif),
        CompressSettings(keep_exif=True),
        formats=("jpeg", "webp"),
        variants=("thumbnail",),
    )
    by_format = {(o.variant, o.extension): o.data for o in outputs}
    jpeg = Image.open(io.BytesIO(by_format[("thumbnail", "jpg")]))
    webp = Image.open(io.BytesIO(by_format[("thumbnail", "webp")]))
    assert "exif" not in jpeg.info  # 100 KB cannot go in a JPEG's one APP1 segment
    assert len(webp.info["exif"]) > 100_000  # the other formats carry it as asked
