"""What the restore speed benchmarks share: a test frame, engines, and the two ways of
running a frame (the model alone on its tiles, or restore() through the batching worker)."""

from __future__ import annotations

import concurrent.futures as cf
import time

import numpy as np
import torch
from PIL import Image

from processors.restore import tiling
from processors.restore.degrade import gaussian_noise
from processors.restore.engine import Engine, radii
from processors.restore.models import load_model
from processors.restore.photos import sample_photo
from processors.restore.restore import Restored, overlap_for, restore
from processors.restore.settings import Precision, RestoreSettings
from streams.stages.tile_batcher import TileBatcher


def frame(width: int, height: int) -> Image.Image:
    """A photograph (scikit-image's coffee, CC0) resized to the frame size, lightly noisy so
    the denoiser has work; the content does not change the speed of a conv net."""
    base = Image.fromarray(sample_photo("coffee")).resize((width, height), Image.Resampling.BICUBIC)
    return Image.fromarray(gaussian_noise(np.asarray(base), 12, seed=0))


def engine(
    settings: RestoreSettings, name: str, device: torch.device, precision: Precision
) -> Engine:
    entry = settings.models[name]
    built = Engine(load_model(name, entry), device, precision, entry.self_ensemble)
    built.warm_up(side=entry.tile + 2 * stage_overlap(built, settings), batch=2)
    return built


def stage_radii(built: Engine) -> dict[str, int]:
    """What the restore stage hands restore() for this model (engine.radii): its receptive
    radius where known, which restore() never lets the tiles' overlap fall below."""
    return radii({built.name: built})


def stage_overlap(built: Engine, settings: RestoreSettings) -> int:
    """The overlap restore() gives this model's tiles in the stage: the model's own (32 for
    unet-color) or the section's, never under its radius. model_alone must cut the same
    tiles, or it does less work than restore() and the ratio flatters the model alone."""
    return overlap_for(built.name, settings, built.loaded.radius)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(
    built: Engine, image: Image.Image, *, tile: int, overlap: int, batch: int, frames: int
) -> float:
    """Frames/s of the model on the frame's tiles, batch after batch: no stitching, no
    scheduling, the upper bound of what the worker can reach."""
    rgb = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    if built.loaded.inputs == 4:
        # A noise-level-aware denoiser: restore() adds the level as a constant fourth
        # channel; the frame's noise is the sigma of 12 that frame() adds.
        rgb = torch.cat([rgb, torch.full((1, *rgb.shape[1:]), 12, dtype=rgb.dtype)])
    tiles = [tiling.cut(rgb, w) for w in tiling.plan(rgb.shape[1], rgb.shape[2], tile, overlap)]
    groups = [torch.stack(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    built(groups[0])
    _sync(built.device)
    started = time.perf_counter()
    for _ in range(frames):
        for group in groups:
            built(group)
    _sync(built.device)
    return frames / (time.perf_counter() - started)


def through_worker(
    built: Engine,
    image: Image.Image,
    settings: RestoreSettings,
    *,
    batch: int,
    frames: int,
    concurrency: int,
) -> float:
    """Frames/s of restore() on `concurrency` threads sharing one TileBatcher: what the
    restore stage does with the messages of a batch."""
    name = built.name
    task = settings.models[name].task
    only = settings.model_copy(
        update={
            "max_batch": batch,
            "denoise_model": name if task == "denoise" else settings.denoise_model,
            "upscale_models": (name,) if task == "upscale" else settings.upscale_models,
            "upscale_skip_at": 99.0,
            "denoise_skip_below": 0.0,
            "max_output_pixels": 10**9,
        }
    )
    batcher = TileBatcher({name: built}, batch, only.max_wait_ms / 1000)
    known = stage_radii(built)

    def one(_: int) -> Restored:
        # As the stage calls it (restore_stage.py): with the models' radii.
        return restore(image, task, only, batcher, known)

    try:
        with cf.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(concurrency)))
            started = time.perf_counter()
            results = list(pool.map(one, range(frames)))
            seconds = time.perf_counter() - started
    finally:
        batcher.close()
    failed = [r.reason for r in results if r.image is None]
    if failed:
        raise RuntimeError(f"restore failed during the benchmark: {failed[0]}")
    return frames / seconds
