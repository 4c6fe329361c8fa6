"""The intermediate between stages: QOI in a small frame with the EXIF, PNG for the rest."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from processors import intermediate
from processors.compress import CompressSettings, compress
from tests.support.photos import photo


def test_rgb_and_rgba_travel_as_framed_qoi_with_their_exif_pixel_for_pixel() -> None:
    exif = Image.Exif()
    exif[0x0110] = "pixelfleet test camera"  # Model
    raw = exif.tobytes()
    for image in (photo("coffee"), photo("chelsea").convert("RGBA")):
        data, kind = intermediate.encode(image, raw)
        assert kind == intermediate.CONTENT_TYPE and intermediate.is_framed(data)
        back = intermediate.decode(data)
        assert back.mode == image.mode and back.size == image.size
        assert np.array_equal(np.asarray(back), np.asarray(image))
        assert back.info["exif"] == raw
    plain, _ = intermediate.encode(photo("rocket"))
    assert "exif" not in intermediate.decode(plain).info


def test_modes_qoi_cannot_hold_are_png_and_old_png_intermediates_still_read() -> None:
    grey = photo("coffee").convert("L")
    data, kind = intermediate.encode(grey)
    assert kind == "image/png" and data.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(intermediate.decode(data)), np.asarray(grey))
    legacy = intermediate.png_bytes(photo("coffee"))
    assert intermediate.decode(legacy).size == photo("coffee").size


def test_a_damaged_frame_is_an_error_not_an_image() -> None:
    data, _ = intermediate.encode(photo("coffee"))
    with pytest.raises(ValueError, match="truncated"):
        intermediate.decode(data[:6])
    with pytest.raises(ValueError, match="past its end"):
        intermediate.decode(intermediate.MAGIC + (10**6).to_bytes(4, "big") + b"xx")


def test_compress_reads_the_frame_as_it_reads_png() -> None:
    image = photo("coffee")
    framed, _ = intermediate.encode(image)
    settings = CompressSettings()
    from_frame = compress(framed, settings, formats=("webp",))
    from_png = compress(intermediate.png_bytes(image), settings, formats=("webp",))
    assert [(o.variant, o.width, o.height) for o in from_frame] == [
        (o.variant, o.width, o.height) for o in from_png
    ]
    assert [o.data for o in from_frame] == [o.data for o in from_png]
