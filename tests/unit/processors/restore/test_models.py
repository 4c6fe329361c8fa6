from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from processors.restore.arch import CompactSR, DnCNN
from processors.restore.models import ModelError, load_model
from processors.restore.settings import ModelEntry, RestoreSettings


@pytest.mark.parametrize("name", ["dncnn-color", "compact-x2", "compact-x4"])
def test_shipped_weights_load_and_are_small(name: str) -> None:
    entry = RestoreSettings().models[name]
    assert entry.path().stat().st_size < 4 * 1024 * 1024
    loaded = load_model(name, entry)
    assert loaded.source == "pixelfleet"
    assert loaded.scale == entry.scale
    with torch.inference_mode():
        out = loaded.call(torch.rand(1, 3, 24, 24))
    assert out.shape == (1, 3, 24 * entry.scale, 24 * entry.scale)


def _plain_state(model: torch.nn.Module, path: Path) -> None:
    # No pixelfleet header: the file looks like any third-party checkpoint.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.parametrize(
    ("model", "scale", "arch"),
    [
        (CompactSR(2, features=16, convs=4), 2, "Compact"),
        (CompactSR(2, features=16, convs=4).deepened(3), 2, "Compact"),  # 7 hidden convs
        (DnCNN(features=16, layers=9), 1, "DnCNN"),
    ],
)
def test_third_party_layout_loads_through_spandrel(
    tmp_path: Path, model: torch.nn.Module, scale: int, arch: str
) -> None:
    torch.manual_seed(3)
    model.eval()
    path = tmp_path / "theirs.safetensors"
    _plain_state(model, path)
    task = "upscale" if scale > 1 else "denoise"
    loaded = load_model("theirs", ModelEntry(file=str(path), task=task, scale=scale))
    assert loaded.source == arch
    image = torch.rand(1, 3, 20, 28)
    with torch.inference_mode():
        # spandrel clamps to [0, 1]; the engine does the same to ours.
        assert torch.allclose(loaded.call(image), model(image).clamp(0, 1), atol=1e-6)


def test_pickle_checkpoints_need_permission(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(CompactSR(2, features=8, convs=1).state_dict(), path)
    entry = ModelEntry(file=str(path), task="upscale", scale=2)
    with pytest.raises(ModelError, match="allow_pickle"):
        load_model("p", entry)
    assert load_model("p", entry, allow_pickle=True).scale == 2


def test_wrong_scale_and_missing_file_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "x2.safetensors"
    _plain_state(CompactSR(2, features=8, convs=1), path)
    with pytest.raises(ModelError, match="upscales 2x, the registry says 4x"):
        load_model("x", ModelEntry(file=str(path), task="upscale", scale=4))
    with pytest.raises(ModelError, match="no weights file"):
        load_model("y", ModelEntry(file=str(tmp_path / "none.safetensors"), task="denoise"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load"):
        load_model("z", ModelEntry(file=str(garbage), task="denoise"))


def test_registry_refuses_unknown_or_mismatched_models() -> None:
    with pytest.raises(ValueError, match=r"not in stages\.restore\.models"):
        RestoreSettings(denoise_model="nope")
    with pytest.raises(ValueError, match="not a denoiser"):
        RestoreSettings(denoise_model="compact-x2")


def test_the_shipped_unet_takes_a_noise_map_and_the_registry_must_say_so() -> None:
    entry = RestoreSettings().models["unet-color"]
    # 1.55 million float32 weights since it grew a third block per level: still small.
    assert entry.noise_map and entry.path().stat().st_size < 8 * 1024 * 1024
    loaded = load_model("unet-color", entry)
    assert loaded.inputs == 4 and loaded.radius == 32
    with torch.inference_mode():
        assert loaded.call(torch.rand(1, 4, 24, 40)).shape == (1, 3, 24, 40)
    with pytest.raises(ModelError, match="set noise_map = true"):
        load_model("unet-color", entry.model_copy(update={"noise_map": False}))
    with pytest.raises(ModelError, match="set noise_map = false"):
        load_model(
            "dncnn-color",
            RestoreSettings().models["dncnn-color"].model_copy(update={"noise_map": True}),
        )
