"""Our denoiser and upscalers against the classical tools, on sources they never saw.

    .venv/bin/pip install -e '.[restore,dev,bench]'
    .venv/bin/python -m processors.restore.pool_build --out POOL     # once; needs apt
    .venv/bin/python bench/restore_quality.py --pool POOL [--per-source 4] [--crop 256]

The evaluation pictures are the pool's held-out sources (whole packages the models never
trained on, processors/restore/pool.py): the most detailed `--per-source` of each, centre
crops of `--crop` px. Denoising, four noise cases: Gaussian at sigma 15, 25 and 50, and the
real-capture model (Poisson-Gaussian, correlated channels, JPEG after; degrade.py).
Baselines: OpenCV's non-local means and BM3D (the `bm3d` package), each given the true
noise level of every crop times a factor per case tuned on crops of the TRAINING sources
(bench/restore_baselines.json; `--retune` remakes it). That file names the pool (its
manifest's sha256), the training sources, the crop size and the factor grids it was tuned
with; a run that differs in any of them stops and says how to retune (`--tune-only`),
rather than score the baselines with factors tuned for other pictures. Before anything,
the pool's files are hashed: a picture whose bytes are in both splits stops the run, since
a held-out score on a training picture says nothing. Ours runs through restore() as the
stage does: it estimates the noise level itself and keeps its input when the result is not
measurably better; then each of our models runs again averaged over `--self-ensemble`
flips and rotations (8 by default; the model setting of that name, n times the compute).
Upscaling: crops downscaled with Pillow's bicubic, brought back with bicubic, Lanczos and
our upscalers; then again with the small picture JPEG-compressed (quality 85), a case
without a target. PSNR (dB) per source and overall, SSIM and MP/s overall; the targets
lines last, for the models as shipped and as self-ensembles. Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
from PIL import Image
from restore_baselines import (
    CASES,
    TUNING,
    Array,
    bm3d_rgb,
    check_splits,
    crops,
    degraded,
    nlm,
    quality,
    tune,
    tuned_factors,
)

from processors.restore.degrade import downscale
from processors.restore.engine import Engine, pick_device
from processors.restore.models import load_model
from processors.restore.restore import TileRunner, direct_runner, restore
from processors.restore.settings import RestoreSettings, Task, Views

TARGETS = {"denoise": 1.0, "upscale 2x": 1.0, "upscale 4x": 0.7}
JPEG_INPUT = 85  # the upscalers' second, untargeted case: a typical web JPEG


class Scores:
    """PSNR per source and method; SSIM and speed per method."""

    def __init__(self) -> None:
        self.psnr: dict[str, dict[str, list[float]]] = {}
        self.ssim: dict[str, list[float]] = {}
        self.time: dict[str, list[float]] = {}  # megapixels, seconds

    def add(self, method: str, name: str, scores: tuple[float, float], mp: float, s: float) -> None:
        source = name.split("/", maxsplit=1)[0]
        self.psnr.setdefault(method, {}).setdefault(source, []).append(scores[0])
        self.ssim.setdefault(method, []).append(scores[1])
        self.time.setdefault(method, [0.0, 0.0])
        self.time[method][0] += mp
        self.time[method][1] += s

    def mean(self, method: str) -> float:
        return float(np.mean([v for vs in self.psnr[method].values() for v in vs]))

    def table(self, title: str) -> str:
        sources = sorted({s for by in self.psnr.values() for s in by})
        head = "| method | " + " | ".join(sources) + " | all | SSIM | MP/s |"
        lines = [title, head, "|---" + "|---:" * (len(sources) + 3) + "|"]
        for method, by in self.psnr.items():
            cells = [f"{np.mean(by[s]):.2f}" if s in by else "-" for s in sources]
            mp, seconds = self.time[method]
            speed = f"{mp / seconds:.2f}" if seconds else "-"
            ssim, mean = np.mean(self.ssim[method]), self.mean(method)
            lines.append(f"| {method} | {' | '.join(cells)} | {mean:.2f} | {ssim:.4f} | {speed} |")
        return "\n".join(lines) + "\n"


def timed(call: Callable[..., Array], *args: object) -> tuple[Array, float]:
    started = time.perf_counter()
    return call(*args), time.perf_counter() - started


@dataclass
class Ours:
    """Our model through restore(), as the stage runs it; counts the inputs it kept."""

    settings: RestoreSettings
    run: TileRunner
    task: Task
    kept: int = 0

    def __call__(self, image: Array) -> Array:
        result = restore(Image.fromarray(image), self.task, self.settings, self.run)
        if result.image is None:
            self.kept += 1  # the stage's own choice: never worse, by its estimate
            return image
        return np.asarray(result.image.convert("RGB"))


def denoise(
    pictures: dict[str, Array], factors: dict[str, dict[str, float]], models: dict[str, Ours]
) -> dict[str, dict[str, float]]:
    """Print a table per noise case; each model's gain over the better baseline, by case."""
    gains: dict[str, dict[str, float]] = {}
    for case, capture in CASES.items():
        scores = Scores()
        for name, clean in pictures.items():
            noisy, level = degraded(name, clean, case)
            mp = clean.shape[0] * clean.shape[1] / 1e6
            scores.add("noisy input", name, quality(clean, noisy), 0, 0)
            for label, method in (("NLM", nlm), ("BM3D", bm3d_rgb)):
                factor = factors[case][label.lower()]
                out, seconds = timed(method, noisy, factor * level)
                scores.add(
                    f"{label} (x{factor:g} true sigma)", name, quality(clean, out), mp, seconds
                )
            for label, model in models.items():
                out, seconds = timed(model, noisy)
                scores.add(f"ours ({label})", name, quality(clean, out), mp, seconds)
        print(scores.table(f"Denoising, {case} ({capture})"), flush=True)
        classical = max(scores.mean(m) for m in scores.psnr if m.startswith(("NLM", "BM3D")))
        for label in models:
            gain = scores.mean(f"ours ({label})") - classical
            gains.setdefault(label, {})[f"denoise, {case}"] = gain
    return gains


def upscale(
    pictures: dict[str, Array],
    settings: RestoreSettings,
    run: TileRunner,
    scale: int,
    jpeg: int | None = None,
) -> dict[str, float]:
    """Print the table of one scale; each upscaler's gain over Lanczos, by model name."""
    scores = Scores()
    names = [n for n in settings.upscale_models if settings.models[n].scale == scale]
    upscalers = {
        n: Ours(
            settings.model_copy(update={"upscale_models": (n,), "upscale_skip_at": 99.0}),
            run,
            "upscale",
        )
        for n in names
    }
    for name, clean_full in pictures.items():
        # Square, within both sides of a crop narrower than --crop, a multiple of the scale.
        side = min(clean_full.shape[:2])
        side -= side % scale
        hr = Image.fromarray(clean_full[:side, :side])
        lr = downscale(hr, scale, jpeg_quality=jpeg)
        clean, mp = np.asarray(hr), hr.width * hr.height / 1e6
        for label, method in (
            ("bicubic", Image.Resampling.BICUBIC),
            ("Lanczos", Image.Resampling.LANCZOS),
        ):
            out, seconds = timed(lambda i, m=method, s=hr.size: np.asarray(i.resize(s, m)), lr)
            scores.add(label, name, quality(clean, out, scale), mp, seconds)
        for model, call in upscalers.items():
            out, seconds = timed(call, np.asarray(lr))
            if out.shape != clean.shape:
                # Kept by the never-worse check: a viewer sees the input scaled by Lanczos.
                out = np.asarray(Image.fromarray(out).resize(hr.size, Image.Resampling.LANCZOS))
            scores.add(f"ours ({model})", name, quality(clean, out, scale), mp, seconds)
    given = "bicubic-downscaled input" + (f", then JPEG quality {jpeg}" if jpeg else "")
    print(scores.table(f"Upscaling {scale}x ({given}; MP/s of output)"))
    print(f"inputs kept by the never-worse check: { {n: c.kept for n, c in upscalers.items()} }\n")
    return {n: scores.mean(f"ours ({n})") - scores.mean("Lanczos") for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True, help="made by pool_build")
    parser.add_argument("--per-source", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--retune", action="store_true", help="tune the baselines again")
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=FILE",
        help="use these weights for a registry model (e.g. a checkpoint in training)",
    )  # fmt: skip
    parser.add_argument(
        "--self-ensemble", type=int, choices=get_args(Views), default=8, metavar="N",
        help="also run our models averaged over N flips and rotations (1: not)",
    )  # fmt: skip
    parser.add_argument(
        "--split", choices=("eval", "train"), default="eval",
        help="train: the training sources instead, to tell a model short of capacity (behind "
        "there too) from one that learned its pictures; the targets are set on eval",
    )  # fmt: skip
    parser.add_argument("--upscale-only", action="store_true")
    parser.add_argument("--tune-only", action="store_true", help="tune the baselines, stop")
    args = parser.parse_args()
    check_splits(args.pool)
    if args.tune_only:
        tune(args.pool, args.crop)
        return
    settings = RestoreSettings(device=args.device, denoise_skip_below=0.0)
    models = dict(settings.models)
    for given in args.model:
        name, _, file = given.partition("=")
        models[name] = models[name].model_copy(update={"file": file})
    # Each of our models again as a self-ensemble, under its own registry name.
    views = args.self_ensemble
    ours = (settings.denoise_model, *settings.upscale_models)
    ensembles = {f"{n} x{views} views": n for n in ours} if views > 1 else {}
    models.update(
        {e: models[n].model_copy(update={"self_ensemble": views}) for e, n in ensembles.items()}
    )
    upscalers = tuple(n for n in (*ours, *ensembles) if models[n].task == "upscale")
    settings = settings.model_copy(update={"models": models, "upscale_models": upscalers})
    device = pick_device(args.device)
    engines = {
        n: Engine(load_model(n, e), device, "fp32", e.self_ensemble) for n, e in models.items()
    }
    for engine in engines.values():
        engine.warm_up()
    run = direct_runner(engines)
    pictures = crops(args.pool, args.split, args.per_source, args.crop)
    sources = "held-out" if args.split == "eval" else "TRAINING-split (not for the targets)"
    print(f"{len(pictures)} {sources} crops of {args.crop} px: {', '.join(pictures)}; {device}\n")
    gains: dict[str, dict[str, float]] = {}  # by our model's name, then by case
    if not args.upscale_only:
        factors = (
            tune(args.pool, args.crop)
            if args.retune or not TUNING.exists()
            else tuned_factors(args.pool, args.crop)
        )
        denoisers = {
            name: Ours(settings.model_copy(update={"denoise_model": name}), run, "denoise")
            for name, entry in models.items()
            if entry.task == "denoise"
        }
        for label, by_case in denoise(pictures, factors, denoisers).items():
            gains.setdefault(label, {}).update(by_case)
        kept = {label: call.kept for label, call in denoisers.items()}
        print(f"inputs kept by the never-worse check: {kept}\n")
    for scale in (2, 4):
        for name, gain in upscale(pictures, settings, run, scale).items():
            gains.setdefault(name, {})[f"upscale {scale}x"] = gain
    for scale in (2, 4):
        # No target: how the upscalers, trained on clean inputs, take a JPEG upload.
        for name, gain in upscale(pictures, settings, run, scale, JPEG_INPUT).items():
            print(f"{name} {scale}x, JPEG input: {gain:+.2f} dB over Lanczos")
        print()
    title = "the models as shipped"
    verdicts(title, {n: gains[n] for n in ours if n in gains}, sources)
    if ensembles:
        chosen = {e: gains[e] for e in ensembles if e in gains}
        title = f"the same, each averaged over {views} views, self_ensemble: {views}"
        verdicts(title, chosen, sources)


def verdicts(title: str, gains: dict[str, dict[str, float]], sources: str) -> None:
    """The targets line of one set of our models: each case's gain, met or not."""
    print(f"Targets, {title} ({sources} sources; denoiser against the better of NLM and "
          "BM3D, upscalers against Lanczos):")  # fmt: skip
    for name, by_case in gains.items():
        for case, gain in by_case.items():
            target = TARGETS["denoise" if case.startswith("denoise") else case]
            verdict = "met" if gain >= target else "NOT met"
            print(f"  {case} ({name}): {gain:+.2f} dB (target +{target:g} dB) - {verdict}")


if __name__ == "__main__":
    main()
