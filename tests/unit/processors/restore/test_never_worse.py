"""The restore stage keeps its input when the model's result is not measurably better, and
the noise-level-aware denoiser gets one noise level for the whole image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image, ImageFilter
from torch import nn

from processors.quality import channel_noise_sigma
from processors.restore.arch import CompactSR, DnCNN, UNetDenoiser
from processors.restore.models import save_ours
from processors.restore.restore import TileRunner, direct_runner, not_better, restore
from processors.restore.settings import ModelEntry, RestoreSettings
from tests.support.photos import noisy, photo
from tests.support.restore_models import engines, small_settings


def _settings(folder: Path, **overrides: object) -> RestoreSettings:
    torch.manual_seed(3)
    harmful = DnCNN(features=8, layers=5)
    last, wrong = harmful.model[-1], CompactSR(2, features=8, convs=2)
    assert isinstance(last, nn.Conv2d) and isinstance(wrong.body[-1], nn.Conv2d)
    with torch.no_grad():
        last.weight.mul_(20.0)  # its "noise estimate" is texture of its own
        wrong.body[-1].weight.mul_(300.0)
    save_ours(harmful, folder / "harmful.safetensors", {})
    save_ours(wrong, folder / "wrong-x2.safetensors", {})
    save_ours(UNetDenoiser(widths=(8, 8, 16, 16)), folder / "unet.safetensors", {})
    models = {
        "harmful": ModelEntry(file=str(folder / "harmful.safetensors"), task="denoise", tile=64),
        "wrong-x2": ModelEntry(
            file=str(folder / "wrong-x2.safetensors"), task="upscale", scale=2, tile=64
        ),
        "unet": ModelEntry(
            file=str(folder / "unet.safetensors"), task="denoise", tile=48, noise_map=True
        ),
    }
    return RestoreSettings(
        models=models,
        denoise_model="harmful",
        upscale_models=("wrong-x2",),
        overlap=16,
        min_tile=16,
        **overrides,  # type: ignore[arg-type]
    )


def test_a_denoiser_that_adds_noise_leaves_the_input_and_says_why(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    image = noisy(photo("coffee").resize((120, 80)), 12)
    result = restore(image, "denoise", settings, direct_runner(engines(settings)))
    assert result.outcome == "kept_input" and result.image is None
    assert result.before["noise"] > 5 and "noise" in result.after
    assert "the input is kept" in (result.reason or "")
    assert result.record()["model"] == "harmful" and result.tiles > 0


def test_a_result_noisier_than_its_input_is_not_better(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    image = noisy(photo("coffee").resize((120, 80)), 6)
    worse = noisy(image, 6, seed=2)
    why = not_better(image, worse, "denoise", (6.0, 8.5), settings)
    assert why is not None and why.startswith("estimated noise went from 6 to 8.5")
    assert (
        not_better(
            image, worse, "denoise", (6.0, 8.5), settings.model_copy(update={"never_worse": False})
        )
        is None
    )


def test_an_upscaler_that_changes_the_picture_leaves_the_input(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    image = photo("chelsea").resize((120, 80))
    result = restore(image, "upscale", settings, direct_runner(engines(settings)))
    assert result.outcome == "kept_input" and result.image is None
    assert "the input is kept" in (result.reason or "")


def test_the_shipped_denoiser_passes_the_check_on_a_noisy_photo() -> None:
    settings = RestoreSettings(device="cpu")
    image = noisy(photo("chelsea").resize((200, 132)), 20)
    only = {settings.denoise_model: settings.models[settings.denoise_model]}
    result = restore(
        image,
        "denoise",
        settings,
        direct_runner(engines(settings.model_copy(update={"models": only}))),
    )
    assert result.outcome == "denoised", result.reason
    assert result.after["noise"] < 0.5 * result.before["noise"]


def test_the_noise_map_model_sees_one_level_for_every_tile(tmp_path: Path) -> None:
    base = _settings(tmp_path, never_worse=False)
    settings = base.model_copy(update={"denoise_model": "unet"})
    image = noisy(photo("astronaut").resize((150, 110)), 15)
    run = direct_runner(engines(settings))
    result = restore(image, "denoise", settings, run)
    assert result.outcome == "denoised" and result.image is not None
    assert result.image.size == image.size and result.image.mode == "RGB"
    assert result.tiles > 1
    # The same model on the whole image in one piece, with the level restore estimated.
    level = round(channel_noise_sigma(np.asarray(image)))
    planes = np.concatenate([np.asarray(image), np.full((110, 150, 1), level, np.uint8)], axis=2)
    whole = run("unet", [torch.from_numpy(planes).permute(2, 0, 1).contiguous()])[0]
    tiled = torch.from_numpy(np.array(result.image)).permute(2, 0, 1)
    # Only the far context beyond the overlap differs; a level per tile would differ a lot.
    assert (whole.float() - tiled.float()).abs().mean() < 0.5


@pytest.mark.parametrize("sigma", [8.0, 25.0])
def test_channel_noise_estimate_follows_the_noise_not_the_picture(sigma: float) -> None:
    clean = photo("coffee")  # few clipped pixels, where noise would be cut short
    assert channel_noise_sigma(np.asarray(clean)) < 3.0
    estimate = channel_noise_sigma(np.asarray(noisy(clean, sigma, seed=1)))
    assert abs(estimate - sigma) < 0.1 * sigma + 1.0  # texture adds a little


def test_a_denoiser_that_wipes_out_detail_leaves_the_input(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    image = noisy(photo("coffee").resize((120, 80)), 6)
    flat = Image.new("RGB", image.size, (120, 90, 60))
    why = not_better(image, flat, "denoise", (6.0, 0.0), settings)
    assert why is not None and "more than the noise" in why


def test_the_unet_loads_in_spandrel_as_drunet(tmp_path: Path) -> None:
    spandrel = pytest.importorskip("spandrel")
    path = tmp_path / "unet.safetensors"
    save_ours(UNetDenoiser(), path, {"steps": 0})
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "DRUNet" and descriptor.input_channels == 3
    out = descriptor(torch.rand(1, 3, 40, 48))
    assert out.shape == (1, 3, 40, 48)


def test_an_untrained_unet_starts_as_the_identity() -> None:
    x = torch.rand(2, 3, 32, 40)
    sigma = torch.full((2, 1, 32, 40), 0.1)
    out = UNetDenoiser()(torch.cat([x, sigma], dim=1))
    assert (out - x).abs().mean() < 0.05


def test_the_shipped_unet_tiles_like_the_whole_image_with_its_overlap() -> None:
    settings = RestoreSettings(device="cpu", never_worse=False)
    entry = settings.models["unet-color"]
    image = noisy(photo("coffee").resize((300, 200)), 20)
    whole = settings.model_copy(
        update={"models": {"unet-color": entry.model_copy(update={"tile": 320})}}
    )
    tiled = settings.model_copy(
        update={"models": {"unet-color": entry.model_copy(update={"tile": 96})}}
    )
    run = direct_runner(engines(whole))
    one = restore(image, "denoise", whole, run)
    many = restore(image, "denoise", tiled, run)
    assert one.tiles == 1 and many.tiles > 4
    assert one.image is not None and many.image is not None
    whole_px, tiled_px = np.asarray(one.image, np.float64), np.asarray(many.image, np.float64)
    diff = np.abs(whole_px - tiled_px)
    # Not bit-equal (a tile's stride-2 grid falls differently), but no seam to see.
    assert diff.mean() < 0.6 and diff.max() <= 10
    clean = np.asarray(photo("coffee").resize((300, 200)), np.float64)
    psnr = [10 * np.log10(255**2 / ((px - clean) ** 2).mean()) for px in (whole_px, tiled_px)]
    assert abs(psnr[0] - psnr[1]) < 0.05


def _upscaler(settings: RestoreSettings, grain: float = 0.0) -> TileRunner:
    """A faithful upscaler (bicubic), with `grain` sigma of noise of its own added."""

    def run(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        scale, out = settings.models[model].scale, list[torch.Tensor]()
        for tile in tiles:
            up = F.interpolate(tile[None].float(), scale_factor=scale, mode="bicubic")[0]
            noise = torch.randn(up.shape, generator=torch.Generator().manual_seed(len(out)))
            out.append((up + grain * noise).round().clamp(0, 255).to(torch.uint8))
        return out

    return run


def test_an_upscaler_that_adds_grain_leaves_the_input(tmp_path: Path) -> None:
    settings = small_settings(tmp_path).model_copy(update={"never_worse": True})
    image = photo("coffee").resize((120, 80))
    faithful = restore(image, "upscale", settings, _upscaler(settings))
    assert faithful.outcome == "upscaled", faithful.reason
    grainy = restore(image, "upscale", settings, _upscaler(settings, grain=5.0))
    assert grainy.outcome == "kept_input" and grainy.model == "x4"
    assert "where a bicubic upscale has" in (grainy.reason or "")
    # What the old check compared: the input's estimate and the 4x result's, always lower.
    assert grainy.after["noise"] < grainy.before["noise"]


def test_an_upscaler_keeps_the_noise_a_noisy_input_already_had(tmp_path: Path) -> None:
    settings = RestoreSettings(device="cpu")
    only = {name: settings.models[name] for name in settings.upscale_models}
    run = direct_runner(engines(settings.model_copy(update={"models": only})))
    for name in ("chelsea", "rocket"):
        image = noisy(photo(name).resize((150, 100)), 10)
        result = restore(image, "upscale", settings, run)
        assert result.outcome == "upscaled", result.reason


def test_an_image_too_thin_to_measure_is_not_said_to_gain_noise(tmp_path: Path) -> None:
    settings = small_settings(tmp_path).model_copy(update={"never_worse": True})
    strip = photo("coffee").resize((300, 2))
    result = restore(strip, "upscale", settings, _upscaler(settings, grain=3.0))
    # The old check: a baseline of 0 (nothing to measure), so any result "rose".
    assert result.before["noise"] == 0.0 and result.after["noise"] > 1.0
    assert result.outcome == "upscaled", result.reason
    assert not_better(strip, strip.resize((1200, 8)), "upscale", (0.0, 0.0), settings) is None


def _on_canvas(inner: Image.Image) -> Image.Image:
    """`inner` on a transparent canvas 60 px wider on each side."""
    canvas = Image.new("RGBA", (inner.width + 120, inner.height + 120), (0, 0, 0, 0))
    canvas.paste(inner.convert("RGBA"), (60, 60))
    return canvas


def test_a_photo_on_a_transparent_canvas_gets_its_own_noise_level(tmp_path: Path) -> None:
    entry = ModelEntry(file=str(tmp_path / "unused.safetensors"), task="denoise", noise_map=True)
    settings = RestoreSettings(models={"nm": entry}, denoise_model="nm", never_worse=False)
    levels: list[int] = []

    def record_level(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        levels.extend(int(tile[3].max()) for tile in tiles)
        return [tile[:3].clone() for tile in tiles]

    canvas = _on_canvas(noisy(photo("coffee").resize((240, 160)), 20, seed=1))
    result = restore(canvas, "denoise", settings, record_level)
    assert result.outcome == "denoised" and levels
    assert set(levels) == {levels[0]} and abs(levels[0] - 20) <= 0.3 * 20  # it was 0


def test_the_shipped_unet_denoises_a_photo_on_a_canvas_as_it_does_alone() -> None:
    settings = RestoreSettings(device="cpu")
    only = {settings.denoise_model: settings.models[settings.denoise_model]}
    run = direct_runner(engines(settings.model_copy(update={"models": only})))
    clean = np.asarray(photo("coffee").resize((160, 100)), np.float64)
    inner = noisy(photo("coffee").resize((160, 100)), 20, seed=1)
    alone = restore(inner, "denoise", settings, run)
    framed = restore(_on_canvas(inner), "denoise", settings, run)
    assert alone.image is not None and framed.image is not None
    assert framed.outcome == "denoised"
    assert framed.before["noise"] == pytest.approx(alone.before["noise"], rel=0.02)
    photo_part = np.asarray(framed.image.convert("RGB"), np.float64)[60:160, 60:220]

    def psnr(pixels: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / ((pixels - clean) ** 2).mean()))

    # Told the canvas's level of 0 it gave 6 dB less (25.3 against 31.5 dB on a 240x160
    # crop); now within a fraction of a decibel.
    assert psnr(photo_part) > psnr(np.asarray(alone.image, np.float64)) - 1.0


@pytest.mark.parametrize("task", ["denoise", "upscale"])
def test_grain_added_to_a_flat_canvas_is_seen(task: str) -> None:
    """The noise measures leave flat areas out, so grain a result put only there passed as
    denoised (noise 9.8 to 0.35) or upscaled; the flat areas must stay as they were."""
    inner = noisy(photo("coffee").resize((120, 80)), 15, seed=2)
    canvas = Image.new("RGB", (240, 200), (255, 255, 255))
    canvas.paste(inner, (60, 60))
    scale = 1 if task == "denoise" else 2
    smooth = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.BICUBIC)
    if task == "denoise":
        smooth = smooth.filter(ImageFilter.GaussianBlur(1.5))
    pixels = np.asarray(smooth, np.float64)
    margin = np.ones(pixels.shape[:2], bool)
    margin[60 * scale : 140 * scale, 60 * scale : 180 * scale] = False
    grain = np.random.default_rng(0).normal(0, 25, pixels.shape) * margin[..., None]
    grainy = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
    settings = RestoreSettings()
    reason = not_better(canvas, grainy, task, (9.8, 0.35), settings)  # type: ignore[arg-type]
    assert reason is not None and "flat areas" in reason
    clean = Image.fromarray(pixels.astype(np.uint8))
    assert "flat areas" not in (not_better(canvas, clean, task, (9.8, 0.35), settings) or "")


def test_a_perfect_denoise_of_a_photo_with_small_clipped_highlights_is_kept() -> None:
    """Blown-out spots are flat, and the ring around them is picture: a denoiser that
    returns the clean image changed that ring by the noise level (4.7 grey levels at sigma
    25 with 8 px spots), and the flat-area check counted it."""
    light = np.asarray(photo("coffee").resize((384, 384)), np.float64).copy()
    for y in range(20, 384, 48):
        for x in range(20, 384, 48):
            light[y : y + 8, x : x + 8] = 400.0  # small highlights, brighter than white
    pixels = light + np.random.default_rng(4).normal(0, 25, light.shape)
    noisy_image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    clean_image = Image.fromarray(np.clip(light, 0, 255).astype(np.uint8))
    from processors.restore import measures

    changed = measures.flat_change(noisy_image, clean_image)
    assert changed is not None and changed < 1.0, changed
    reason = not_better(noisy_image, clean_image, "denoise", (25.0, 1.0), RestoreSettings())
    assert "flat areas" not in (reason or "")
