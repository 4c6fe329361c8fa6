"""The classical baselines of bench/restore_quality.py and the pictures they are scored on.

OpenCV's non-local means and BM3D, each given a crop's true noise level times a factor per
noise case; the factors are tuned on crops of the TRAINING sources only and kept in
restore_baselines.json with what they were tuned for (the pool's manifest hash, the
training sources, the crop size and the grids), so that a run on other pictures stops and
asks for a retune instead of scoring the baselines with factors meant for others.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from processors.restore.degrade import REAL_CAPTURE, Capture, capture_noise
from processors.restore.pool import Manifest, Picture, Split, detail, read_picture

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
