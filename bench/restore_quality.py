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
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from processors.restore.degrade import REAL_CAPTURE, Capture, capture_noise, downscale
from processors.restore.engine import Engine, pick_device
from processors.restore.models import load_model
from processors.restore.pool import Manifest, Picture, Split, detail, read_picture
from processors.restore.restore import TileRunner, direct_runner, restore
from processors.restore.settings import RestoreSettings, Task, Views

Array = NDArray[np.uint8]
Method = Callable[[Array, float], Array]
CASES = {
    "sigma 15": Capture(15.0),
    "sigma 25": Capture(25.0),
    "sigma 50": Capture(50.0),
    "real noise": REAL_CAPTURE,
}
TUNING = Path(__file__).with_name("restore_baselines.json")
NLM_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Real noise tuned to 1.15, then the top of (0.7 .. 1.15): the best may lie beyond it.
BM3D_GRID = (0.55, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
TARGETS = {"denoise": 1.0, "upscale 2x": 1.0, "upscale 4x": 0.7}
JPEG_INPUT = 85  # the upscalers' second, untargeted case: a typical web JPEG


def quality(clean: Array, test: Array, border: int = 0) -> tuple[float, float]:
    if border:
        clean, test = clean[border:-border, border:-border], test[border:-border, border:-border]
    psnr = peak_signal_noise_ratio(clean, test, data_range=255)
    return float(psnr), float(structural_similarity(clean, test, channel_axis=2, data_range=255))


def nlm(noisy: Array, h: float) -> Array:
    bgr = cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21), cv2.COLOR_BGR2RGB)


def bm3d_rgb(noisy: Array, sigma: float) -> Array:
    import bm3d  # type: ignore[import-untyped]

    out = bm3d.bm3d_rgb(noisy.astype(np.float32) / 255.0, sigma / 255.0)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def crops(pool: Path, split: Split, per_source: int, side: int) -> dict[str, Array]:
    """The most detailed `per_source` pictures of each source of the split, centre crops."""
    manifest, chosen = Manifest.load(pool), {}
    for source in manifest.sources(split):
        found = []
        for picture in manifest.of(split, [source]):
            rgb = read_picture(pool, picture)
            top, left = max(0, (rgb.shape[0] - side) // 2), max(0, (rgb.shape[1] - side) // 2)
            crop = np.ascontiguousarray(rgb[top : top + side, left : left + side])
            found.append((detail(crop), picture.file, crop))
        for _, file, crop in sorted(found, key=lambda f: -f[0])[:per_source]:
            chosen[file] = crop
    return chosen


def degraded(name: str, clean: Array, case: str) -> tuple[Array, float]:
    """The noisy crop (seeded by crop and case) and the noise level it really carries."""
    seed = sum(map(ord, name + case))
    noisy = capture_noise(clean, CASES[case], np.random.default_rng(seed))
    return noisy, float((noisy.astype(np.float64) - clean).std())


def check_splits(pool: Path) -> None:
    """Stop when a file's content is in both splits: the same picture shipped by a training
    and a held-out package would be scored as held out while the models trained on it."""
    seen: dict[str, list[Picture]] = {}
    for picture in Manifest.load(pool).pictures:
        digest = hashlib.sha256((pool / picture.file).read_bytes()).hexdigest()
        seen.setdefault(digest, []).append(picture)
    both = [ps for ps in seen.values() if len({p.split for p in ps}) > 1]
    if both:
        lines = "\n".join(
            "  " + " = ".join(f"{p.file} ({p.split})" for p in pictures) for pictures in both
        )
        sys.exit(
            f"{pool}: {len(both)} picture(s) in both the training and the evaluation split, "
            f"by content:\n{lines}\nRebuild the pool without them (processors/restore/"
            "pool_build.py) before scoring held-out sources."
        )


def tuning_key(pool: Path, side: int) -> dict[str, object]:
    """What the tuned factors depend on: which pool (its manifest's hash), which training
    sources, which crop size, which grids. Stored with the factors, compared on load."""
    manifest = Manifest.load(pool)
    return {
        "pool_manifest_sha256": hashlib.sha256((pool / "manifest.json").read_bytes()).hexdigest(),
        "training_sources": manifest.sources("train"),
        "crop": side,
        "grids": {"nlm": list(NLM_GRID), "bm3d": list(BM3D_GRID)},
    }


def tune(pool: Path, side: int) -> dict[str, dict[str, float]]:
    """Each baseline's best factor on its noise level, per case, on TRAINING crops."""
    training = crops(pool, "train", 1, side)
    tuned: dict[str, dict[str, float]] = {}
    for case in CASES:
        noisy = {n: degraded(n, c, case) for n, c in training.items()}
        tuned[case] = {}
        for label, method, grid in (("nlm", nlm, NLM_GRID), ("bm3d", bm3d_rgb, BM3D_GRID)):
            scores = {
                f: np.mean(
                    [quality(training[n], method(x, f * s))[0] for n, (x, s) in noisy.items()]
                )
                for f in grid
            }
            best = tuned[case][label] = max(scores, key=lambda f: scores[f])
            edge = "  (AT THE GRID'S EDGE: widen it)" if best in (grid[0], grid[-1]) else ""
            print(f"  tuned {label} for {case}: factor {best:g}{edge}", flush=True)
    saved = {**tuning_key(pool, side), "tuned_on": sorted(training), "factors": tuned}
    TUNING.write_text(json.dumps(saved, indent=1) + "\n")
    return tuned


def tuned_factors(pool: Path, side: int) -> dict[str, dict[str, float]]:
    """The stored factors, if they were tuned for this pool, crop size and grids; else the
    run stops and says how to tune them (BM3D takes long: never started unasked)."""
    saved = json.loads(TUNING.read_text())
    want = tuning_key(pool, side)
    differ = [k for k, v in want.items() if saved.get(k) != v]
    if differ:
        was = ", ".join(f"{k}={saved.get(k, 'not recorded')}" for k in differ)
        sys.exit(
            f"{TUNING.name} was not tuned for this run: it differs in {', '.join(differ)} "
            f"(it has {was}). Tune the baselines for this pool and crop first:\n"
            f"  .venv/bin/python bench/restore_quality.py --pool {pool} --crop {side} "
            "--tune-only\n(or add --retune to this command)."
        )
    factors: dict[str, dict[str, float]] = saved["factors"]
    return factors


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
