"""Quality metrics of a decoded image, on the scales the route planner's thresholds use."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image

UHD_PIXELS = 3840 * 2160
_CROP = 1024


def luminance(image: Image.Image) -> NDArray[np.float64]:
    return np.asarray(image.convert("L"), dtype=np.float64)


def _center_crop(gray: Image.Image, size: int = _CROP) -> NDArray[np.float64]:
    # Sharpness and noise live in the finest detail: measure them at full resolution on a
    # centre crop rather than on a downscaled copy, which would hide both. Only the crop
    # becomes floats: a 48 MP image in float64 alone is 384 MB.
    w, h = gray.size
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    box = (left, top, min(w, left + size), min(h, top + size))
    return np.asarray(gray.crop(box), dtype=np.float64)


def _mean_std(gray: Image.Image) -> tuple[float, float]:
    """Mean and (population) standard deviation of an 8-bit image, from its histogram:
    exact, and without an array of the whole image."""
    counts = np.asarray(gray.histogram()[:256], dtype=np.float64)
    levels = np.arange(256, dtype=np.float64)
    total = counts.sum()
    mean = float((counts * levels).sum() / total)
    return mean, math.sqrt(float((counts * (levels - mean) ** 2).sum() / total))


def laplacian(gray: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 4-neighbour Laplacian of the interior (two rows and columns fewer)."""
    return (
        gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    )


def laplacian_variance(gray: NDArray[np.float64]) -> float:
    """Variance of the 4-neighbour Laplacian: high for crisp edges, low for blur."""
    if min(gray.shape) < 3:
        return 0.0
    return float(laplacian(gray).var())


def _immerkaer(gray: NDArray[np.float64]) -> NDArray[np.float64]:
    """Immerkaer's mask: a difference of two Laplacians, blind to smooth gradients; on
    white noise of sigma s its output has standard deviation 6 s."""
    return (
        gray[:-2, :-2]
        - 2 * gray[:-2, 1:-1]
        + gray[:-2, 2:]
        - 2 * gray[1:-1, :-2]
        + 4 * gray[1:-1, 1:-1]
        - 2 * gray[1:-1, 2:]
        + gray[2:, :-2]
        - 2 * gray[2:, 1:-1]
        + gray[2:, 2:]
    )


def noise_sigma(gray: NDArray[np.float64]) -> float:
    """Immerkaer's fast estimate of Gaussian noise sigma (grey levels, 0-255 scale)."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return 0.0
    conv = _immerkaer(gray)
    return float(math.sqrt(math.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def channel_noise_sigma(rgb: NDArray[np.uint8]) -> float:
    """Noise sigma per colour channel, averaged: what a denoiser working on RGB faces.

    The median of the mask's magnitude instead of its mean: edges and texture are a
    minority of pixels, so the median follows the noise where the mean follows the
    picture (0.6745 turns a median absolute value into a Gaussian's sigma).
    """
    if rgb.shape[0] < 3 or rgb.shape[1] < 3:
        return 0.0
    # Four megapixels of the centre are plenty for a median and bound the cost.
    top, left = max(0, (rgb.shape[0] - 2048) // 2), max(0, (rgb.shape[1] - 2048) // 2)
    rgb = rgb[top : top + 2048, left : left + 2048]
    levels = [
        float(np.median(np.abs(_immerkaer(rgb[..., c].astype(np.float64))))) / (0.6745 * 6.0)
        for c in range(3)
    ]
    return sum(levels) / 3


def colorfulness(image: Image.Image) -> float:
    """Hasler and Suesstrunk's colourfulness: 0 for grey, about 100+ for vivid images."""
    rgb = np.asarray(image.convert("RGB").reduce(max(1, max(image.size) // 512)), dtype=np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def resolution_score(width: int, height: int) -> float:
    return min(1.0, width * height / UHD_PIXELS)


def measure(image: Image.Image) -> dict[str, float]:
    gray = image.convert("L")
    crop = _center_crop(gray)
    brightness, contrast = _mean_std(gray)
    return {
        "sharpness": round(laplacian_variance(crop), 3),
        "noise": round(noise_sigma(crop), 3),
        "contrast": round(contrast, 3),
        "brightness": round(brightness, 3),
        "colorfulness": round(colorfulness(image), 3),
        "resolution_score": round(resolution_score(*image.size), 4),
    }
