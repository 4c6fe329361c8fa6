"""Megapixels per second of each restore model on this machine's CPU, by tile size.

    .venv/bin/python bench/restore_speed.py [--size 1280x720] [--frames 2] [--tiles 128,256,512]

Each model restores the same frame through restore() with one tile size at a time (batch
of 4 tiles per call): input megapixels per second, output megapixels per second, and the
model alone on the same tiles (no stitching) for reference. torch uses all cores unless
--threads says otherwise.
"""

from __future__ import annotations

import argparse
import time

import torch
from restore_frames import engine, frame, model_alone

from processors.restore.engine import pick_device
from processors.restore.restore import direct_runner, restore
from processors.restore.settings import RestoreSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--tiles", default="128,256,512")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--models", help="comma-separated registry names (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    width, height = (int(v) for v in args.size.split("x"))
    image = frame(width, height)
    megapixels = width * height / 1e6
    print(f"{device}, {torch.get_num_threads()} threads, frame {width}x{height}\n")
    print("| model | tile | input MP/s | output MP/s | model alone, input MP/s |")
    print("|---|---:|---:|---:|---:|")
    base = RestoreSettings()
    chosen = args.models.split(",") if args.models else list(base.models)
    for name, entry in ((n, base.models[n]) for n in chosen):
        for tile in (int(t) for t in args.tiles.split(",")):
            models = {**base.models, name: entry.model_copy(update={"tile": tile})}
            settings = base.model_copy(
                update={
                    "models": models,
                    "denoise_skip_below": 0.0,
                    "upscale_skip_at": 99.0,
                    "upscale_models": (name,) if entry.task == "upscale" else base.upscale_models,
                    "denoise_model": name if entry.task == "denoise" else base.denoise_model,
                }
            )
            built = engine(settings, name, device, "fp32")
            run = direct_runner({name: built}, max_batch=4)
            started = time.perf_counter()
            for _ in range(args.frames):
                result = restore(image, entry.task, settings, run)
                assert result.image is not None, result.reason
            seconds = time.perf_counter() - started
            overlap = settings.overlap if entry.overlap is None else entry.overlap
            alone = model_alone(
                built, image, tile=tile, overlap=overlap, batch=4, frames=args.frames
            )
            print(
                f"| {name} | {tile} | {args.frames * megapixels / seconds:.2f} |"
                f" {args.frames * megapixels * entry.scale**2 / seconds:.2f} |"
                f" {alone * megapixels:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
