"""Synthetic degradations: what the models learn to undo and what the benchmark measures."""

from __future__ import annotations

import io

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
