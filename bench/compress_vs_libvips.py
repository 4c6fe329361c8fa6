"""The compress stage's default variants against libvips doing the same work.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/compress_vs_libvips.py [FOLDER] [--threads 1] [--runs 5]

FOLDER holds photographs (JPEG/PNG/WebP); without it, a set of twelve 3000-4000 px JPEGs is
made from scikit-image's bundled photographs (public domain and CC0). For every image both
sides produce thumbnail 150, preview 500 and full 2048 (longest side, never upscaled) in
AVIF, WebP and JPEG at the same qualities (70/75/80, 75/80/85, 80/85/90), in the same
process, with the same number of encoder threads. libvips' `effort` is matched to our
AVIF speed (effort = 9 - speed).

Each run times, image by image, three things one after the other (the order rotating):
* libvips from the original file (decode with shrink-on-load, resize, encode);
* ours from the same original file (compress() given the file's bytes): the same work,
  so `vips / ours, same input` is the comparison, and the one the target (>= 1.1) is for;
* ours from the intermediate the stage is handed in the pipeline (enhance's QOI pixels,
  box-reduced to 2048 px ahead by pre_reduce). Making that intermediate (decoding the
  3000-4000 px original and reducing it) is done untimed beforehand, so `vips / ours,
  stage's intermediate` compares unequal work: what the compress stage itself costs in
  the pipeline, against libvips doing everything from the original.
Prints both ratios per run and over the runs, the output quality (SSIM against a Lanczos
reduction of the original, and bytes, per format) of ours from either input and of
libvips, then the throughput of validate + categorize + enhance in megapixels per second.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from processors import intermediate
from processors.categorize import CategorizeSettings, Hints, categorize
from processors.compress import (
    DEFAULT_VARIANTS,
    CompressSettings,
    compress,
    largest_side,
    pre_reduce,
)
from processors.enhance import EnhanceSettings, enhance
from processors.validate import ValidateSettings, validate

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def make_photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    paths = []
    for i, name in enumerate(SAMPLES * 2):
        base = Image.fromarray(getattr(data, name)()).convert("RGB")
        longest = 3000 + 200 * (i % 6)
        scale = longest / max(base.size)
        image = base.resize(
            (round(base.width * scale), round(base.height * scale)), Image.Resampling.LANCZOS
        )
        path = folder / f"{i:02d}-{name}.jpg"
        image.save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


def pipeline_inputs(blobs: list[bytes]) -> list[bytes]:
    """What the compress stage is handed: the intermediate enhance writes (upright RGB
    pixels and the EXIF validate keeps), box-reduced ahead for compress's largest variant
    (`pre_reduce`), as when enhance keeps the pixels."""
    vs, cs = ValidateSettings(), CompressSettings()
    out = []
    for blob in blobs:
        checked = validate(blob, vs)
        reduced = pre_reduce(checked.image, largest_side(cs), cs)
        out.append(intermediate.encode(reduced, checked.exif)[0])
    return out


Made = list[tuple[str, str, bytes]]  # (variant, format, encoded)


def ours(blobs: list[bytes], threads: int) -> list[Made]:
    settings = CompressSettings(encoder_threads=threads)
    return [[(o.variant, o.format, o.data) for o in compress(blob, settings)] for blob in blobs]


def libvips(blobs: list[bytes], speed: int) -> list[Made]:
    import pyvips

    made = []
    for blob in blobs:
        outputs = []
        for spec in DEFAULT_VARIANTS:
            # thumbnail_buffer uses shrink-on-load and never enlarges with size="down".
            image = pyvips.Image.thumbnail_buffer(
                blob, spec.longest_side, height=spec.longest_side, size="down"
            )
            # Streamed images can be read once; keep it in memory for the three encoders.
            image = image.copy_memory()
            q = spec.quality
            avif = image.heifsave_buffer(Q=q["avif"], compression="av1", effort=9 - speed)
            webp = image.webpsave_buffer(Q=q["webp"], effort=4)
            jpeg = image.jpegsave_buffer(Q=q["jpeg"], optimize_coding=True, interlace=True)
            outputs += [(spec.name, "avif", avif), (spec.name, "webp", webp)]
            outputs.append((spec.name, "jpeg", jpeg))
        made.append(outputs)
    return made


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def quality(originals: list[bytes], made: list[Made]) -> dict[str, tuple[float, float]]:
    """Per format: mean SSIM (luma) of the outputs against a Lanczos reduction of the
    original to the output's size, and mean bytes. Only the variants at least 500 px wide
    count: a thumbnail's SSIM says little."""
    import numpy as np
    from PIL import Image
    from skimage.metrics import structural_similarity

    scores: dict[str, list[tuple[float, int]]] = {}
    for original, outputs in zip(originals, made, strict=True):
        source = Image.open(io.BytesIO(original)).convert("L")
        references: dict[tuple[int, int], Image.Image] = {}
        for _variant, fmt, data in outputs:
            out = Image.open(io.BytesIO(data)).convert("L")
            if max(out.size) < 500:
                continue
            if out.size not in references:
                references[out.size] = source.resize(out.size, Image.Resampling.LANCZOS)
            reference = references[out.size]
            ssim = structural_similarity(
                np.asarray(reference), np.asarray(out), data_range=255, gaussian_weights=True
            )
            scores.setdefault(fmt, []).append((float(ssim), len(data)))
    return {
        fmt: (sum(s for s, _ in v) / len(v), sum(b for _, b in v) / len(v))
        for fmt, v in sorted(scores.items())
    }


def analysis_rate(blobs: list[bytes]) -> tuple[float, float]:
    vs, cs, es = ValidateSettings(), CategorizeSettings(), EnhanceSettings()
    pixels = 0
    started = time.perf_counter()
    for blob in blobs:
        result = validate(blob, vs)
        categorize(Hints(title="gold ring"), cs)
        enhance(result.image, "product", es)
        pixels += result.image.width * result.image.height
    elapsed = time.perf_counter() - started
    return pixels / 1e6 / elapsed, elapsed


SIDES = ("vips", "ours, same input", "ours, stage's intermediate")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="encoder threads for both sides")
    parser.add_argument("--runs", type=int, default=5, help="timed runs, each side once a run")
    args = parser.parse_args()
    import pyvips

    pyvips.concurrency_set(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted(args.folder.glob("*")) if args.folder else make_photos(Path(tmp))
        blobs = [
            p.read_bytes() for p in paths if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        ]
        from PIL import Image

        megapixels = (
            sum(
                Image.open(io.BytesIO(b)).size[0] * Image.open(io.BytesIO(b)).size[1] for b in blobs
            )
            / 1e6
        )
        # Untimed: the decode and reduction that enhance does before compress in the pipeline.
        intermediates = pipeline_inputs(blobs)
        print(
            f"{len(blobs)} photographs, {megapixels:.0f} MP in all; {args.threads} encoder "
            "thread(s); libvips and ours read the original, ours also the stage's intermediate"
        )
        speed = CompressSettings().avif_speed
        ours(intermediates[:1], args.threads)
        ours(blobs[:1], args.threads)
        libvips(blobs[:1], speed)  # warm every side up
        same: list[float] = []
        stage: list[float] = []
        for run in range(1, args.runs + 1):
            # Image by image, the sides one after the other (the order rotating): a change
            # in the machine's load falls on all of them alike.
            spent = dict.fromkeys(SIDES, 0.0)
            for i, (blob, intermediate_blob) in enumerate(zip(blobs, intermediates, strict=True)):
                calls: dict[str, Callable[[], object]] = {
                    "vips": partial(libvips, [blob], speed),
                    "ours, same input": partial(ours, [blob], args.threads),
                    "ours, stage's intermediate": partial(ours, [intermediate_blob], args.threads),
                }
                shift = (i + run) % len(SIDES)
                for side in SIDES[shift:] + SIDES[:shift]:
                    spent[side] += timed(calls[side])
            same.append(spent["vips"] / spent["ours, same input"])
            stage.append(spent["vips"] / spent["ours, stage's intermediate"])
            rates = ", ".join(f"{side} {len(blobs) / s:5.2f}" for side, s in spent.items())
            print(
                f"run {run}: images/s {rates}; vips / ours, same input {same[-1]:.2f}; "
                f"vips / ours, stage's intermediate {stage[-1]:.2f}",
                flush=True,
            )
        for label, ratios in (("same input (the original)", same), ("stage's", stage)):
            ordered = sorted(ratios)
            print(
                f"ratio libvips time / pixelfleet time, {label}, over {len(ratios)} runs: min "
                f"{ordered[0]:.2f}, median {statistics.median(ordered):.2f}, max {ordered[-1]:.2f}"
            )
        print(
            "  target >= 1.1 in every run, same input; the stage's ratio leaves our decode "
            "and reduction of the original untimed (enhance does them in the pipeline)"
        )
        ssim_vips = quality(blobs, libvips(blobs, speed))
        ssim_same = quality(blobs, ours(blobs, args.threads))
        ssim_stage = quality(blobs, ours(intermediates, args.threads))
        print("output quality, variants >= 500 px (SSIM vs a Lanczos reduction of the original):")
        for fmt in ssim_vips:
            (a, a_bytes), (c, c_bytes) = ssim_same[fmt], ssim_stage[fmt]
            b, b_bytes = ssim_vips[fmt]
            print(
                f"  {fmt:<5} ours from the original {a:.4f} at {a_bytes / 1024:6.0f} KiB, "
                f"from the intermediate {c:.4f} at {c_bytes / 1024:6.0f} KiB; "
                f"libvips {b:.4f} at {b_bytes / 1024:6.0f} KiB"
            )
        rate, elapsed = analysis_rate(blobs)
        print(f"validate + categorize + enhance: {rate:.1f} MP/s ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
