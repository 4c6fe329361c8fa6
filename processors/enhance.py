"""The enhance stage's work: profiles that correct colour, contrast and sharpness, and a
guard that keeps the original whenever the result is worse by its own metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter, ImageOps, ImageStat
from pydantic import BaseModel, ConfigDict, Field

from processors.quality import laplacian
from processors.taxonomy import DEFAULT_CATEGORIES
from schemas.events import Profile

PROFILES: tuple[str, ...] = get_args(Profile)
# Every category of the default (jewelry) taxonomy gets the product profile.
JEWELRY = tuple(category.name for category in DEFAULT_CATEGORIES)
_JEWELRY_PRODUCTS: dict[str, Profile] = {name: "product" for name in JEWELRY}


class EnhanceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Profiles are checked when the settings load: a misspelt one would otherwise reject
    # every image it applies to as a bad request.
    default_profile: Profile = "auto"
    # The profile by category when the request names none.
    category_profiles: dict[str, Profile] = Field(default_factory=lambda: dict(_JEWELRY_PRODUCTS))
    autocontrast_cutoff: float = Field(default=0.5, ge=0, le=10)  # % clipped at each end
    white_balance_limit: float = Field(default=1.3, ge=1)  # largest channel gain
    unsharp_radius: float = 1.5
    unsharp_percent: int = 60
    unsharp_threshold: int = 3
    product_sharpness: tuple[float, float] = (1.02, 1.2)
    product_contrast: tuple[float, float] = (1.01, 1.1)
    # Guard: keep the original if sharpness drops or more pixels clip than this share.
    max_extra_clipping: float = Field(default=0.01, ge=0, le=1)


@dataclass
class Enhanced:
    image: Image.Image
    profile: str
    applied: list[str] = field(default_factory=list)
    kept_original: str | None = None
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "applied": self.applied,
            "kept_original": self.kept_original,
            "before": self.before,
            "after": self.after,
        }


def choose_profile(requested: str | None, category: str | None, settings: EnhanceSettings) -> str:
    if requested:
        return requested
    if category and category in settings.category_profiles:
        return settings.category_profiles[category]
    return settings.default_profile


# Rows per strip when measuring: bounds the float copies of a large photo (a 24-megapixel
# one took over a gigabyte measured whole) to a few tens of MB.
STRIP_ROWS = 256


def metrics(image: Image.Image) -> dict[str, float]:
    gray8 = np.asarray(image.convert("L"))
    rgb = np.asarray(image.convert("RGB"))
    height, width = gray8.shape
    # The Laplacian's variance over the interior, from sums taken strip by strip (its mean
    # is near 0, so E[x^2] - E[x]^2 loses nothing that the rounding below keeps).
    total = total_sq = 0.0
    count = 0
    if height >= 3 and width >= 3:
        for first in range(1, height - 1, STRIP_ROWS):
            last = min(first + STRIP_ROWS, height - 1)
            lap = laplacian(gray8[first - 1 : last + 1].astype(np.float64))
            total += float(lap.sum())
            total_sq += float(np.square(lap).sum())
            count += lap.size
    clipped = sum(
        int(((block == 0) | (block == 255)).all(axis=2).sum())
        for block in (rgb[top : top + STRIP_ROWS] for top in range(0, height, STRIP_ROWS))
    )
    stats = ImageStat.Stat(Image.fromarray(gray8))
    variance = total_sq / count - (total / count) ** 2 if count else 0.0
    return {
        "sharpness": round(max(0.0, variance), 3),
        "contrast": round(float(stats.stddev[0]), 3),
        "brightness": round(float(stats.mean[0]), 3),
        "clipped": round(clipped / max(1, height * width), 5),
    }


def enhance(
    image: Image.Image,
    profile: str,
    settings: EnhanceSettings,
    reference: Image.Image | None = None,
) -> Enhanced:
    if profile not in PROFILES:
        raise ValueError(f"unknown enhancement profile {profile!r} (known: {', '.join(PROFILES)})")
    before = metrics(image)
    if profile == "none":
        return Enhanced(image, profile, before=before, after=before)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB")
    applied: list[str] = []
    if profile == "auto":
        rgb = _gray_world(rgb, settings.white_balance_limit, applied)
        rgb = ImageOps.autocontrast(rgb, cutoff=settings.autocontrast_cutoff, preserve_tone=True)
        applied.append(f"autocontrast cutoff {settings.autocontrast_cutoff}%")
        rgb = _unsharp(rgb, settings, applied)
    elif profile == "product":
        rgb = _product(rgb, before, settings, applied)
    else:
        if reference is None:
            raise ValueError("the `match` profile needs a reference image")
        rgb = match_histogram(rgb, reference.convert("RGB"))
        applied.append("histogram matched to the reference")
    out = rgb if alpha is None else _with_alpha(rgb, alpha)
    after = metrics(out)
    worse = _worse(before, after, settings)
    if worse:
        return Enhanced(image, profile, applied, kept_original=worse, before=before, after=before)
    return Enhanced(out, profile, applied, before=before, after=after)


def _worse(
    before: dict[str, float], after: dict[str, float], settings: EnhanceSettings
) -> str | None:
    if after["sharpness"] < before["sharpness"] * 0.98:
        return f"sharpness would drop from {before['sharpness']:.0f} to {after['sharpness']:.0f}"
    extra = after["clipped"] - before["clipped"]
    if extra > settings.max_extra_clipping:
        return f"{extra:.1%} more pixels would clip (limit {settings.max_extra_clipping:.1%})"
    return None


def _gray_world(rgb: Image.Image, limit: float, applied: list[str]) -> Image.Image:
    # Channel means from the histograms, and the gains applied as a lookup table per
    # channel: the same values as multiplying a float copy of the image, without the three
    # float64 copies a 24-megapixel photo made (1.7 GB).
    means = np.array(ImageStat.Stat(rgb).mean[:3], dtype=np.float64)
    if means.min() < 1:
        return rgb
    gains = np.clip(means.mean() / means, 1 / limit, limit)
    if np.allclose(gains, 1, atol=0.005):
        return rgb
    applied.append("gray-world white balance gains " + "/".join(f"{g:.3f}" for g in gains))
    levels = np.arange(256, dtype=np.float64)
    table = np.concatenate([np.clip(levels * g + 0.5, 0, 255).astype(np.uint8) for g in gains])
    return rgb.point(table.tolist())


def _unsharp(rgb: Image.Image, settings: EnhanceSettings, applied: list[str]) -> Image.Image:
    applied.append(f"unsharp mask r={settings.unsharp_radius} {settings.unsharp_percent}%")
    return rgb.filter(
        ImageFilter.UnsharpMask(
            settings.unsharp_radius, settings.unsharp_percent, settings.unsharp_threshold
        )
    )


def _product(
    rgb: Image.Image, before: dict[str, float], settings: EnhanceSettings, applied: list[str]
) -> Image.Image:
    # Softer images get more sharpening, flatter ones more contrast, within the bounds.
    lo_s, hi_s = settings.product_sharpness
    lo_c, hi_c = settings.product_contrast
    softness = 1.0 - min(1.0, before["sharpness"] / 1500.0)
    flatness = 1.0 - min(1.0, before["contrast"] / 80.0)
    sharp = lo_s + (hi_s - lo_s) * softness
    contrast = lo_c + (hi_c - lo_c) * flatness
    applied.append(f"contrast x{contrast:.3f}")
    applied.append(f"sharpness x{sharp:.3f}")
    out = ImageEnhance.Contrast(rgb).enhance(contrast)
    return ImageEnhance.Sharpness(out).enhance(sharp)


def match_histogram(image: Image.Image, reference: Image.Image) -> Image.Image:
    """Per-channel histogram matching: the image takes on the reference's tonal spread."""
    src = np.asarray(image)
    ref = np.asarray(reference)
    out = np.empty_like(src)
    for c in range(3):
        out[..., c] = _match_channel(src[..., c], ref[..., c])
    return Image.fromarray(out)


def _match_channel(src: NDArray[np.uint8], ref: NDArray[np.uint8]) -> NDArray[np.uint8]:
    src_cdf = np.cumsum(np.bincount(src.ravel(), minlength=256)) / src.size
    ref_cdf = np.cumsum(np.bincount(ref.ravel(), minlength=256)) / ref.size
    lut = np.searchsorted(ref_cdf, src_cdf).clip(0, 255).astype(np.uint8)
    return lut[src]


def _with_alpha(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return out
