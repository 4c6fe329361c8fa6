"""The bundled demo set, made from scikit-image's freely licensed photographs so that every
route of the pipeline is exercised (astronaut, rocket and hubble_deep_field are public
domain; coffee, chelsea and retina CC0; coins and immunohistochemistry carry no known
copyright restrictions, as scikit-image's data module states). Each picture is used once,
so the only duplicate the demo finds is the one it plants."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


@dataclass(frozen=True)
class Sample:
    file: str
    shows: str  # what this file exercises, for the report
    expect: str = "done"  # or "rejected"


def _photo(
    name: str, longest: int | None = None, box: tuple[int, int, int, int] | None = None
) -> Image.Image:
    try:
        from skimage import data
    except ImportError as exc:  # the demo extra brings it
        raise RuntimeError(
            "the bundled demo set is made from scikit-image's sample photographs: "
            "pip install 'pixelfleet[demo]', or run `pixelfleet demo DIR` on your own images"
        ) from exc
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    if box:
        image = image.crop(box)
    if longest:
        scale = longest / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _noisy(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(image, dtype=np.float64) + rng.normal(0, sigma, (image.height, image.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _transparent(image: Image.Image) -> Image.Image:
    """The photo inside an elliptical cut-out with a soft edge, on transparency."""
    height, width = image.height, image.width
    y, x = np.ogrid[:height, :width]
    r = ((x - width / 2) / (width * 0.45)) ** 2 + ((y - height / 2) / (height * 0.45)) ** 2
    alpha = np.clip((1.08 - r) * 12, 0, 1) * 255
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    return rgba


def _rotated_with_exif(image: Image.Image) -> bytes:
    """Stored sideways with EXIF orientation 6, as phones write portrait shots."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return _encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif)


def write_samples(folder: Path) -> list[Sample]:
    """Write the demo set into `folder` and say what each file is for."""
    folder.mkdir(parents=True, exist_ok=True)
    coffee = _photo("coffee", 2400)
    files: list[tuple[Sample, bytes]] = []

    def add(file: str, shows: str, data: bytes, expect: str = "done") -> None:
        files.append((Sample(file, shows, expect), data))

    add("gold-ring-coffee.jpg", "large and sharp: no restore", _encode(coffee, "JPEG", quality=92))
    astronaut = _photo("astronaut", 2200)
    add("pearl-necklace-astronaut.jpg", "large and sharp", _encode(astronaut, "JPEG", quality=90))
    add("watch-rocket-small.jpg", "small: upscaled", _encode(_photo("rocket"), "JPEG", quality=90))
    add("bracelet-chelsea-small.png", "small: upscaled", _encode(_photo("chelsea"), "PNG"))
    hubble = _photo("hubble_deep_field", 1200, box=(0, 0, 500, 436))
    add("earrings-hubble.jpg", "small: upscaled", _encode(hubble, "JPEG", quality=92))
    grainy = _noisy(_photo("coins", 2000), 18, seed=1)
    add("brooch-coins-noisy.png", "noisy: denoised", _encode(grainy, "PNG"))
    grainy = _noisy(_photo("immunohistochemistry", 1800), 22, seed=2)
    add("pendant-ihc-noisy.png", "noisy: denoised", _encode(grainy, "PNG"))
    cutout = _transparent(_photo("hubble_deep_field", 2200, box=(500, 436, 1000, 872)))
    add("gemstone-hubble-cutout.png", "transparency kept", _encode(cutout, "PNG"))
    sideways = _rotated_with_exif(_photo("retina", 2200))
    add("chain-retina-rotated.jpg", "EXIF orientation 6: comes out upright", sideways)
    copy = _encode(coffee, "JPEG", quality=80)
    add("gold-ring-coffee-copy.jpg", "a re-encoded duplicate of gold-ring-coffee.jpg", copy)
    truncated = _encode(_photo("rocket", 1600), "JPEG", quality=90)[:40_000]
    add("vintage-truncated.jpg", "broken: a truncated JPEG", truncated, "rejected")
    add("luxury-not-an-image.png", "broken: not an image", bytes(range(256)) * 40, "rejected")
    for sample, data in files:
        (folder / sample.file).write_bytes(data)
    return [sample for sample, _ in files]
