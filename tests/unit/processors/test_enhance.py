from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from processors.enhance import EnhanceSettings, choose_profile, enhance, match_histogram, metrics
from tests.support.photos import photo

S = EnhanceSettings()


def _cast(image: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64) * np.array(gains)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_auto_removes_a_colour_cast_and_sharpens() -> None:
    original = photo("chelsea")
    cast = _cast(original, (1.0, 0.9, 0.75))  # a warm cast

    def blue_to_red(image: Image.Image) -> float:
        means = np.asarray(image, float).reshape(-1, 3).mean(axis=0)
        return float(means[2] / means[0])

    result = enhance(cast, "auto", S)
    assert result.kept_original is None
    # Gray world evens the channel means out, which moves the balance back towards the
    # original's (not all the way: the original itself is not grey on average).
    spread = np.ptp(np.asarray(cast, float).reshape(-1, 3).mean(axis=0))
    evened = np.ptp(np.asarray(result.image, float).reshape(-1, 3).mean(axis=0))
    assert evened < 0.7 * spread, (spread, evened)
    before = abs(blue_to_red(cast) - blue_to_red(original))
    after = abs(blue_to_red(result.image) - blue_to_red(original))
    assert after < before, (before, after)
    assert result.after["sharpness"] > result.before["sharpness"]
    assert any("white balance" in step for step in result.applied)


def test_product_profile_is_adaptive_within_its_bounds() -> None:
    soft = photo("chelsea").filter(ImageFilter.GaussianBlur(2))
    crisp = photo("chelsea")
    soft_steps = enhance(soft, "product", S).applied
    crisp_steps = enhance(crisp, "product", S).applied

    def factor(steps: list[str], name: str) -> float:
        return float(next(s for s in steps if s.startswith(name)).split("x")[1])

    for steps in (soft_steps, crisp_steps):
        assert 1.02 <= factor(steps, "sharpness") <= 1.2
        assert 1.01 <= factor(steps, "contrast") <= 1.1
    assert factor(soft_steps, "sharpness") > factor(crisp_steps, "sharpness")


def test_an_enhancement_that_makes_things_worse_is_not_kept() -> None:
    # Matching an overexposed reference would blow out most of the picture.
    original = photo("coffee")
    blown = ImageEnhance.Brightness(photo("chelsea")).enhance(4.0)
    result = enhance(original, "match", S, reference=blown)
    assert result.kept_original is not None and "would" in result.kept_original
    assert result.image is original
    assert result.after == result.before
    assert result.record()["kept_original"] == result.kept_original


def test_alpha_survives_enhancement() -> None:
    rgba = photo("coffee").convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    result = enhance(rgba, "product", S)
    assert result.image.mode == "RGBA"
    assert np.array_equal(
        np.asarray(result.image.getchannel("A")), np.asarray(rgba.getchannel("A"))
    )


def test_histogram_matching_takes_on_the_references_tones() -> None:
    dark = ImageEnhance.Brightness(photo("astronaut")).enhance(0.4)
    reference = photo("astronaut")
    matched = match_histogram(dark, reference)
    assert abs(metrics(matched)["brightness"] - metrics(reference)["brightness"]) < 6
    result = enhance(dark, "match", S, reference=reference)
    assert (
        result.profile == "match" and result.after["brightness"] > result.before["brightness"] + 30
    )


def test_profile_choice_and_errors() -> None:
    assert choose_profile(None, "rings", S) == "product"
    assert choose_profile(None, "other", S) == "auto"
    assert choose_profile("none", "rings", S) == "none"
    none = enhance(photo(), "none", S)
    assert none.image is photo() and none.applied == []
    with pytest.raises(ValueError, match="unknown enhancement profile"):
        enhance(photo(), "glow", S)
    with pytest.raises(ValueError, match="needs a reference"):
        enhance(photo(), "match", S)
