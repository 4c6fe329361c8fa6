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

from processors.categorize import CategorizeSettings, Hints, categorize
from processors.compress import DEFAULT_VARIANTS, CompressSettings, compress
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


def ours(blobs: list[bytes], threads: int) -> int:
    settings = CompressSettings(encoder_threads=threads)
    return sum(len(compress(blob, settings)) for blob in blobs)


def libvips(blobs: list[bytes], speed: int) -> int:
    import pyvips

    made = 0
    for blob in blobs:
        for spec in DEFAULT_VARIANTS:
            # thumbnail_buffer uses shrink-on-load and never enlarges with size="down".
            image = pyvips.Image.thumbnail_buffer(
                blob, spec.longest_side, height=spec.longest_side, size="down"
            )
            # Streamed images can be read once; keep it in memory for the three encoders.
            image = image.copy_memory()
            q = spec.quality
            image.heifsave_buffer(Q=q["avif"], compression="av1", effort=9 - speed)
            image.webpsave_buffer(Q=q["webp"], effort=4)
            image.jpegsave_buffer(Q=q["jpeg"], optimize_coding=True, interlace=True)
            made += 3
    return made


def timed(fn, *args) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    count = fn(*args)
    return time.perf_counter() - started, count


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
    parser.add_argument("--rounds", type=int, default=2, help="best of N timed rounds per side")
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
        print(
            f"{len(blobs)} photographs, {megapixels:.0f} MP in all; "
            f"{args.threads} encoder thread(s)"
        )
        speed = CompressSettings().avif_speed
        ours(blobs[:1], args.threads)
        libvips(blobs[:1], speed)  # warm both up
        best_ours = min(timed(ours, blobs, args.threads)[0] for _ in range(args.rounds))
        best_vips = min(timed(libvips, blobs, speed)[0] for _ in range(args.rounds))
        print(f"pixelfleet compress : {len(blobs) / best_ours:6.2f} images/s  ({best_ours:.1f} s)")
        print(f"libvips reference   : {len(blobs) / best_vips:6.2f} images/s  ({best_vips:.1f} s)")
        print(f"ratio pixelfleet/libvips: {best_vips / best_ours:.2f}")
        rate, elapsed = analysis_rate(blobs)
        print(f"validate + categorize + enhance: {rate:.1f} MP/s ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
