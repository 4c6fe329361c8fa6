"""1080p frames per second of each restore model on a GPU, by batch size and precision,
the model alone against the same frames through the batching worker.

    .venv/bin/pip install -e '.[restore,dev]'
    .venv/bin/python bench/restore_gpu.py [--frames 48] [--batches 1,2,4,8,16,32]

"Model alone" runs a frame's tiles straight through the engine, `batch` tiles per call, the
tiles cut as restore() cuts them (the model's own overlap, never under its radius);
"worker" runs whole frames through restore() on `--concurrency` threads sharing one
TileBatcher with max_batch = `batch`, as the restore stage does (tiling, batching across
frames, stitching, uint8 back on the host, the models' radii handed to restore()). Prints
frames/s for both and worker / alone (target >= 0.8). Refuses to run without CUDA unless
--device cpu is given (a dry run).
"""

from __future__ import annotations

import argparse
import sys

import torch
from restore_frames import engine, frame, model_alone, stage_overlap, through_worker

from processors.restore.engine import pick_device
from processors.restore.settings import RestoreSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--models", default="", help="comma-separated; default: all")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type != "cuda" and args.device == "auto":
        print("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run")
        return 2
    settings = RestoreSettings()
    width, height = (int(v) for v in args.size.split("x"))
    image = frame(width, height)
    names = args.models.split(",") if args.models else list(settings.models)
    batches = [int(b) for b in args.batches.split(",")]
    name_of = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name_of}, torch {torch.__version__}, frame {width}x{height}, {args.frames} frames\n")
    print("| model | precision | batch | alone frames/s | worker frames/s | worker / alone |")
    print("|---|---|---:|---:|---:|---:|")
    for name in names:
        tile = settings.models[name].tile
        for precision in args.precisions.split(","):
            if precision != "fp32" and device.type != "cuda":
                continue
            built = engine(settings, name, device, precision)  # type: ignore[arg-type]
            if built.precision != precision:
                continue
            for batch in batches:
                alone = model_alone(
                    built,
                    image,
                    tile=tile,
                    overlap=stage_overlap(built, settings),  # restore()'s: the same tiles
                    batch=batch,
                    frames=args.frames,
                )
                worker = through_worker(
                    built,
                    image,
                    settings,
                    batch=batch,
                    frames=args.frames,
                    concurrency=args.concurrency,
                )
                print(
                    f"| {name} | {precision} | {batch} | {alone:.2f} | {worker:.2f} |"
                    f" {worker / alone:.2f} |",
                    flush=True,
                )
            del built
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
