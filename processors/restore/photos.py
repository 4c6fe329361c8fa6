"""Freely licensed photographs to train on and to evaluate with, kept apart.

All come with scikit-image (in the `dev` extra); licences as its data
module states them. Training never sees an evaluation photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Public domain (astronaut: NASA; hubble_deep_field: NASA; text: PD) or CC0 (camera, retina,
# brick, grass, gravel, cell) or "no known copyright restrictions" (coins, ihc).
TRAINING = (
    "astronaut",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "coins",
    "brick",
    "grass",
    "gravel",
    "cell",
)
# coffee and chelsea CC0, rocket public domain (SpaceX).
EVALUATION = ("coffee", "chelsea", "rocket")


def sample_photo(name: str) -> NDArray[np.uint8]:
    """An RGB uint8 array of one bundled sample (grey ones repeated over three channels)."""
    from skimage import data

    array = np.asarray(getattr(data, name)())
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8)


def folder_photos(folder: Path) -> dict[str, NDArray[np.uint8]]:
    """Every readable image in a folder, as RGB arrays, by file name."""
    found: dict[str, NDArray[np.uint8]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                found[path.name] = np.asarray(image.convert("RGB"))
        except OSError:
            continue
    return found
