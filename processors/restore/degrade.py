"""Synthetic degradations: what the models learn to undo and what the benchmark measures."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, ImageFilter


def add_noise(
    clean: torch.Tensor,
    sigma: torch.Tensor,
    poisson_share: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Gaussian plus signal-dependent (Poisson-like) noise on a [0, 1] batch.

    `sigma` (per image, grey levels / 255) is the total at mid-grey; `poisson_share` of its
    variance scales with the pixel value, as photon noise does on a real sensor.
    """
    shape = (-1, 1, 1, 1)
    variance = sigma.view(shape) ** 2
    signal = variance * poisson_share.view(shape) * clean.clamp(0, 1) / 0.5
    constant = variance * (1 - poisson_share.view(shape))
    noise = torch.randn(clean.shape, generator=generator) * (signal + constant).sqrt()
    return clean + noise


def gaussian_noise(image: NDArray[np.uint8], sigma: float, seed: int) -> NDArray[np.uint8]:
    """The evaluation's degradation: additive white Gaussian noise, clipped to 8 bits."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def downscale(
    image: Image.Image, scale: int, blur: float = 0.0, jpeg_quality: int | None = None
) -> Image.Image:
    """Bicubic downscale by `scale`, after an optional Gaussian blur and followed by an
    optional JPEG round trip: the low-resolution input an upscaler is trained on."""
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    small = image.resize((image.width // scale, image.height // scale), Image.Resampling.BICUBIC)
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=jpeg_quality)
        small = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return small


def crop_to_multiple(image: Image.Image, scale: int) -> Image.Image:
    """The largest top-left crop whose sides divide by `scale`, so HR and LR align."""
    width, height = image.width - image.width % scale, image.height - image.height % scale
    return image.crop((0, 0, width, height))


def jpeg_round_trip(image: NDArray[np.uint8], quality: int) -> NDArray[np.uint8]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        rgb: NDArray[np.uint8] = np.asarray(decoded.convert("RGB"))
    return rgb


class Capture(NamedTuple):
    """One draw of the real-capture noise model. `sigma` is the noise at mid-grey in grey
    levels; `poisson` the share of its variance that grows with brightness (photon noise);
    `correlation` how much the three channels' noise shares (demosaicking mixes them);
    `jpeg_before` / `jpeg_after` the quality of a JPEG round trip before and after the
    noise (0: none): an upload that was already a JPEG, a camera that encodes its output."""

    sigma: float
    poisson: float = 0.0
    correlation: float = 0.0
    jpeg_before: int = 0
    jpeg_after: int = 0


# The evaluation's "real noise": a mid-range phone capture at moderate ISO, saved as JPEG.
REAL_CAPTURE = Capture(sigma=20.0, poisson=0.6, correlation=0.3, jpeg_after=88)


def random_capture(
    rng: np.random.Generator, max_sigma: float, gaussian_share: float = 0.5
) -> Capture:
    """A draw over the range validate routes to restore: `gaussian_share` plain Gaussian
    noise (what a benchmark measures), the rest like a real capture."""
    sigma = float(rng.uniform(0.0, max_sigma))
    if rng.random() < gaussian_share:
        return Capture(sigma)
    return Capture(
        sigma,
        poisson=float(rng.uniform(0.0, 0.9)),
        correlation=float(rng.uniform(0.0, 0.5)),
        jpeg_before=int(rng.integers(70, 96)) if rng.random() < 0.3 else 0,
        jpeg_after=int(rng.integers(60, 96)) if rng.random() < 0.4 else 0,
    )


def capture_noise(
    clean: NDArray[np.uint8], capture: Capture, rng: np.random.Generator
) -> NDArray[np.uint8]:
    """`clean` as a camera of that description would have delivered it, in 8 bits."""
    if capture.jpeg_before:
        clean = jpeg_round_trip(clean, capture.jpeg_before)
    value = clean.astype(np.float32)
    variance = capture.sigma**2 * (capture.poisson * value / 127.5 + (1.0 - capture.poisson))
    white = rng.standard_normal(clean.shape).astype(np.float32)
    # Each channel's noise mixed with the mean of all three, renormalised to unit variance.
    c = capture.correlation
    shared = white.mean(axis=2, keepdims=True) * np.sqrt(3.0)
    spread = np.sqrt(1.0 + 2.0 * np.sqrt(c * (1.0 - c)) / np.sqrt(3.0))
    mixed = (np.sqrt(1.0 - c) * white + np.sqrt(c) * shared) / spread
    noisy: NDArray[np.uint8] = np.clip(np.round(value + mixed * np.sqrt(variance)), 0, 255).astype(
        np.uint8
    )
    if capture.jpeg_after:
        noisy = jpeg_round_trip(noisy, capture.jpeg_after)
    return noisy
