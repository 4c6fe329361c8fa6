"""The model registry and loading: our shipped weights, or any checkpoint spandrel knows."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from processors.restore.arch import CompactSR, DnCNN, UNetDenoiser, receptive_radius
from processors.restore.settings import ModelEntry, Task

_ARCH_KEY = "pixelfleet.arch"
_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class ModelError(Exception):
    """A model file that cannot be used as configured; the message says what to change."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    module: nn.Module
    task: Task
    scale: int
    tile: int
    half_dtypes: tuple[torch.dtype, ...]  # reduced precisions the architecture tolerates
    source: str  # "pixelfleet" or the spandrel architecture id
    # What to call: the module, or spandrel's wrapper (it pads to size requirements).
    call: Callable[[torch.Tensor], torch.Tensor]
    # Context each output pixel needs; None when unknown (then the configured overlap).
    radius: int | None = None
    inputs: int = 3  # channels per tile: RGB, or RGB and a noise-level map


def save_ours(model: nn.Module, path: Path, extra: dict[str, object]) -> None:
    """Write our architecture's weights with what rebuilding it needs in the header."""
    if isinstance(model, DnCNN):
        arch = {"arch": "dncnn", "layers": model.layers, "features": model.model[0].out_channels}
    elif isinstance(model, CompactSR):
        arch = {
            "arch": "compact",
            "scale": model.scale,
            "features": model.features,
            "convs": model.convs,
        }
    elif isinstance(model, UNetDenoiser):
        arch = {"arch": "unet", "widths": list(model.widths), "blocks": model.blocks}
    else:
        raise TypeError(f"not one of our architectures: {type(model).__name__}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={_ARCH_KEY: json.dumps(arch), **_strings(extra)})


def _strings(extra: dict[str, object]) -> dict[str, str]:
    return {f"pixelfleet.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}


def read_ours(path: Path) -> nn.Module | None:
    """Our architecture rebuilt from the file's header, weights loaded; None for a file
    without our header (a third-party layout: spandrel's job)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ModelError(f"{path.name}: spandrel cannot load it either: {exc}") from exc
    if _ARCH_KEY not in header:
        return None
    arch = json.loads(header[_ARCH_KEY])
    module: nn.Module
    if arch["arch"] == "dncnn":
        module = DnCNN(features=arch["features"], layers=arch["layers"])
    elif arch["arch"] == "compact":
        module = CompactSR(scale=arch["scale"], features=arch["features"], convs=arch["convs"])
    elif arch["arch"] == "unet":
        module = UNetDenoiser(widths=tuple(arch["widths"]), blocks=arch["blocks"])
    else:
        raise ModelError(f"{path.name}: unknown pixelfleet architecture {arch['arch']!r}")
    module.load_state_dict(load_file(str(path)))
    return module


def load_model(name: str, entry: ModelEntry, *, allow_pickle: bool = False) -> LoadedModel:
    """Our safetensors directly; anything else through spandrel. Pickled checkpoints can run
    code when loaded, so they are refused unless the operator allows them."""
    path = entry.path()
    if not path.is_file():
        raise ModelError(f"model {name!r}: no weights file at {path}")
    if path.suffix in _PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(
            f"model {name!r}: {path.name} is a pickle checkpoint, which can run code when "
            "loaded; convert it to .safetensors or set stages.restore.allow_pickle = true"
        )
    ours = read_ours(path) if path.suffix == ".safetensors" else None
    if ours is not None:
        if entry.scale != getattr(ours, "scale", 1):
            raise ModelError(
                f"model {name!r}: {path.name} scales {getattr(ours, 'scale', 1)}x, "
                f"the registry says {entry.scale}x"
            )
        loaded = LoadedModel(
            name,
            ours,
            entry.task,
            entry.scale,
            entry.tile,
            (torch.bfloat16, torch.float16),
            "pixelfleet",
            ours,
            receptive_radius(ours),
            4 if isinstance(ours, UNetDenoiser) else 3,
        )
    else:
        loaded = _spandrel(name, entry, path)
    if entry.noise_map != (loaded.inputs == 4):
        wants = "takes" if loaded.inputs == 4 else "does not take"
        raise ModelError(
            f"model {name!r}: {path.name} {wants} a noise-level map; set noise_map = "
            f"{str(loaded.inputs == 4).lower()} in its registry entry"
        )
    loaded.module.eval().requires_grad_(False)
    return loaded


def _spandrel(name: str, entry: ModelEntry, path: Path) -> LoadedModel:
    try:
        from spandrel import ImageModelDescriptor, ModelLoader  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelError(f"model {name!r}: loading {path.name} needs spandrel installed") from exc
    try:
        descriptor = ModelLoader().load_from_file(str(path))
    except Exception as exc:  # spandrel raises many types for files it does not recognise
        raise ModelError(f"model {name!r}: spandrel cannot load {path.name}: {exc}") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ModelError(f"model {name!r}: {path.name} is not an image-to-image model")
    if descriptor.scale != entry.scale:
        raise ModelError(
            f"model {name!r}: {path.name} upscales {descriptor.scale}x, the registry says "
            f"{entry.scale}x"
        )
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise ModelError(
            f"model {name!r}: {path.name} takes {descriptor.input_channels} and gives "
            f"{descriptor.output_channels} channels; restore runs RGB models only"
        )
    halves = [torch.bfloat16] if descriptor.supports_bfloat16 else []
    halves += [torch.float16] if descriptor.supports_half else []
    call, inputs = descriptor, 3
    if descriptor.architecture.id == "DRUNet":
        # spandrel's DRUNet call makes a noise map of batch 1 at a fixed level of 15, so a
        # batch of two fails and the level ignores the image; we feed the map ourselves,
        # as for our U-Net: RGB and the estimated level per image, batch-sized.
        call, inputs = functools.partial(_drunet, descriptor.model), 4
    return LoadedModel(
        name,
        descriptor.model,
        entry.task,
        descriptor.scale,
        entry.tile,
        tuple(halves),
        descriptor.architecture.id,
        call,
        inputs=inputs,
    )


def _drunet(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A KAIR DRUNet on (N, 4, H, W): RGB and the noise-level map. Its three stride-2
    levels need sides that are multiples of 8; the edges are extended by replication."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (0, -width % 8, 0, -height % 8), mode="replicate")
    out: torch.Tensor = module(padded)
    return out[..., :height, :width].clamp(0.0, 1.0)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
