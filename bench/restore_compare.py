"""Side-by-side pictures of the restore models, for the docs: `python bench/restore_compare.py OUT`.

Denoising: for the demo's two noisy samples and, with `--pool`, a crop of the first
held-out pool picture under the real-capture noise model, the noisy input, the earlier
denoiser (dncnn-color), the current one (the registry's default) and, where known, the
clean picture. Upscaling: for the demo's small samples (with the upscaler the stage picks
for the whole picture) and, with `--pool`, a held-out crop downscaled 2x and 4x, Lanczos,
the earlier upscaler (`--earlier NAME=FILE`: weights of a former version, e.g. from git
history), the current one and, where known, the original. Every panel is the same crop at
the same zoom (nearest neighbour, so pixels show). One PNG per picture and task.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from processors.restore.degrade import REAL_CAPTURE, capture_noise, downscale
from processors.restore.engine import Engine, pick_device
from processors.restore.models import load_model
from processors.restore.pool import Manifest, read_picture
from processors.restore.restore import TileRunner, decide, direct_runner, restore
from processors.restore.settings import RestoreSettings, Task

SIDE = 192  # crop side, input pixels (output pixels for the upscalers)
ZOOM = 2
Case = tuple[str, Image.Image, Image.Image | None]  # name, input crop, clean crop


def _panel(images: list[tuple[str, Image.Image]]) -> Image.Image:
    width = SIDE * ZOOM
    sheet = Image.new("RGB", (len(images) * (width + 8) - 8, width + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(images):
        x = i * (width + 8)
        sheet.paste(image.resize((width, width), Image.Resampling.NEAREST), (x, 28))
        draw.text((x + 4, 8), label, fill="black")
    return sheet


def _crop(image: Image.Image, side: int = SIDE) -> Image.Image:
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _denoise_cases(folder: Path, pool: Path | None) -> list[Case]:
    from streams.demo.samples import write_samples

    cases: list[Case] = []
    for sample in write_samples(folder):
        if "noisy" in sample.file:
            with Image.open(folder / sample.file) as image:
                cases.append((sample.file.rsplit(".", 1)[0], _crop(image.convert("RGB")), None))
    if pool:
        for picture in Manifest.load(pool).of("eval")[:1]:
            clean = _crop(Image.fromarray(read_picture(pool, picture)))
            noisy = capture_noise(np.asarray(clean), REAL_CAPTURE, np.random.default_rng(7))
            cases.append((f"heldout-{Path(picture.file).stem}", Image.fromarray(noisy), clean))
    return cases


def _upscale_cases(
    folder: Path, pool: Path | None, settings: RestoreSettings
) -> list[tuple[str, str, Image.Image, Image.Image | None]]:
    """(name, upscaler, low-resolution crop, original or None) for each upscale panel."""
    from streams.demo.samples import write_samples

    found: list[tuple[str, str, Image.Image, Image.Image | None]] = []
    for sample in write_samples(folder):
        if sample.shows.startswith("small"):
            with Image.open(folder / sample.file) as opened:
                image = opened.convert("RGB")
            model, _ = decide(image, "upscale", settings)
            if model is not None:
                side = SIDE // settings.models[model].scale
                found.append((sample.file.rsplit(".", 1)[0], model, _crop(image, side), None))
    if pool:
        picture = Manifest.load(pool).of("eval")[0]
        clean = _crop(Image.fromarray(read_picture(pool, picture)))
        for model in settings.upscale_models:
            scale = settings.models[model].scale
            name = f"heldout-{Path(picture.file).stem}-x{scale}"
            found.append((name, model, downscale(clean, scale), clean))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pool", type=Path, help="also held-out pictures of this pool")
    parser.add_argument(
        "--earlier", action="append", default=[], metavar="NAME=FILE",
        help="weights of an earlier version of a registry upscaler, shown beside today's",
    )  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = RestoreSettings(device="cpu", denoise_skip_below=0.0, never_worse=False)
    device = pick_device("cpu")
    engines = {n: Engine(load_model(n, e), device, "fp32") for n, e in settings.models.items()}
    for given in args.earlier:
        name, _, file = given.partition("=")
        entry = settings.models[name].model_copy(update={"file": file})
        engines[f"earlier {name}"] = Engine(load_model(name, entry), device, "fp32")
    run = direct_runner(engines)
    earlier = settings.model_copy(update={"denoise_model": "dncnn-color"})

    with tempfile.TemporaryDirectory() as folder:
        denoising = _denoise_cases(Path(folder), args.pool)
        upscaling = _upscale_cases(Path(folder), args.pool, settings)
    for name, noisy_crop, clean in denoising:
        tries = [
            ("earlier: dncnn-color", earlier, run),
            ("now: " + settings.denoise_model, settings, run),
        ]
        _sheet(
            args.out / f"denoise-{name}.png",
            noisy_crop,
            ("noisy input", noisy_crop),
            ("denoise", tries),
            ("clean", clean),
        )
    for name, model, small, original in upscaling:
        only = settings.model_copy(update={"upscale_models": (model,), "upscale_skip_at": 99.0})
        tries = [(f"now: {model}", only, run)]
        if f"earlier {model}" in engines:
            # The earlier weights answer to the model's own name in a runner of their own.
            old = direct_runner({model: engines[f"earlier {model}"]})
            tries.insert(0, (f"earlier: {model}", only, old))
        _sheet(
            args.out / f"upscale-{name}.png",
            small,
            ("Lanczos", small.resize((SIDE, SIDE), Image.Resampling.LANCZOS)),
            ("upscale", tries),
            ("original", original),
        )


def _sheet(
    path: Path,
    image: Image.Image,
    first: tuple[str, Image.Image],
    work: tuple[Task, list[tuple[str, RestoreSettings, TileRunner]]],
    reference: tuple[str, Image.Image | None],
) -> None:
    """One picture: `first` (the input or a classical baseline), `image` restored by each
    labelled try, then the reference when there is one."""
    task, tries = work
    shown = [first]
    for label, chosen, runner in tries:
        result = restore(image, task, chosen, runner)
        assert result.image is not None, result.reason
        shown.append((label, result.image))
    if reference[1] is not None:
        shown.append((reference[0], reference[1]))
    _panel(shown).save(path, optimize=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
