"""Train the shipped models on the CPU: `python -m processors.restore.train [--model NAME]`.

Fixed seeds, a fixed number of steps, and only the TRAINING photographs (never the ones the
benchmark evaluates on). Every model but the earlier dncnn-color learns from the photo pool
(`python -m processors.restore.pool_build --out POOL`). docs/restore-training.md gives
the commands that made every shipped file, in order, with their times on a two-core
machine; each file's header records its recipe, its data list and what it continued from.
Results differ in the last bits with another thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file
from torch import nn

from processors.restore.arch import CompactSR, DnCNN, UNetDenoiser
from processors.restore.batches import (
    LOSSES,
    Patches,
    Recipe,
    capture_batch,
    denoise_batch,
    loss_as_psnr,
    step_loss,
    upscale_batch,
)
from processors.restore.models import read_ours, save_ours
from processors.restore.photos import TRAINING, folder_photos, sample_photo
from processors.restore.pool import Manifest, read_picture
from processors.restore.settings import WEIGHTS


def _upscaler(
    scale: int, steps: int, patch: int, max_lr: float = 2e-3, clip_norm: float = 0.0
) -> Recipe:
    return Recipe(
        f"compact-x{scale}",
        steps,
        16,
        patch,
        lambda: CompactSR(scale, features=48, convs=8),
        scale=scale,
        max_lr=max_lr,
        clip_norm=clip_norm,
        crop_tries=3,
    )


RECIPES = {
    # A deep plain stack without normalisation diverges at the upscalers' learning rate.
    "dncnn-color": Recipe(
        "dncnn-color",
        6000,
        16,
        56,
        lambda: DnCNN(features=32, layers=15),
        max_lr=5e-4,
        clip_norm=1.0,
    ),
    # Noise-level-aware U-Net on the photo pool, with the real-capture degradations.
    "unet-color": Recipe(
        "unet-color",
        4500,
        16,
        64,
        UNetDenoiser,
        max_sigma=55.0,
        max_lr=1e-3,
        clip_norm=1.0,
        noise_map=True,
    ),
    # Upscalers on the photo pool: wider than the first ones (32 features), as wide as
    # two CPU hours of training allow.
    # At 2x the wider net diverged within 500 steps at the 4x's rate.
    "compact-x2": _upscaler(2, 8000, 48, max_lr=1e-3, clip_norm=1.0),
    "compact-x4": _upscaler(4, 8000, 32),
}


def _save_checkpoint(path: Path, step: int, state: dict[str, object]) -> None:
    partial = path.with_suffix(".partial")
    torch.save({"step": step, **state}, partial)
    partial.replace(path)  # a crash while saving leaves the previous checkpoint whole


def train(  # noqa: PLR0917 - one call site, each argument named there
    recipe: Recipe,
    photos: Sequence[NDArray[np.uint8]],
    seed: int,
    log_every: int,
    start: nn.Module | None = None,
    checkpoint: Path | None = None,
    save_every: int = 250,
    stop_after: int | None = None,
) -> nn.Module:
    """Train one recipe. With `checkpoint`, the whole state (weights, optimiser, schedule,
    every random generator) is saved every `save_every` steps and a run that finds the
    file continues where it stopped: the result equals an uninterrupted run's.
    `stop_after` ends this run early at that step (its checkpoint saved), to train in
    several sittings."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    patches = Patches(photos, seed)
    model = (recipe.make() if start is None else start).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.max_lr, total_steps=recipe.steps, pct_start=0.05
    )
    first = 1
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)  # our own file, written below
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch"])
        patches.rng.setstate(saved["random"])
        patches.np_rng.bit_generator.state = saved["numpy"]
        first = int(saved["step"]) + 1
        print(f"{recipe.name}: resumed from {checkpoint} at step {first}", flush=True)
    if recipe.scale != 1:
        make_batch = upscale_batch
    else:
        make_batch = capture_batch if recipe.noise_map else denoise_batch
    started, running = time.monotonic(), 0.0
    last = min(recipe.steps, stop_after or recipe.steps)
    for step in range(first, last + 1):
        inputs, targets = make_batch(recipe, patches, generator)
        loss = step_loss(recipe, model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if recipe.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
        optimizer.step()
        schedule.step()
        running += loss.item()
        if checkpoint is not None and (step % save_every == 0 or step == last):
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
                "torch": torch.get_rng_state(),
                "random": patches.rng.getstate(),
                "numpy": patches.np_rng.bit_generator.state,
            }
            _save_checkpoint(checkpoint, step, state)
        if step % log_every == 0 or step == recipe.steps:
            elapsed = time.monotonic() - started
            psnr = loss_as_psnr(recipe, running / (step % log_every or log_every))
            eta = elapsed / (step - first + 1) * (recipe.steps - step)
            print(
                f"{recipe.name}: step {step}/{recipe.steps}  train PSNR {psnr:5.2f} dB  "
                f"{elapsed:5.0f} s elapsed, {eta:4.0f} s left",
                flush=True,
            )
            running = 0.0
    return model.eval()


def _degradations(recipe: Recipe) -> str:
    if recipe.scale != 1:
        return (
            f"bicubic down; {recipe.blur_share:.0%} blurred first, "
            f"{recipe.jpeg_share:.0%} JPEG 70-95 after"
        )
    if recipe.noise_map:
        return f"capture; {recipe.gaussian_share:.0%} plain Gaussian"
    return "gaussian+poisson"


def _provenance(path: Path | None) -> object:
    """What a fine-tuned model started from: the earlier run's own training record."""
    if path is None:
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: v for k, v in (handle.metadata() or {}).items() if k != "pixelfleet.arch"}


Widths = tuple[int, int, int, int]


def _widths(text: str) -> Widths:
    """--widen's value: four channel counts, one per U-Net level, e.g. "32,48,64,128"."""
    parts = [int(part) for part in text.split(",")]
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError("four positive channel counts, e.g. 32,48,64,128")
    return parts[0], parts[1], parts[2], parts[3]


def first_model(
    recipe: Recipe, init: Path | None, deepen: int = 0, widen: Widths | None = None
) -> nn.Module:
    """What a run starts from: the recipe's fresh network, or (fine-tuning) the weights of
    an earlier run, optionally grown by `deepen` layers (upscalers) or residual blocks per
    level (the U-Net) that start as the identity (the architectures' `deepened`), or
    widened to `widen` channels per level (the U-Net's `widened`, the same function)."""
    # Our own file rebuilds its own shape (an earlier run may have deepened it).
    model = read_ours(init) if init is not None else None
    if model is None:
        model = recipe.make()
        if init is not None:
            model.load_state_dict(load_file(str(init)))
    if deepen:
        if not isinstance(model, CompactSR | UNetDenoiser) or init is None:
            raise ValueError("--deepen grows trained weights of ours: give --init")
        model = model.deepened(deepen)
    if widen:
        if not isinstance(model, UNetDenoiser) or init is None:
            raise ValueError("--widen grows trained U-Net weights of ours: give --init")
        model = model.widened(widen)
    return model


def export(
    name: str,
    checkpoint: Path | None,
    out: Path,
    init: Path | None,
    *,
    deepen: int,
    widen: Widths | None,
    record: dict[str, object],
) -> int:
    """Write the weights a checkpoint holds, with the step it reached and the run's training
    record (`record`: what a finished run would write, from the same flags) in the header.
    A grown run's checkpoint needs the same --init and --deepen or --widen to rebuild
    its shape."""
    if name not in RECIPES or checkpoint is None or not checkpoint.is_file():
        print("--export needs one --model and an existing --checkpoint", file=sys.stderr)
        return 2
    saved = torch.load(checkpoint, weights_only=False)  # our own file
    model = first_model(RECIPES[name], init, deepen, widen)
    model.load_state_dict(saved["model"])
    path = out / f"{name}.safetensors"
    save_ours(model, path, {**record, "steps_done": saved["step"]})
    print(f"{name}: wrote {path} from step {saved['step']} of {checkpoint}")
    return 0


def _recipe(name: str, args: argparse.Namespace) -> Recipe:
    """The named recipe with the command line's overrides."""
    given = {field: getattr(args, field) for field in _OVERRIDES}
    return replace(RECIPES[name], **{k: v for k, v in given.items() if v is not None})


def _record(
    recipe: Recipe, args: argparse.Namespace, sources: object, init: Path | None
) -> dict[str, object]:
    """A weights file's training record: the recipe as run, seed, data list, degradations
    and what it started from."""
    return {
        **{field: getattr(recipe, field) for field in _RECORDED},
        "seed": args.seed,
        "photos": sources,
        "degradations": _degradations(recipe),
        "init": _provenance(init),
        "deepened": args.deepen,
        "widened": list(args.widen) if args.widen else None,
    }


def _loss_kind(text: str) -> str:
    if text not in LOSSES:
        raise argparse.ArgumentTypeError(f"one of {', '.join(LOSSES)}")
    return text


# Recipe fields the command line may override: field -> (flag, type, help).
_OVERRIDES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "steps": ("--steps", int, "override the recipe's step count"),
    "max_lr": ("--lr", float, "override the recipe's peak learning rate"),
    "patch": ("--patch", int, "override the recipe's crop side (input px)"),
    "crop_tries": ("--crop-tries", int, "override: keep the most detailed of this many crops"),
    "blur_share": ("--blur-share", float, "override: upscalers' blurred share"),
    "jpeg_share": ("--jpeg-share", float, "override: upscalers' JPEG share"),
    "gaussian_share": ("--gaussian-share", float, "override: the denoiser's Gaussian share"),
    "loss": ("--loss", _loss_kind, "override: what a step minimises, mse or psnr"),
}
# What each weights file's header records of its recipe, beside seed, data and provenance.
_RECORDED = (*_OVERRIDES, "batch", "max_sigma")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--photos", type=Path, help="train on this folder instead")
    parser.add_argument(
        "--pool", type=Path, help="train on the training split of this photo pool (pool_build)"
    )
    parser.add_argument("--checkpoint", type=Path, help="save here and resume from here")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--stop-after", type=int, help="stop at this step; resume later")
    parser.add_argument(
        "--export", action="store_true", help="only write --checkpoint's weights (a run so far)"
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
    parser.add_argument("--log-every", type=int, default=200)
    parser.add_argument("--init", type=Path, help="continue from these weights (fine-tune)")
    parser.add_argument(
        "--deepen",
        type=int,
        default=0,
        help="with --init: first grow the net by this many identity layers (upscalers) or "
        "residual blocks per level (the U-Net)",
    )
    parser.add_argument(
        "--widen",
        type=_widths,
        help="with --init: first widen the U-Net to these channels per level, e.g. 32,48,64,128",
    )
    for field, (flag, kind, text) in _OVERRIDES.items():
        parser.add_argument(flag, dest=field, type=kind, help=text)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.deepen or args.widen) and args.init is None:
        print("--deepen and --widen grow trained weights: give them with --init", file=sys.stderr)
        return 2
    if args.pool:
        chosen = Manifest.load(args.pool).of("train")
        # The data list: every training file by name and content hash.
        sources: object = {p.file: p.sha256[:16] for p in chosen}
    elif args.photos:
        sources = f"photos from {args.photos}"
    else:
        sources = "scikit-image samples: " + ", ".join(TRAINING)
    if args.export:
        # The record of the run's own flags: an exported run says how it was trained.
        record = (
            _record(_recipe(args.model, args), args, sources, args.init)
            if args.model in RECIPES
            else {}
        )
        return export(
            args.model, args.checkpoint, args.out, args.init, deepen=args.deepen,
            widen=args.widen, record=record,
        )  # fmt: skip
    if args.pool:
        photos = [read_picture(args.pool, picture) for picture in chosen]
    elif args.photos:
        photos = list(folder_photos(args.photos).values())
        sources = f"{len(photos)} photos from {args.photos}"
    else:
        photos = [sample_photo(name) for name in TRAINING]
    if not photos:
        print(f"no readable photos in {args.photos}", file=sys.stderr)
        return 2
    names = list(RECIPES) if args.model == "all" else [args.model]
    for name in names:
        recipe = _recipe(name, args)
        started = time.monotonic()
        model = train(
            recipe,
            photos,
            args.seed,
            args.log_every,
            first_model(recipe, args.init, args.deepen, args.widen),
            args.checkpoint,
            args.save_every,
            args.stop_after,
        )
        if args.stop_after and args.stop_after < recipe.steps:
            print(f"{name}: stopped after step {args.stop_after}; run again to go on")
            continue
        path = args.out / f"{name}.safetensors"
        save_ours(model, path, _record(recipe, args, sources, args.init))
        print(f"{name}: wrote {path} after {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
