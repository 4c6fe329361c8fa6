"""Real photographs for tests, from scikit-image's bundled samples (public domain or CC0:
astronaut and rocket public domain, chelsea and coffee CC0), encoded as each test needs."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image
from skimage import data as samples


@cache
def photo(name: str = "coffee") -> Image.Image:
    """coffee 600x400, chelsea 451x300, astronaut 512x512, rocket 427x640."""
    return Image.fromarray(getattr(samples, name)()).convert("RGB")


def big_photo(name: str = "coffee", width: int = 3000) -> Image.Image:
    """A photo upsampled to a large size (resolution score well above 0.25)."""
    base = photo(name)
    return base.resize((width, round(base.height * width / base.width)), Image.Resampling.LANCZOS)


def noisy(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(image, dtype=np.float64) + rng.normal(0, sigma, (image.height, image.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype("uint8"), "RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()
