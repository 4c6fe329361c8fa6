"""Small models and images for the restore tests: untrained weights are enough to check
loading, tiling and batching, which must hold whatever the weights are."""

from __future__ import annotations

from pathlib import Path

import torch

from processors.restore.arch import CompactSR, DnCNN
from processors.restore.engine import Engine
from processors.restore.models import load_model, save_ours
from processors.restore.settings import ModelEntry, RestoreSettings


def small_models(folder: Path) -> dict[str, ModelEntry]:
    torch.manual_seed(7)
    save_ours(DnCNN(features=8, layers=5), folder / "dn.safetensors", {})
    save_ours(CompactSR(2, features=8, convs=2), folder / "x2.safetensors", {})
    save_ours(CompactSR(4, features=8, convs=2), folder / "x4.safetensors", {})
    return {
        "dn": ModelEntry(file=str(folder / "dn.safetensors"), task="denoise", tile=32),
        "x2": ModelEntry(file=str(folder / "x2.safetensors"), task="upscale", scale=2, tile=32),
        "x4": ModelEntry(file=str(folder / "x4.safetensors"), task="upscale", scale=4, tile=32),
    }


def small_settings(folder: Path, **overrides: object) -> RestoreSettings:
    return RestoreSettings(
        models=small_models(folder),
        denoise_model="dn",
        upscale_models=("x2", "x4"),
        overlap=8,
        min_tile=16,
        never_worse=False,  # untrained weights: the plumbing is under test, not the result
        **overrides,  # type: ignore[arg-type]
    )


def engines(settings: RestoreSettings) -> dict[str, Engine]:
    device = torch.device("cpu")
    return {
        name: Engine(load_model(name, entry), device, "fp32", entry.self_ensemble)
        for name, entry in settings.models.items()
    }
