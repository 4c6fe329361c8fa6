"""The compress stage's default variants against libvips doing the same work.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/compress_vs_libvips.py [FOLDER] [--threads 1] [--rounds 2]

FOLDER holds photographs (JPEG/PNG/WebP); without it, a set of twelve 3000-4000 px JPEGs is
made from scikit-image's bundled photographs (public domain and CC0). For every image both
sides produce thumbnail 150, preview 500 and full 2048 (longest side, never upscaled) in
AVIF, WebP and JPEG at the same qualities (70/75/80, 75/80/85, 80/85/90), in the same
process, with the same number of encoder threads. libvips' `effort` is matched to our
AVIF speed (effort = 9 - speed). Prints images/s for both and the ratio, then the
throughput of validate + categorize + enhance in megapixels per second. Asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
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


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn(*args)
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="encoder threads for both sides")
    parser.add_argument("--runs", type=int, default=5, help="timed runs, each side once a run")
    parser.add_argument(
        "--input",
        choices=("intermediate", "original"),
        default="intermediate",
        help="what our side reads: the stage's intermediate (as in the pipeline; default) "
        "or the original file. libvips always reads the original, with shrink-on-load.",
    )
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
        inputs = pipeline_inputs(blobs) if args.input == "intermediate" else blobs
        print(
            f"{len(blobs)} photographs, {megapixels:.0f} MP in all; {args.threads} encoder "
            f"thread(s); ours reads the {args.input}, libvips the original"
        )
        speed = CompressSettings().avif_speed
        ours(inputs[:1], args.threads)
        libvips(blobs[:1], speed)  # warm both up
        ratios = []
        for run in range(1, args.runs + 1):
            # Image by image, the two sides one after the other (which goes first
            # alternates): a change in the machine's load falls on both alike.
            mine = theirs = 0.0
            for i, (blob, made_from) in enumerate(zip(blobs, inputs, strict=True)):
                sides = [("ours", made_from), ("vips", blob)]
                for side, data in sides if (i + run) % 2 else sides[::-1]:
                    if side == "ours":
                        mine += timed(ours, [data], args.threads)
                    else:
                        theirs += timed(libvips, [data], speed)
            ratios.append(theirs / mine)
            print(
                f"run {run}: pixelfleet {len(blobs) / mine:5.2f} images/s, libvips "
                f"{len(blobs) / theirs:5.2f} images/s, ratio {theirs / mine:.2f}",
                flush=True,
            )
        ordered = sorted(ratios)
        print(
            f"ratio pixelfleet/libvips over {len(ratios)} runs: min {ordered[0]:.2f}, median "
            f"{ordered[len(ordered) // 2]:.2f}, max {ordered[-1]:.2f} (target >= 1.1 in every run)"
        )
        ssim_ours = quality(blobs, ours(inputs, args.threads))
        ssim_vips = quality(blobs, libvips(blobs, speed))
        print("output quality, variants >= 500 px (SSIM vs a Lanczos reduction of the original):")
        for fmt in ssim_ours:
            (a, a_bytes), (b, b_bytes) = ssim_ours[fmt], ssim_vips[fmt]
            print(
                f"  {fmt:<5} pixelfleet SSIM {a:.4f} at {a_bytes / 1024:6.0f} KiB   "
                f"libvips SSIM {b:.4f} at {b_bytes / 1024:6.0f} KiB"
            )
        rate, elapsed = analysis_rate(blobs)
        print(f"validate + categorize + enhance: {rate:.1f} MP/s ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
