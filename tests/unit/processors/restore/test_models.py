from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from processors.restore.arch import CompactSR, DnCNN, UNetDenoiser
from processors.restore.engine import Engine
from processors.restore.models import ModelError, load_model
from processors.restore.settings import ModelEntry, RestoreSettings, Task


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
    task: Task = "upscale" if scale > 1 else "denoise"
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


def _plain_unet(path: Path) -> UNetDenoiser:
    torch.manual_seed(5)
    unet = UNetDenoiser(widths=(8, 8, 16, 16))
    with torch.no_grad():  # away from the identity it starts as, so the level matters
        for param in unet.parameters():
            param.add_(0.05 * torch.randn_like(param))
    _plain_state(unet, path)
    return unet


def test_a_third_party_drunet_gets_a_noise_map_per_image_and_batches(tmp_path: Path) -> None:
    pytest.importorskip("spandrel")
    path = tmp_path / "drunet.safetensors"
    unet = _plain_unet(path)
    loaded = load_model("dr", ModelEntry(file=str(path), task="denoise", noise_map=True))
    assert (loaded.source, loaded.inputs) == ("DRUNet", 4)
    image = torch.rand(2, 3, 24, 40)
    levels = torch.tensor([5.0, 40.0]).view(2, 1, 1, 1).expand(2, 1, 24, 40) / 255
    x = torch.cat([image, levels], dim=1)
    with torch.inference_mode():
        out = loaded.call(x)
        # KAIR's DRUNet is our U-Net without the replicated margin it adds in use.
        assert torch.allclose(out, unet.train()(x).clamp(0, 1), atol=1e-5)
        same_level = loaded.call(torch.cat([image, levels[:1].expand(2, -1, -1, -1)], dim=1))
        assert not torch.allclose(out[1], same_level[1], atol=1e-3)  # its own level counts
        assert loaded.call(x[..., :21, :30]).shape == (2, 3, 21, 30)  # padded to 8 and back
    Engine(loaded, torch.device("cpu"), "fp32").warm_up()  # a batch of two: it used to fail


def test_a_third_party_drunet_without_noise_map_in_the_registry_is_refused(
    tmp_path: Path,
) -> None:
    pytest.importorskip("spandrel")
    path = tmp_path / "drunet.safetensors"
    _plain_unet(path)
    with pytest.raises(ModelError, match="set noise_map = true"):
        load_model("dr", ModelEntry(file=str(path), task="denoise"))


def test_a_model_for_other_than_rgb_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("spandrel")
    path = tmp_path / "grey.safetensors"
    _plain_state(CompactSR(2, channels=1, features=8, convs=2), path)
    with pytest.raises(ModelError, match="takes 1 and gives 1 channels"):
        load_model("grey", ModelEntry(file=str(path), task="upscale", scale=2))


def test_a_models_map_in_the_config_adds_to_the_shipped_ones() -> None:
    added = {"span-x4": {"file": "/models/4xSPAN.safetensors", "task": "upscale", "scale": 4}}
    settings = RestoreSettings.model_validate({"models": added})
    assert set(settings.models) == set(RestoreSettings().models) | {"span-x4"}
    assert settings.denoise_model in settings.models  # the defaults still validate
    changed = {"unet-color": {"file": "mine.safetensors", "task": "denoise", "noise_map": True}}
    settings = RestoreSettings.model_validate({"models": changed})
    assert settings.models["unet-color"].file == "mine.safetensors"  # replaced, whole
    assert settings.models["unet-color"].overlap is None
