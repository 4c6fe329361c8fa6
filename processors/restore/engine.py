"""One model on one device: precision, memory layout and host transfers decided once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

import torch

from processors.restore.models import LoadedModel
from processors.restore.settings import Precision, Views

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The eight flips and rotations of a tile as (quarter turns, mirrored), in the order a
# self-ensemble of n views takes them: the first two, four or all eight.
VIEWS = tuple((turns, mirror) for turns in range(4) for mirror in (False, True))
VIEW_COUNTS = get_args(Views)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for but torch sees no CUDA device")
    return device


def pick_dtype(loaded: LoadedModel, device: torch.device, precision: Precision) -> torch.dtype:
    """fp32 on the CPU (reduced precision is slower there); on CUDA the best half type the
    architecture tolerates, unless the operator names one."""
    if precision != "auto":
        return _DTYPES[precision]
    if device.type != "cuda":
        return torch.float32
    if torch.bfloat16 in loaded.half_dtypes and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if torch.float16 in loaded.half_dtypes:
        return torch.float16
    return torch.float32


class Engine:
    """Runs batches of uint8 (N, C, H, W) tiles through a model, returning uint8 on the CPU."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: torch.device,
        precision: Precision = "auto",
        self_ensemble: Views = 1,
    ) -> None:
        if self_ensemble not in VIEW_COUNTS:
            raise ValueError(f"self_ensemble must be one of {VIEW_COUNTS}, not {self_ensemble}")
        self.loaded = loaded
        self.device = device
        self.self_ensemble = self_ensemble
        self.dtype = pick_dtype(loaded, device, precision)
        loaded.module.to(device)
        loaded.module.to(memory_format=torch.channels_last)

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def precision(self) -> str:
        return {v: k for k, v in _DTYPES.items()}[self.dtype]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            # Pinned pages let the copy overlap with work already queued on the GPU.
            host = batch.pin_memory() if cuda else batch
            x = host.to(self.device, non_blocking=cuda).float().div_(255.0)
            x = x.contiguous(memory_format=torch.channels_last)
            try:
                with torch.autocast(
                    self.device.type, self.dtype, enabled=self.dtype != torch.float32
                ):
                    y = self._forward(x)
            except torch.OutOfMemoryError:
                # Hand the cached blocks back so a smaller retry can have them.
                if cuda:
                    torch.cuda.empty_cache()
                raise
            out = y.float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return out.cpu()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.self_ensemble == 1:
            return self.loaded.call(x)
        total = torch.zeros((), device=x.device)
        for turns, mirror in VIEWS[: self.self_ensemble]:
            view = torch.rot90(x, turns, dims=(2, 3))
            view = view.flip(3) if mirror else view
            y = self.loaded.call(view.contiguous(memory_format=torch.channels_last))
            y = y.flip(3) if mirror else y
            total = total + torch.rot90(y, -turns, dims=(2, 3)).float()
        return total / self.self_ensemble

    def warm_up(self, side: int = 64, batch: int = 2) -> None:
        """First calls pay for kernel selection and allocator growth; pay them before work."""
        shape = (batch, self.loaded.inputs, side, side)
        for _ in range(2):
            self(torch.zeros(shape, dtype=torch.uint8))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def radii(engines: Mapping[str, Engine]) -> dict[str, int]:
    """Each model's receptive radius where it is known: restore's tiles overlap by at least
    that much (processors.restore.restore.overlap_for)."""
    return {
        name: engine.loaded.radius
        for name, engine in engines.items()
        if engine.loaded.radius is not None
    }
