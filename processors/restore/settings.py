"""The restore stage's parameters. Free of torch, so every other stage can read them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["denoise", "upscale"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Views = Literal[1, 2, 4, 8]  # a self-ensemble's size: flips and rotations averaged
WEIGHTS = Path(__file__).parent / "weights"


class ModelEntry(BaseModel):
    """One model of the registry: where its weights are and what it does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str  # a path; a bare file name means one of the weights shipped in the package
    task: Task
    scale: int = Field(default=1, ge=1, le=8)
    # Tile side in input pixels; memory per tile grows with its square.
    tile: int = Field(default=256, ge=16)
    # Context around each tile, input pixels: at least the model's receptive radius for
    # tiles to match the whole image exactly (default: the restore section's `overlap`).
    # Where the radius is known (our architectures) restore never uses less.
    overlap: int | None = Field(default=None, ge=0)
    # Average the model over this many flips and rotations of each tile (1, 2, 4 or 8):
    # n times the compute for a sharper estimate (docs/restore.md has the figures; worth
    # it on a GPU with room to spare). true and false, its older form, mean 8 and 1.
    self_ensemble: Views = 1
    # The model takes the noise sigma as a fourth input channel (DRUNet-style): restore
    # estimates it from the image (processors.restore.measures.channel_sigma).
    noise_map: bool = False

    @field_validator("self_ensemble", mode="before")
    @classmethod
    def _views_from_flag(cls, value: object) -> object:
        # Settings from the environment arrive as text.
        text = value.strip().lower() if isinstance(value, str) else None
        if isinstance(value, bool) or text in ("true", "false"):
            return 8 if value is True or text == "true" else 1
        return int(text) if text is not None and text.isdigit() else value

    def path(self) -> Path:
        given = Path(self.file)
        return given if given.parent != Path() else WEIGHTS / given


def _default_models() -> dict[str, ModelEntry]:
    unet = ModelEntry(
        file="unet-color.safetensors", task="denoise", tile=256, overlap=32, noise_map=True
    )
    return {
        "unet-color": unet,
        # The same U-Net before its two finest levels were widened (and before the runs on
        # more photographs): 2.6 times the speed on a CPU core for 0.4 to 0.8 dB less
        # (docs/restore.md), for throughput first.
        # One entry copied, so the two cannot drift apart in tiling or noise map.
        "unet-color-fast": unet.model_copy(update={"file": "unet-color-fast.safetensors"}),
        "dncnn-color": ModelEntry(file="dncnn-color.safetensors", task="denoise", tile=256),
        "compact-x2": ModelEntry(file="compact-x2.safetensors", task="upscale", scale=2, tile=256),
        "compact-x4": ModelEntry(file="compact-x4.safetensors", task="upscale", scale=4, tile=192),
    }


class RestoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelEntry] = Field(default_factory=_default_models)
    denoise_model: str = "unet-color"
    # Upscalers to choose from: the smallest scale that reaches upscale_target wins.
    upscale_models: tuple[str, ...] = ("compact-x2", "compact-x4")
    device: str = "auto"  # auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...
    precision: Precision = "auto"  # auto: bf16 (or fp16) on CUDA where the model allows
    allow_pickle: bool = False  # .pth checkpoints can run code when loaded
    # Context around each tile, input pixels; at least the model's receptive radius (raised
    # to it where that is known: processors.restore.restore.overlap_for).
    overlap: int = Field(default=16, ge=0)
    min_tile: int = Field(default=64, ge=16)  # halving the tile on out-of-memory stops here
    max_batch: int = Field(default=16, ge=1)  # tiles per model call
    max_wait_ms: float = Field(default=25.0, ge=0)  # for more same-shape tiles to arrive
    concurrency: int = Field(default=8, ge=1)  # messages restored at once per worker
    upscale_target: float = Field(default=0.25, gt=0)  # resolution score to reach
    upscale_skip_at: float = Field(default=1.0, gt=0)  # already this large: good_quality
    denoise_skip_below: float = Field(default=2.0, ge=0)  # noise sigma: good_quality
    max_output_pixels: int = Field(default=50_000_000, ge=1)
    # Never worse: a denoised result must lower the estimated noise by this share of the
    # input's, and an upscaled one, scaled back down, must match its input to this PSNR;
    # otherwise the input goes on unchanged (outcome `kept_input`, with the reason).
    never_worse: bool = True  # off only to test the plumbing with untrained weights
    min_noise_drop: float = Field(default=0.1, ge=0, le=1)
    min_upscale_consistency_db: float = Field(default=30.0, ge=0)

    @field_validator("models", mode="after")
    @classmethod
    def _over_the_shipped(cls, models: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        # A config names the models it adds or changes: the shipped ones stay, so adding
        # one model does not take away the defaults that denoise_model and upscale_models
        # name. An entry of the same name replaces the shipped one whole.
        return {**_default_models(), **models}

    @model_validator(mode="after")
    def _known_models(self) -> RestoreSettings:
        for name in (self.denoise_model, *self.upscale_models):
            if name not in self.models:
                raise ValueError(f"restore model {name!r} is not in stages.restore.models")
        for name in self.upscale_models:
            if self.models[name].task != "upscale":
                raise ValueError(f"restore model {name!r} is listed as an upscaler but is not")
        if self.models[self.denoise_model].task != "denoise":
            raise ValueError(f"restore model {self.denoise_model!r} is not a denoiser")
        return self
