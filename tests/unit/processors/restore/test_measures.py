"""The restore stage's no-reference measures: noise where it can show, on a bounded sample."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw

from processors.quality import channel_noise_sigma, luminance, noise_sigma
from processors.restore import measures
from tests.support.photos import noisy, photo


def _on_canvas(inner: Image.Image, ground: tuple[int, ...], mode: str) -> Image.Image:
    """`inner` centred on a 360x280 canvas of one colour (transparent for RGBA)."""
    canvas = Image.new(mode, (360, 280), ground)
    canvas.paste(inner.convert(mode), ((360 - inner.width) // 2, (280 - inner.height) // 2))
    return canvas


@pytest.mark.parametrize(
    ("ground", "mode"),
    [((0, 0, 0, 0), "RGBA"), ((255, 255, 255), "RGB"), ((0, 0, 0), "RGB")],
    ids=["transparent", "white margins", "black bars"],
)
def test_a_photo_on_a_flat_ground_gets_its_own_noise_level(
    ground: tuple[int, ...], mode: str
) -> None:
    inner = noisy(photo("coffee").resize((240, 160)), 20, seed=1)
    canvas = _on_canvas(inner, ground, mode)
    # The plain median sees the ground first: "no noise" (the old noise-level map).
    assert channel_noise_sigma(np.asarray(canvas.convert("RGB"))) == 0.0
    level = measures.channel_sigma(canvas)
    assert level is not None and abs(level - 20) < 0.3 * 20
    # The luminance estimate is the photo's own, not diluted by the ground.
    assert measures.sigma(canvas) == pytest.approx(measures.sigma(inner), rel=0.02)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
@pytest.mark.parametrize("sigma", [0.0, 8.0, 25.0])
def test_on_an_ordinary_photo_the_estimates_are_the_plain_ones(name: str, sigma: float) -> None:
    image = photo(name)  # 600x400, 451x300, 427x640: measured in one to four windows
    image = noisy(image, sigma, seed=2) if sigma else image
    assert len(measures.sample_boxes(*image.size)) == {"coffee": 2, "chelsea": 1}.get(name, 2)
    # Clean rocket: a few exactly flat 7x7 patches of its smooth sky go (0.3 %): +0.006.
    assert measures.sigma(image) == pytest.approx(noise_sigma(luminance(image)), abs=0.01)
    plain = channel_noise_sigma(np.asarray(image))
    assert measures.channel_sigma(image) == pytest.approx(plain, abs=0.01)


def test_a_graphic_of_flat_areas_and_thin_edges_is_measured_as_before() -> None:
    # Next to nothing is left once the flat areas go: every pixel counts, as before.
    logo = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(logo)
    draw.text((20, 20), "pixelfleet", fill="black")
    draw.ellipse((100, 50, 250, 180), fill=(200, 30, 30), outline="blue", width=3)
    assert measures.sigma(logo) == pytest.approx(noise_sigma(luminance(logo)))
    assert measures.channel_sigma(logo) == 0.0


def test_nothing_is_measured_on_an_image_under_3_pixels_thin() -> None:
    strip = photo("coffee").resize((300, 2))
    assert measures.sigma(strip) is None and measures.channel_sigma(strip) is None
    assert measures.removed_signal(strip, strip) == 0.0


def test_a_large_image_is_sampled_on_windows_spread_over_it() -> None:
    assert measures.sample_boxes(300, 200) == [(0, 0, 300, 200)]
    boxes = measures.sample_boxes(8000, 6000)
    assert sum((r - x) * (b - y) for x, y, r, b in boxes) <= measures.SAMPLE_PIXELS
    assert all(0 <= x < r <= 8000 and 0 <= y < b <= 6000 for x, y, r, b in boxes)
    assert boxes[0][:2] == (0, 0) and boxes[-1][2:] == (8000, 6000)  # corner to corner
    thin = measures.sample_boxes(100_000, 100, cap=500_000)
    assert sum((r - x) * (b - y) for x, y, r, b in thin) <= 500_000
    tiny_cap = measures.sample_boxes(1000, 1000, cap=100)
    assert sum((r - x) * (b - y) for x, y, r, b in tiny_cap) <= 100


def test_the_estimates_never_hold_the_whole_image_as_floats() -> None:
    image = noisy(photo("chelsea").resize((2000, 1500)), 10)
    cap = 250_000
    tracemalloc.start()
    try:
        level = measures.channel_sigma(image, cap=cap)
        luma = measures.sigma(image, cap=cap)
        removed = measures.removed_signal(image, image, cap=cap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Bounded by the sample, not the image: one float32 plane of the whole image would be
    # 12 MB, and float64 RGB (the old estimates' copies) 72 MB.
    assert peak < 24 * cap < 2000 * 1500 * 4
    assert level is not None and abs(level - 10) < 2.0
    assert luma is not None and removed == 0.0


def test_an_upscale_is_compared_with_a_bicubic_one_at_the_output_size() -> None:
    image = photo("coffee").resize((120, 80))
    bicubic = image.resize((480, 320), Image.Resampling.BICUBIC)
    levels = measures.upscale_noise(image, bicubic, 4)
    assert levels is not None and levels[0] == pytest.approx(levels[1])
    grainy = noisy(bicubic, 5, seed=3)
    levels = measures.upscale_noise(image, grainy, 4)
    assert levels is not None and levels[1] > levels[0] + 3.0
    # Scaled back, box by box, as the whole result scaled back.
    whole = bicubic.resize(image.size, Image.Resampling.BICUBIC, reducing_gap=None)
    error = np.mean((np.asarray(whole, np.float64) - np.asarray(image, np.float64)) ** 2)
    assert measures.consistency_db(image, bicubic, 4) == pytest.approx(
        10 * np.log10(255.0**2 / error), abs=1e-3
    )
    assert measures.consistency_db(image, bicubic, 4, cap=2000) > 25.0  # sampled, near
    # Too thin to measure even at twice the size: no figures, so nothing is claimed.
    strip = photo("coffee").resize((300, 1))
    assert measures.upscale_noise(strip, strip.resize((600, 2)), 2) is None
