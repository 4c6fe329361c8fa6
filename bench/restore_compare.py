"""Side-by-side pictures of the denoisers, for the docs: `python bench/restore_compare.py OUT`.

For the demo's two noisy samples and, with `--pool`, a crop of the first held-out pool picture under
the real-capture noise model, writes one PNG per picture: the noisy input, the earlier
denoiser (dncnn-color), the current one (the registry's default) and, where known, the
clean picture, all the same crop at the same zoom (2x, nearest neighbour, so pixels show).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from processors.restore.degrade import REAL_CAPTURE, capture_noise
from processors.restore.engine import Engine, pick_device
from processors.restore.models import load_model
from processors.restore.pool import Manifest, read_picture
from processors.restore.restore import direct_runner, restore
from processors.restore.settings import RestoreSettings

SIDE = 192  # crop side, input pixels
ZOOM = 2


def _panel(images: list[tuple[str, Image.Image]]) -> Image.Image:
    width = SIDE * ZOOM
    sheet = Image.new("RGB", (len(images) * (width + 8) - 8, width + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(images):
        x = i * (width + 8)
        sheet.paste(image.resize((width, width), Image.Resampling.NEAREST), (x, 28))
        draw.text((x + 4, 8), label, fill="black")
    return sheet


def _crop(image: Image.Image) -> Image.Image:
    left, top = (image.width - SIDE) // 2, (image.height - SIDE) // 2
    return image.crop((left, top, left + SIDE, top + SIDE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pool", type=Path, help="also held-out pictures of this pool")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = RestoreSettings(device="cpu", denoise_skip_below=0.0, never_worse=False)
    device = pick_device("cpu")
    engines = {n: Engine(load_model(n, e), device, "fp32") for n, e in settings.models.items()}
    run = direct_runner(engines)
    earlier = settings.model_copy(update={"denoise_model": "dncnn-color"})

    cases: list[tuple[str, Image.Image, Image.Image | None]] = []
    from streams.demo.samples import write_samples

    with tempfile.TemporaryDirectory() as folder:
        for sample in write_samples(Path(folder)):
            if "noisy" in sample.file:
                with Image.open(Path(folder) / sample.file) as image:
                    cases.append((sample.file.rsplit(".", 1)[0], _crop(image.convert("RGB")), None))
    if args.pool:
        manifest = Manifest.load(args.pool)
        for picture in manifest.of("eval")[:1]:
            clean = _crop(Image.fromarray(read_picture(args.pool, picture)))
            noisy = capture_noise(np.asarray(clean), REAL_CAPTURE, np.random.default_rng(7))
            name = Path(picture.file).stem
            cases.append((f"heldout-{name}", Image.fromarray(noisy), clean))
    for name, noisy_crop, clean in cases:
        shown = [("noisy input", noisy_crop)]
        for label, chosen in (
            ("earlier: dncnn-color", earlier),
            ("now: " + settings.denoise_model, settings),
        ):
            result = restore(noisy_crop, "denoise", chosen, run)
            assert result.image is not None, result.reason
            shown.append((label, result.image))
        if clean is not None:
            shown.append(("clean", clean))
        path = args.out / f"denoise-{name}.png"
        _panel(shown).save(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
