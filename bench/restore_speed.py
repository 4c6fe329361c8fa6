"""Megapixels per second of each restore model on this machine's CPU, by tile size.

    .venv/bin/python bench/restore_speed.py [--size 1280x720] [--frames 2] [--tiles 128,256,512]

Each model restores the same frame through restore() with one tile size at a time (batch
of 4 tiles per call), as the stage calls it (the models' radii given), after one untimed
restore() of the same frame with the same tiles and batch: input megapixels per second,
output megapixels per second, the model alone on the same tiles (cut with restore()'s
overlap, no stitching, also after an untimed call), and restore / model alone. torch uses
all cores unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import time

import torch
from restore_frames import engine, frame, model_alone, stage_overlap, stage_radii

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
    print(
        "| model | tile | input MP/s | output MP/s | model alone, input MP/s |"
        " restore / model alone |"
    )
    print("|---|---:|---:|---:|---:|---:|")
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
            run, known = direct_runner({name: built}, max_batch=4), stage_radii(built)
            # Untimed: the engine's warm-up used other shapes; this one pays the first
            # call at these tiles and this batch, as model_alone's own untimed call does.
            first = restore(image, entry.task, settings, run, known)
            assert first.image is not None, first.reason
            started = time.perf_counter()
            for _ in range(args.frames):
                result = restore(image, entry.task, settings, run, known)
                assert result.image is not None, result.reason
            seconds = time.perf_counter() - started
            alone = model_alone(
                built,
                image,
                tile=tile,
                overlap=stage_overlap(built, settings),
                batch=4,
                frames=args.frames,
            )
            through = args.frames * megapixels / seconds
            print(
                f"| {name} | {tile} | {through:.2f} |"
                f" {through * entry.scale**2:.2f} |"
                f" {alone * megapixels:.2f} | {through / (alone * megapixels):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
