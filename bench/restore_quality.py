"""Our denoiser and upscalers against the classical tools, on held-out photographs.

    .venv/bin/pip install -e '.[restore,dev,bench]'
    .venv/bin/python bench/restore_quality.py [FOLDER] [--device cpu]

FOLDER holds clean photographs; without it, scikit-image's coffee, chelsea and rocket are
used, which the shipped models never saw in training (processors/restore/photos.py keeps
the two sets apart). Denoising: additive Gaussian noise at sigma 15, 25 and 50 (seeded),
then OpenCV's fastNlMeansDenoisingColored (h = hColor tuned per sigma over a grid, on these
very photos, which favours it) and our denoiser, alone and averaged over the 8 flips and
rotations of each tile (`self_ensemble: true` in its registry entry). Upscaling: each
photo cropped to a
multiple of the scale, downscaled with Pillow's bicubic, then brought back with bicubic,
Lanczos and our upscaler. PSNR (dB) and SSIM on RGB, upscalers' borders of `scale` pixels
left out; MP/s on this machine (input megapixels for denoisers, output for upscalers).
Prints a table and whether the targets are met; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from processors.restore.degrade import crop_to_multiple, downscale, gaussian_noise
from processors.restore.engine import Engine, pick_device
from processors.restore.models import load_model
from processors.restore.photos import EVALUATION, folder_photos, sample_photo
from processors.restore.restore import TileRunner, direct_runner, restore
from processors.restore.settings import RestoreSettings

Array = NDArray[np.uint8]
SIGMAS = (15, 25, 50)
NLM_GRID = (0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
HEADER = "| method                       |   PSNR |   SSIM |     MP/s |\n|---|---:|---:|---:|"


def quality(clean: Array, test: Array, border: int = 0) -> tuple[float, float]:
    if border:
        clean, test = clean[border:-border, border:-border], test[border:-border, border:-border]
    psnr = peak_signal_noise_ratio(clean, test, data_range=255)
    ssim = structural_similarity(clean, test, channel_axis=2, data_range=255)
    return float(psnr), float(ssim)


def nlm(noisy: Array, h: float) -> Array:
    bgr = cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21), cv2.COLOR_BGR2RGB)


class Row:
    def __init__(self, label: str) -> None:
        self.label, self.psnr, self.ssim, self.mp, self.seconds = label, [], [], 0.0, 0.0

    def add(self, scores: tuple[float, float], megapixels: float, seconds: float) -> None:
        self.psnr.append(scores[0])
        self.ssim.append(scores[1])
        self.mp += megapixels
        self.seconds += seconds

    def line(self) -> str:
        speed = f"{self.mp / self.seconds:8.2f}" if self.seconds else "       -"
        return (
            f"| {self.label:<28} | {np.mean(self.psnr):6.2f} | {np.mean(self.ssim):6.4f} |"
            f" {speed} |"
        )


def timed(call: Callable[..., Array], *args: object) -> tuple[Array, float]:
    started = time.perf_counter()
    out = call(*args)
    return out, time.perf_counter() - started


def resized(image: Image.Image, size: tuple[int, int], method: Image.Resampling) -> Array:
    return np.asarray(image.resize(size, method))


def restored(image: Image.Image, task: str, settings: RestoreSettings, run: TileRunner) -> Array:
    result = restore(image, task, settings, run)  # type: ignore[arg-type]
    assert result.image is not None, result.reason
    return np.asarray(result.image)


def denoise_tables(
    photos: dict[str, Array],
    settings: RestoreSettings,
    with_ensemble: RestoreSettings,
    run: TileRunner,
    gains: dict[str, float],
) -> None:
    for sigma in SIGMAS:
        noisy_row, ours_row, ensemble_row = (
            Row(f"noisy input, sigma {sigma}"),
            Row(f"ours ({settings.denoise_model})"),
            Row("ours, x8 self-ensemble"),
        )
        noisy = {name: gaussian_noise(clean, sigma, seed=sigma) for name, clean in photos.items()}
        # The baseline at its best h for this sigma across the set.
        best_h = max(
            NLM_GRID,
            key=lambda g: np.mean(
                [quality(photos[n], nlm(noisy[n], g * sigma))[0] for n in photos]
            ),
        )
        nlm_row = Row(f"OpenCV NLM (h = {best_h:g} sigma)")
        for name, clean in photos.items():
            megapixels = clean.shape[0] * clean.shape[1] / 1e6
            noisy_row.add(quality(clean, noisy[name]), 0, 0)
            out, seconds = timed(nlm, noisy[name], best_h * sigma)
            nlm_row.add(quality(clean, out), megapixels, seconds)
            image = Image.fromarray(noisy[name])
            # Through restore() as the stage runs it, but without its noise-level skip.
            forced = settings.model_copy(update={"denoise_skip_below": 0.0})
            result, seconds = timed(restored, image, "denoise", forced, run)
            ours_row.add(quality(clean, result), megapixels, seconds)
            result, seconds = timed(restored, image, "denoise", with_ensemble, run)
            ensemble_row.add(quality(clean, result), megapixels, seconds)
        print(f"Denoising, sigma {sigma}\n{HEADER}")
        for row in (noisy_row, nlm_row, ours_row, ensemble_row):
            print(row.line())
        print()
        gains[f"denoise {sigma}"] = np.mean(ours_row.psnr) - np.mean(nlm_row.psnr)
        gains[f"ensemble {sigma}"] = np.mean(ensemble_row.psnr) - np.mean(nlm_row.psnr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    photos = folder_photos(args.folder) if args.folder else {n: sample_photo(n) for n in EVALUATION}
    settings = RestoreSettings(device=args.device)
    device = pick_device(args.device)
    engines = {
        name: Engine(load_model(name, entry), device, "fp32")
        for name, entry in settings.models.items()
    }
    for engine in engines.values():
        engine.warm_up()
    run = direct_runner(engines)
    # The denoiser once more, averaged over the 8 flips and rotations of each tile.
    ensemble = settings.denoise_model + "+x8"
    engines[ensemble] = Engine(
        load_model(settings.denoise_model, settings.models[settings.denoise_model]),
        device,
        "fp32",
        self_ensemble=True,
    )
    engines[ensemble].warm_up()
    with_ensemble = settings.model_copy(
        update={
            "models": {**settings.models, ensemble: settings.models[settings.denoise_model]},
            "denoise_model": ensemble,
            "denoise_skip_below": 0.0,
        }
    )
    print(f"{len(photos)} photos: {', '.join(photos)}; device {device}, torch threads "
          f"{torch.get_num_threads()}\n")  # fmt: skip
    gains: dict[str, float] = {}

    denoise_tables(photos, settings, with_ensemble, run, gains)

    for model in settings.upscale_models:
        scale = settings.models[model].scale
        rows = {k: Row(k) for k in ("bicubic", "Lanczos", f"ours ({model})")}
        for clean_full in photos.values():
            hr = crop_to_multiple(Image.fromarray(clean_full), scale)
            lr = downscale(hr, scale)
            clean = np.asarray(hr)
            megapixels = hr.width * hr.height / 1e6
            for label, method in (
                ("bicubic", Image.Resampling.BICUBIC),
                ("Lanczos", Image.Resampling.LANCZOS),
            ):
                out, seconds = timed(resized, lr, hr.size, method)
                rows[label].add(quality(clean, out, scale), megapixels, seconds)
            only = settings.model_copy(update={"upscale_models": (model,), "upscale_skip_at": 99.0})
            out, seconds = timed(restored, lr, "upscale", only, run)
            rows[f"ours ({model})"].add(quality(clean, out, scale), megapixels, seconds)
        print(f"Upscaling {scale}x (bicubic-downscaled input; MP/s of output)\n{HEADER}")
        for row in rows.values():
            print(row.line())
        print()
        gains[f"upscale {scale}x"] = np.mean(rows[f"ours ({model})"].psnr) - np.mean(
            rows["bicubic"].psnr
        )

    print("Targets:")
    for label, key, target in (
        ("denoiser vs NLM at sigma 25", "denoise 25", 2.0),
        ("denoiser with x8 self-ensemble vs NLM at sigma 25", "ensemble 25", 2.0),
        ("2x upscaler vs bicubic", "upscale 2x", 1.0),
    ):
        verdict = "met" if gains[key] >= target else "NOT met"
        print(f"  {label}: {gains[key]:+.2f} dB (target +{target:g} dB) - {verdict}")
    for key in ("denoise 15", "denoise 50", "ensemble 15", "ensemble 50", "upscale 4x"):
        print(f"  {key}: {gains[key]:+.2f} dB over the baseline")


if __name__ == "__main__":
    main()
