from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from processors.restore.arch import CompactSR, UNetDenoiser
from processors.restore.batches import Patches, Recipe, loss_as_psnr, step_loss, upscale_batch
from processors.restore.degrade import downscale
from processors.restore.models import load_model, read_ours, save_ours
from processors.restore.photos import EVALUATION, TRAINING, sample_photo
from processors.restore.pool import Manifest, Picture
from processors.restore.settings import ModelEntry, RestoreSettings
from processors.restore.train import RECIPES, main, train


def test_training_never_sees_an_evaluation_photo() -> None:
    assert not set(TRAINING) & set(EVALUATION)


@pytest.mark.parametrize(
    ("model", "task", "scale"), [("compact-x4", "upscale", 4), ("dncnn-color", "denoise", 1)]
)
def test_a_short_run_writes_weights_that_load_and_say_how_they_were_made(
    tmp_path: Path, model: str, task: str, scale: int
) -> None:
    shipped = RestoreSettings().models[model].path()
    args = ["--model", model, "--steps", "2", "--out", str(tmp_path), "--init", str(shipped)]
    assert main([*args, "--log-every", "1", "--threads", "1"]) == 0
    path = tmp_path / f"{model}.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["pixelfleet.steps"]) == 2
    assert json.loads(meta["pixelfleet.jpeg_share"]) == RECIPES[model].jpeg_share
    assert "astronaut" in meta["pixelfleet.photos"] and "coffee" not in meta["pixelfleet.photos"]
    assert "pixelfleet.steps" in json.loads(meta["pixelfleet.init"])  # the run it continued
    loaded = load_model(model, ModelEntry(file=str(path), task=task, scale=scale))  # type: ignore[arg-type]
    assert loaded.source == "pixelfleet"


@pytest.mark.parametrize("extra", [1, 3, 6])
def test_a_deepened_upscaler_starts_as_the_same_function(extra: int) -> None:
    torch.manual_seed(2)
    model = CompactSR(2, features=8, convs=4).eval()
    with torch.no_grad():  # PReLU slopes other than the default, to catch a lost layer
        for module in model.body[1::2]:
            module.weight.uniform_(-0.5, 0.5)
    deeper = model.deepened(extra).eval()
    assert deeper.convs == 4 + extra
    image = torch.rand(1, 3, 12, 16)
    with torch.inference_mode():
        assert torch.equal(deeper(image), model(image))


@pytest.mark.parametrize("extra", [1, 2])
def test_a_deepened_unet_starts_as_the_same_function_and_keeps_drunets_layout(
    tmp_path: Path, extra: int
) -> None:
    torch.manual_seed(4)
    model = UNetDenoiser(widths=(8, 8, 16, 16)).eval()
    with torch.no_grad():  # trained-looking blocks: no zero conv that could hide a lost one
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    deeper = model.deepened(extra).eval()
    assert deeper.blocks == 2 + extra
    image = torch.rand(1, 4, 24, 40)
    with torch.inference_mode():
        assert torch.equal(deeper(image), model(image))
    path = tmp_path / "deeper.safetensors"
    save_ours(deeper, path, {})
    rebuilt = read_ours(path)
    assert isinstance(rebuilt, UNetDenoiser) and rebuilt.blocks == 2 + extra
    spandrel = pytest.importorskip("spandrel")
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "DRUNet" and f"{2 + extra}nb" in descriptor.tags


def test_a_widened_unet_starts_as_the_same_function_and_keeps_drunets_layout(
    tmp_path: Path,
) -> None:
    torch.manual_seed(5)
    model = UNetDenoiser(widths=(8, 8, 16, 16)).eval()
    with torch.no_grad():  # trained-looking weights everywhere, zero ones included
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    wider = model.widened((16, 12, 16, 24)).eval()
    assert wider.widths == (16, 12, 16, 24) and wider.blocks == 2
    image = torch.rand(1, 4, 24, 40)
    with torch.inference_mode():
        torch.testing.assert_close(wider(image), model(image), rtol=0, atol=1e-5)
    # The new channels are not dead: they hold something and their readers learn.
    new_channels = wider.m_head(image)[:, 8:]
    assert new_channels.abs().sum() > 0
    with pytest.raises(ValueError, match="narrow"):
        model.widened((4, 8, 16, 16))
    path = tmp_path / "wider.safetensors"
    save_ours(wider, path, {})
    rebuilt = read_ours(path)
    assert isinstance(rebuilt, UNetDenoiser) and rebuilt.widths == (16, 12, 16, 24)
    spandrel = pytest.importorskip("spandrel")
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "DRUNet"
    theirs = {k: v.shape for k, v in descriptor.model.state_dict().items()}
    assert theirs == {k: v.shape for k, v in wider.state_dict().items()}  # every level's width


def test_widen_fine_tunes_the_wider_unet_and_export_rebuilds_it(tmp_path: Path) -> None:
    shipped = RestoreSettings().models["unet-color"].path()
    args = ["--model", "unet-color", "--steps", "1", "--patch", "32", "--threads", "1"]
    args += ["--out", str(tmp_path)]
    assert main([*args, "--widen", "32,48,64,128"]) == 2  # nothing to widen without --init
    ckpt = tmp_path / "wide.ckpt"
    grow = ["--init", str(shipped), "--widen", "32,48,64,128"]
    assert main([*args, *grow, "--checkpoint", str(ckpt)]) == 0
    with safe_open(str(tmp_path / "unet-color.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["pixelfleet.arch"])["widths"] == [32, 48, 64, 128]
    assert json.loads(meta["pixelfleet.widened"]) == [32, 48, 64, 128]
    export = ["--export", "--checkpoint", str(ckpt), *grow, "--out", str(tmp_path / "again")]
    assert main([*args, *export]) == 0
    again = read_ours(tmp_path / "again" / "unet-color.safetensors")
    assert isinstance(again, UNetDenoiser) and again.widths == (32, 48, 64, 128)
    with safe_open(str(tmp_path / "again" / "unet-color.safetensors"), framework="pt") as handle:
        exported = handle.metadata()
    # The export says how the run was trained, as a finished run's file does.
    assert exported["pixelfleet.steps_done"] == "1" and exported["pixelfleet.steps"] == "1"
    assert json.loads(exported["pixelfleet.widened"]) == [32, 48, 64, 128]
    assert exported["pixelfleet.seed"] == meta["pixelfleet.seed"]


def test_deepen_fine_tunes_the_grown_net_and_the_header_says_so(tmp_path: Path) -> None:
    shipped = RestoreSettings().models["compact-x4"].path()
    args = ["--model", "compact-x4", "--steps", "1", "--out", str(tmp_path), "--threads", "1"]
    assert main([*args, "--deepen", "2"]) == 2  # nothing to grow without --init
    ckpt = tmp_path / "x4.ckpt"
    assert main([*args, "--init", str(shipped), "--deepen", "2", "--checkpoint", str(ckpt)]) == 0
    with safe_open(str(tmp_path / "compact-x4.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["pixelfleet.arch"])["convs"] == RECIPES["compact-x4"].make().convs + 2
    assert json.loads(meta["pixelfleet.deepened"]) == 2
    # The checkpoint of a deepened run exports with the same --init and --deepen.
    export = ["--export", "--checkpoint", str(ckpt), "--init", str(shipped), "--deepen", "2"]
    assert main([*args, *export, "--out", str(tmp_path / "again")]) == 0
    grown = tmp_path / "again" / "compact-x4.safetensors"
    # A grown file fine-tunes again as it is: its own header gives the shape.
    assert main([*args, "--init", str(grown), "--out", str(tmp_path / "third")]) == 0
    with safe_open(str(tmp_path / "third" / "compact-x4.safetensors"), framework="pt") as handle:
        assert (
            json.loads(handle.metadata()["pixelfleet.arch"])["convs"]
            == RECIPES["compact-x4"].make().convs + 2
        )


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    recipe = Recipe(**{**RECIPES["unet-color"].__dict__, "steps": 4, "batch": 2, "patch": 32})
    photos = [sample_photo("coffee"), sample_photo("astronaut")]
    whole = train(recipe, photos, 5, 10, checkpoint=tmp_path / "a.ckpt", save_every=2)
    first = train(recipe, photos, 5, 10, checkpoint=tmp_path / "b.ckpt", stop_after=2)
    assert (tmp_path / "b.ckpt").is_file()
    resumed = train(recipe, photos, 5, 10, checkpoint=tmp_path / "b.ckpt", save_every=2)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert not all(torch.equal(v, first.state_dict()[k]) for k, v in whole.state_dict().items())


def test_training_on_a_pool_records_every_file_it_used(tmp_path: Path) -> None:
    folder = tmp_path / "pool"
    (folder / "scikit-image").mkdir(parents=True)
    pictures = []
    for name, split_source in (("coffee", "scikit-image"), ("rocket", "mate-backgrounds")):
        (folder / split_source).mkdir(exist_ok=True)
        Image.fromarray(sample_photo(name)).save(folder / split_source / f"{name}.png")
        pictures.append(
            Picture(f"{split_source}/{name}.png", split_source, name, "1", "CC0", "ab" * 32, 1, 1)
        )
    (folder / "manifest.json").write_text(Manifest(tuple(pictures)).dump())
    args = ["--model", "unet-color", "--steps", "1", "--pool", str(folder), "--out", str(tmp_path)]
    assert main([*args, "--threads", "1"]) == 0
    with safe_open(str(tmp_path / "unet-color.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["pixelfleet.photos"]) == {"scikit-image/coffee.png": "ab" * 8}
    assert json.loads(meta["pixelfleet.arch"])["arch"] == "unet"


def test_with_no_blur_and_no_jpeg_an_upscaler_learns_from_plain_bicubic_downscales() -> None:
    recipe = replace(RECIPES["compact-x2"], batch=4, patch=16, blur_share=0.0, jpeg_share=0.0)
    low, high = upscale_batch(recipe, Patches([sample_photo("coffee")], 7), torch.Generator())
    assert low.shape == (4, 3, 16, 16) and high.shape == (4, 3, 32, 32)
    for small, large in zip(low, high, strict=True):
        hr = Image.fromarray((large * 255).round().byte().permute(1, 2, 0).numpy())
        expected = np.asarray(downscale(hr, 2), np.float32) / 255
        assert np.array_equal(small.permute(1, 2, 0).numpy(), expected)


def test_the_psnr_loss_counts_each_crop_alike_whatever_its_noise() -> None:
    mse, psnr = RECIPES["unet-color"], replace(RECIPES["unet-color"], loss="psnr")
    target = torch.full((2, 3, 8, 8), 0.5)
    # One crop left with ten times the other's error, as sigma 50 against sigma 15.
    error = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])
    output = (target + error).requires_grad_()
    assert loss_as_psnr(mse, step_loss(mse, output, target).item()) == pytest.approx(
        -10 * np.log10((0.1**2 + 0.01**2) / 2), abs=1e-4
    )
    # psnr: the mean of the crops' own PSNRs (each 45 dB floor added to its error).
    own = [-10 * np.log10(e**2 + 10**-4.5) for e in (0.1, 0.01)]
    assert loss_as_psnr(psnr, step_loss(psnr, output, target).item()) == pytest.approx(
        np.mean(own), abs=1e-4
    )
    # Under mse the noisier crop's pixels pull ten times harder; under psnr each pull is
    # divided by the crop's own error, so an equal step in decibels costs each crop alike.
    floor = 10**-4.5
    for recipe, ratio in (
        (mse, 10.0),
        (psnr, (0.1 / (0.1**2 + floor)) / (0.01 / (0.01**2 + floor))),
    ):
        (grad,) = torch.autograd.grad(step_loss(recipe, output, target), output)
        pull = grad[0].abs().mean() / grad[1].abs().mean()
        assert pull.item() == pytest.approx(ratio, rel=1e-3)
    assert ratio < 0.2  # under psnr the quieter crop pulls harder, per pixel
    with pytest.raises(ValueError, match="psnr"):
        replace(mse, loss="ssim")
    with pytest.raises(SystemExit):
        main(["--model", "unet-color", "--loss", "l1"])
