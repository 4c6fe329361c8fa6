"""The restore stage's image work: decide, tile, run the model through a runner, stitch.

The model calls go through a `TileRunner`, so this code neither knows nor cares whether
tiles are batched with other images' tiles (the stage worker) or run one image at a time
(tests, benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from processors.quality import resolution_score
from processors.restore import measures, tiling
from processors.restore.settings import RestoreSettings, Task

Outcome = Literal[
    "denoised", "upscaled", "good_quality", "kept_input", "couldnt_denoise", "couldnt_upscale"
]


class TileRunner(Protocol):
    def __call__(self, model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        """Model outputs, in order, for uint8 (C, H, W) tiles."""
        ...


@dataclass
class Restored:
    outcome: Outcome
    image: Image.Image | None = None  # None unless denoised or upscaled
    model: str | None = None
    scale: int = 1
    tile: int | None = None
    tiles: int = 0
    seconds: float = 0.0
    reason: str | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        found = {k: v for k, v in self.__dict__.items() if k != "image"}
        return {k: v for k, v in found.items() if v not in (None, {}, 0)}


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _noise(image: Image.Image, reference: Image.Image | None = None) -> float:
    """The luminance noise estimate recorded and decided on; 0 where nothing can be
    measured (an image under 3 pixels on a side)."""
    return round(measures.sigma(image, reference) or 0.0, 3)


def choose_upscaler(width: int, height: int, settings: RestoreSettings) -> str | None:
    """The smallest scale reaching the target, within the output limit; None if none fits."""
    ranked = sorted(settings.upscale_models, key=lambda name: settings.models[name].scale)
    fitting = [
        name
        for name in ranked
        if width * height * settings.models[name].scale ** 2 <= settings.max_output_pixels
    ]
    for name in fitting:
        scale = settings.models[name].scale
        if resolution_score(width * scale, height * scale) >= settings.upscale_target:
            return name
    return fitting[-1] if fitting else None


def decide(
    image: Image.Image, task: Task, settings: RestoreSettings, noise: float | None = None
) -> tuple[str | None, str]:
    """The model to run, or None and why the image is left as it is. `noise`: the image's
    estimated noise sigma when the caller has it already (the estimate is not free)."""
    if task == "denoise":
        sigma = _noise(image) if noise is None else noise
        if sigma < settings.denoise_skip_below:
            return None, f"noise sigma {sigma:g} is below {settings.denoise_skip_below:g}"
        return settings.denoise_model, f"noise sigma {sigma:g}"
    score = resolution_score(*image.size)
    if score >= settings.upscale_skip_at:
        return None, f"resolution score {score:g} is already {settings.upscale_skip_at:g} or more"
    name = choose_upscaler(*image.size, settings)
    if name is None:
        return None, f"any upscale would pass {settings.max_output_pixels} pixels"
    return name, f"resolution score {score:g}"


# Mean |change| a result may make to flat areas, grey levels: the shipped denoiser moves a
# white or black canvas by 0.1 and a mid-grey one by 1.2; grain of sigma 4 moves it by 3.2.
FLAT_CHANGE_MAX = 3.0


def overlap_for(model: str, settings: RestoreSettings, radius: int | None = None) -> int:
    """Context around each tile: the configured overlap, but never less than the model's
    receptive radius where that is known, or tiles would differ from the whole image."""
    entry = settings.models[model]
    overlap = settings.overlap if entry.overlap is None else entry.overlap
    return overlap if radius is None else max(overlap, radius)


def noise_level(image: Image.Image) -> int:
    """The noise-level map's value for a whole image: one level, so every tile is denoised
    alike (no seams). Measured where noise can show (processors.restore.measures): a
    photo on a transparent canvas or between white margins gets its own noise level, not
    the canvas's zero."""
    return min(255, round(measures.channel_sigma(image) or 0.0))


def _apply(
    rgb: NDArray[np.uint8],
    model: str,
    tile: int,
    settings: RestoreSettings,
    run: TileRunner,
    *,
    overlap: int,
    level: int,
) -> tuple[torch.Tensor, int]:
    entry = settings.models[model]
    height, width = rgb.shape[:2]
    if entry.noise_map:
        # A constant fourth channel, which the engine scales by 1/255 with the rest.
        rgb = np.concatenate([rgb, np.full((height, width, 1), level, np.uint8)], axis=2)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)
    windows = tiling.plan(height, width, tile, overlap)
    outputs = run(model, [tiling.cut(pixels, window) for window in windows])
    return tiling.stitch(outputs, windows, height, width, entry.scale), len(windows)


def restore(
    image: Image.Image,
    task: Task,
    settings: RestoreSettings,
    run: TileRunner,
    radii: Mapping[str, int] | None = None,
) -> Restored:
    """Denoise or upscale one RGB(A) image; never raises for the image's own sake.

    `radii`: each model's receptive radius where known (engine.radii), so the tiles'
    overlap is never less than it."""
    before: dict[str, Any] = {"width": image.width, "height": image.height}
    # Denoising decides on the noise estimate; the never-worse check needs it either way.
    noise = _noise(image) if task == "denoise" else None
    model, why = decide(image, task, settings, noise)
    if model is None:
        return Restored("good_quality", reason=why, before=before)
    entry = settings.models[model]
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.array(image.convert("RGB"))  # writable: torch shares its memory
    overlap = overlap_for(model, settings, (radii or {}).get(model))
    level = noise_level(image) if entry.noise_map else 0
    tile, started = entry.tile, time.perf_counter()
    failed: Outcome = "couldnt_denoise" if task == "denoise" else "couldnt_upscale"
    while True:
        try:
            out, count = _apply(rgb, model, tile, settings, run, overlap=overlap, level=level)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                reason = f"{model}: {type(exc).__name__}: {exc}"
                return Restored(failed, model=model, tile=tile, reason=reason, before=before)
            if tile // 2 < settings.min_tile:
                reason = f"out of memory even at {tile} px tiles: {exc}"
                return Restored(failed, model=model, tile=tile, reason=reason, before=before)
            tile //= 2
    restored = Image.fromarray(out.permute(1, 2, 0).numpy(), "RGB")
    if alpha is not None:
        # Transparency is a mask, not a photo: resampled, never denoised.
        restored.putalpha(alpha.resize(restored.size, Image.Resampling.LANCZOS))
    after: dict[str, Any] = {"width": restored.width, "height": restored.height}
    seconds = round(time.perf_counter() - started, 4)
    try:
        before["noise"] = _noise(image) if noise is None else noise
        # A denoised result is measured where its input showed noise: like with like.
        after["noise"] = _noise(restored, image if task == "denoise" else None)
        worse = not_better(image, restored, task, (before["noise"], after["noise"]), settings)
    except MemoryError as exc:  # the measures are bounded; this is the last line anyway
        worse = f"no memory left to check the result ({exc}); the input is kept"
    if worse is not None:
        return Restored(
            "kept_input", model=model, scale=entry.scale, tile=tile, tiles=count,
            seconds=seconds, reason=worse, before=before, after=after,
        )  # fmt: skip
    return Restored(
        "denoised" if task == "denoise" else "upscaled",
        restored,
        model=model,
        scale=entry.scale,
        tile=tile,
        tiles=count,
        seconds=seconds,
        reason=why,
        before=before,
        after=after,
    )


def not_better(
    image: Image.Image,
    result: Image.Image,
    task: Task,
    noises: tuple[float, float],
    settings: RestoreSettings,
) -> str | None:
    """Why the model's result is not measurably better than its input, or None if it is.

    No clean reference exists in production, so the checks are no-reference ones: a
    denoiser must lower the estimated noise (`noises`: before and after, measured over the
    same pixels); an upscaler must not add noise, compared with a bicubic upscale at the
    output's size, and, scaled back to the input's size, must still be the input (it may
    add detail, not change what was there).
    """
    if not settings.never_worse:
        return None
    scale = 1 if task == "denoise" else max(1, round(result.width / image.width))
    # The noise measures leave flat areas out (a canvas, margins); a result must leave
    # them as they were, or its grain there would pass unseen.
    changed = measures.flat_change(image, result, scale)
    if changed is not None and changed > FLAT_CHANGE_MAX:
        return (
            f"it changed the flat areas (a canvas or margins) by {changed:.3g} grey levels on "
            f"average, over {FLAT_CHANGE_MAX:g}; the input is kept"
        )
    if task == "denoise":
        return _not_denoised(image, result, noises, settings)
    # An input too thin to measure (under 3 px) has no noise level to compare with: no
    # rise is claimed, only the consistency below.
    own = measures.channel_sigma(image)
    levels = None if own is None else measures.upscale_noise(image, result, scale)
    if own is not None and levels is not None:
        # An upscaler may carry the input's own noise over more crisply than bicubic
        # interpolation does (the shipped 2x: about a quarter of it); that is not noise it
        # added.
        bicubic, mine = levels
        allowed = 1.0 + 0.3 * own
        if mine > bicubic + allowed:
            return (
                f"estimated noise at the output's size is {mine:.3g} where a bicubic upscale "
                f"has {bicubic:.3g}, more than {allowed:.3g} above it; the input is kept"
            )
    consistency = measures.consistency_db(image, result, scale)
    if consistency < settings.min_upscale_consistency_db:
        return (
            f"scaled back down it matches its input to {consistency:.1f} dB, under "
            f"{settings.min_upscale_consistency_db:g} dB; the input is kept"
        )
    return None


def _not_denoised(
    image: Image.Image, result: Image.Image, noises: tuple[float, float], settings: RestoreSettings
) -> str | None:
    noise_before, noise_after = noises
    needed = noise_before * (1 - settings.min_noise_drop)
    if noise_after > needed:
        return (
            f"estimated noise went from {noise_before:g} to {noise_after:g}, not below "
            f"{needed:.3g}; the input is kept"
        )
    # What was taken away should look like the noise: a flat or smeared result also
    # has little noise left, but it took the picture with it.
    removed = measures.removed_signal(image, result)
    if removed > 1.5 * noise_before + 2.0:
        return (
            f"it removed {removed:.3g} grey levels of signal where the estimated noise "
            f"was {noise_before:g}: more than the noise; the input is kept"
        )
    return None


def direct_runner(engines: dict[str, Any], max_batch: int = 8) -> TileRunner:
    """A runner without a batching worker: each image's tiles in batches of its own."""

    def run(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        engine, out = engines[model], []
        for start in range(0, len(tiles), max_batch):
            group = tiles[start : start + max_batch]
            shapes = {t.shape for t in group}
            if len(shapes) == 1:
                out.extend(engine(torch.stack(group)).unbind(0))
            else:
                out.extend(engine(t.unsqueeze(0))[0] for t in group)
        return out

    return run
