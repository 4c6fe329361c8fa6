"""A training recipe and the batches a step learns from: random crops of the training
photographs, degraded as the recipe says (noise for the denoisers, downscaling for the
upscalers)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import nn

from processors.restore.degrade import add_noise, capture_noise, downscale, random_capture
from processors.restore.pool import detail

Batch = tuple[torch.Tensor, torch.Tensor]
LOSSES = ("mse", "psnr")
# "psnr" adds this to each crop's squared error (45 dB): a crop with almost no noise left
# would otherwise weigh without bound, and the net spend itself on near-identity crops.
_ERROR_FLOOR = 10**-4.5


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: int
    batch: int
    patch: int  # network input side
    make: Callable[[], nn.Module]
    max_sigma: float = 55.0  # denoiser: noise range, grey levels
    scale: int = 1
    max_lr: float = 2e-3
    clip_norm: float = 0.0  # gradient norm limit; 0: none
    noise_map: bool = False  # the model takes the noise sigma as a fourth input channel
    # Noise-map denoiser: the share of plain Gaussian noise among its captures.
    gaussian_share: float = 0.5
    # Draw this many crops and keep the most detailed: the pool's large wallpapers are
    # mostly sky and gradient, where an upscaler learns nothing it needs.
    crop_tries: int = 1
    # Upscalers: the share of inputs blurred before downscaling. A net that learned to
    # sharpen soft inputs over-sharpens clean ones; at 2x that costs more than it gains.
    blur_share: float = 0.25
    # Upscalers: the share of inputs JPEG-compressed after downscaling (quality 70-95).
    jpeg_share: float = 0.25
    # What a step minimises (LOSSES). "mse", the batch's mean squared error, lets a crop
    # at sigma 50 weigh about four times one at sigma 15 (its error is that much larger):
    # the net learns heavy noise best. "psnr", the mean of each crop's error in decibels,
    # counts every crop alike, as the benchmark averages each sigma on its own.
    loss: str = "mse"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}: one of {', '.join(LOSSES)}")


class Patches:
    """Random augmented crops, drawn in proportion to each photograph's area."""

    def __init__(self, photos: Sequence[NDArray[np.uint8]], seed: int) -> None:
        self.photos = list(photos)
        areas = np.array([p.shape[0] * p.shape[1] for p in self.photos], dtype=np.float64)
        self.weights = (areas / areas.sum()).tolist()
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)

    def crop(self, side: int, tries: int = 1) -> NDArray[np.uint8]:
        if tries > 1:
            return max((self.crop(side) for _ in range(tries)), key=detail)
        photo = self.rng.choices(self.photos, self.weights)[0]
        top = self.rng.randrange(photo.shape[0] - side + 1)
        left = self.rng.randrange(photo.shape[1] - side + 1)
        patch = photo[top : top + side, left : left + side]
        patch = np.rot90(patch, self.rng.randrange(4))
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)


def _tensor(arrays: Sequence[NDArray[np.uint8]]) -> torch.Tensor:
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.float().div(255.0).contiguous(memory_format=torch.channels_last)


def denoise_batch(recipe: Recipe, patches: Patches, generator: torch.Generator) -> Batch:
    clean = _tensor([patches.crop(recipe.patch) for _ in range(recipe.batch)])
    sigma = torch.rand(recipe.batch, generator=generator) * recipe.max_sigma / 255.0
    share = torch.rand(recipe.batch, generator=generator) * 0.5
    # Clipped like an 8-bit capture: the network must handle saturated noise too.
    return add_noise(clean, sigma, share, generator).clamp(0, 1), clean


def capture_batch(recipe: Recipe, patches: Patches, generator: torch.Generator) -> Batch:
    """Real-capture noise (processors.restore.degrade) and, as a fourth channel, the noise
    actually present, as an estimator would report it: its standard deviation, jittered so
    the network tolerates an estimate that is a little off."""
    rng = patches.np_rng
    noisy, clean, levels = [], [], []
    for _ in range(recipe.batch):
        crop = patches.crop(recipe.patch, recipe.crop_tries)
        degraded = capture_noise(
            crop, random_capture(rng, recipe.max_sigma, recipe.gaussian_share), rng
        )
        present = float((degraded.astype(np.float32) - crop).std())
        levels.append(present * rng.uniform(0.85, 1.15) / 255.0)
        noisy.append(degraded)
        clean.append(crop)
    inputs = _tensor(noisy)
    level = torch.tensor(levels, dtype=torch.float32).view(-1, 1, 1, 1)
    sigma_map = level.expand(-1, 1, *inputs.shape[-2:])
    return torch.cat([inputs, sigma_map], dim=1).contiguous(
        memory_format=torch.channels_last
    ), _tensor(clean)


def upscale_batch(recipe: Recipe, patches: Patches, generator: torch.Generator) -> Batch:
    del generator  # PIL draws from patches.rng, which the seed fixes
    rng = patches.rng
    high, low = [], []
    for _ in range(recipe.batch):
        hr = patches.crop(recipe.patch * recipe.scale, recipe.crop_tries)
        # Mostly clean bicubic, sometimes a softer or JPEG-damaged source, as real uploads are.
        blur = rng.uniform(0.3, 1.0) if rng.random() < recipe.blur_share else 0.0
        quality = rng.randrange(70, 96) if rng.random() < recipe.jpeg_share else None
        lr = downscale(Image.fromarray(hr), recipe.scale, blur, quality)
        high.append(hr)
        low.append(np.asarray(lr))
    return _tensor(low), _tensor(high)


def step_loss(recipe: Recipe, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The quantity a training step minimises (Recipe.loss)."""
    if recipe.loss == "mse":
        return nn.functional.mse_loss(output, target)
    per_crop = (output - target).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * (per_crop + _ERROR_FLOOR).log10().mean()


def loss_as_psnr(recipe: Recipe, mean_loss: float) -> float:
    """The training PSNR a mean step loss stands for, for the log."""
    if recipe.loss == "mse":
        return -10 * math.log10(max(mean_loss, 1e-12))
    return -mean_loss
