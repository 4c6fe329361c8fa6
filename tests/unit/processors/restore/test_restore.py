from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from processors.restore.arch import DnCNN
from processors.restore.engine import radii as engine_radii
from processors.restore.models import save_ours
from processors.restore.restore import choose_upscaler, direct_runner, overlap_for, restore
from processors.restore.settings import ModelEntry
from tests.support.photos import noisy, photo
from tests.support.restore_models import engines, small_settings


def test_upscale_gives_the_chosen_scale_and_keeps_alpha(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    image = photo("chelsea").resize((90, 60))
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    result = restore(image, "upscale", settings, direct_runner(engines(settings)))
    assert result.outcome == "upscaled"
    assert result.model == "x4"  # 2x would stay far below the target resolution
    assert result.image is not None
    assert result.image.size == (360, 240) and result.image.mode == "RGBA"
    alpha = np.asarray(result.image.getchannel("A"), dtype=np.float64)
    assert alpha[0].mean() < 20 and alpha[-1].mean() > 235  # a top-to-bottom ramp
    after = result.record()["after"]
    assert result.tiles == 3 * 2 and (after["width"], after["height"]) == (360, 240)
    assert {"noise"} <= result.record()["before"].keys() & after.keys()


def test_smallest_scale_that_reaches_the_target_wins(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    assert choose_upscaler(1280, 720, settings) == "x2"  # 2x reaches a quarter of UHD
    assert choose_upscaler(640, 360, settings) == "x4"
    limited = small_settings(tmp_path, max_output_pixels=1_000_000)
    assert choose_upscaler(640, 360, limited) == "x2"  # 4x would pass the output limit
    assert choose_upscaler(1000, 1000, limited) is None


def test_good_quality_images_are_left_alone(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    run = direct_runner(engines(settings))
    big = restore(Image.new("RGB", (3840, 2160), "gray"), "upscale", settings, run)
    assert big.outcome == "good_quality" and big.image is None
    assert "resolution score 1" in (big.reason or "")
    clean = restore(Image.new("RGB", (200, 200), "gray"), "denoise", settings, run)
    assert clean.outcome == "good_quality" and "noise sigma 0" in (clean.reason or "")


def test_denoise_runs_on_a_noisy_photo_and_records_noise(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    image = noisy(photo("coffee").resize((150, 100)), 20)
    result = restore(image, "denoise", settings, direct_runner(engines(settings)))
    assert result.outcome == "denoised" and result.image is not None
    assert result.image.size == image.size
    assert result.before["noise"] > 10


def test_out_of_memory_halves_the_tile_then_gives_up(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    real = direct_runner(engines(settings))
    seen: list[tuple[int, ...]] = []

    def small_memory(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        seen.append(tuple(tiles[0].shape))
        if tiles[0].shape[1] > 16 + 2 * 8:  # only tiles of 16 px (plus overlap) fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(model, tiles)

    image = photo("rocket").resize((64, 96))
    result = restore(image, "upscale", settings, small_memory)
    assert result.outcome == "upscaled" and result.tile == 16
    assert [shape[1] for shape in seen] == [48, 32]  # 32 px tiles, then 16

    def no_memory(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        raise torch.OutOfMemoryError("CUDA out of memory")

    failed = restore(image, "upscale", settings, no_memory)
    assert failed.outcome == "couldnt_upscale" and failed.image is None
    assert "out of memory even at 16 px tiles" in (failed.reason or "")


def test_a_broken_model_is_an_outcome_not_a_crash(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)

    def broken(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    noisy_image = noisy(photo("coffee").resize((90, 60)), 25)
    result = restore(noisy_image, "denoise", settings, broken)
    assert result.outcome == "couldnt_denoise" and "CUDNN_STATUS" in (result.reason or "")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_engine_tiled_matches_one_big_tile(tmp_path: Path, mode: str) -> None:
    settings = small_settings(tmp_path)
    image = noisy(photo("chelsea").resize((120, 80)), 15).convert(mode)
    run = direct_runner(engines(settings))
    tiled = restore(image, "denoise", settings, run)
    one_tile = settings.model_copy(
        update={
            "models": {
                **settings.models,
                "dn": settings.models["dn"].model_copy(update={"tile": 512}),
            }
        }
    )
    whole = restore(image, "denoise", one_tile, run)
    assert tiled.tiles > 1 and whole.tiles == 1
    assert tiled.image is not None and whole.image is not None
    diff = np.abs(np.asarray(tiled.image, dtype=int) - np.asarray(whole.image, dtype=int))
    assert diff.max() <= 1  # 8-bit rounding of float sums in a different order


@pytest.mark.parametrize("count", [2, 4, 8])
def test_self_ensemble_averages_its_views_and_still_tiles_exactly(
    tmp_path: Path, count: int
) -> None:
    settings = small_settings(tmp_path)
    entry = settings.models["dn"].model_copy(update={"self_ensemble": count})
    ensemble = settings.model_copy(update={"models": {**settings.models, "dn": entry}})
    engine = engines(ensemble)["dn"]
    assert engine.self_ensemble == count
    x = torch.randint(0, 256, (2, 3, 20, 28), dtype=torch.uint8)
    # The first `count` of: as it is, mirrored, turned a quarter, turned and mirrored, ...
    chosen = [(turns, mirror) for turns in range(4) for mirror in (False, True)][:count]
    views = []
    with torch.inference_mode():
        for turns, mirror in chosen:
            view = torch.rot90(x.float() / 255, turns, dims=(2, 3))
            view = view.flip(3) if mirror else view
            y = engine.loaded.module(view)
            y = y.flip(3) if mirror else y
            views.append(torch.rot90(y, -turns, dims=(2, 3)))
    manual = (torch.stack(views).mean(0).clamp(0, 1) * 255).round().int()
    assert (engine(x).int() - manual).abs().max() <= 1
    plain = engines(settings)["dn"](x).int()
    assert (plain - manual).abs().max() > 1  # the average is not the single pass

    image = noisy(photo("chelsea").resize((120, 80)), 15)
    run = direct_runner({"dn": engine})
    tiled = restore(image, "denoise", ensemble, run)
    big = entry.model_copy(update={"tile": 512})
    one = restore(
        image,
        "denoise",
        ensemble.model_copy(update={"models": {**ensemble.models, "dn": big}}),
        run,
    )
    assert tiled.tiles > 1 and one.tiles == 1
    assert tiled.image is not None and one.image is not None
    diff = np.abs(np.asarray(tiled.image, dtype=int) - np.asarray(one.image, dtype=int))
    assert diff.max() <= 1


@pytest.mark.parametrize(("given", "views"), [(True, 8), (False, 1), ("true", 8), ("4", 4)])
def test_self_ensemble_reads_its_older_yes_no_form_and_text(given: object, views: int) -> None:
    entry = ModelEntry.model_validate({"file": "x", "task": "denoise", "self_ensemble": given})
    assert entry.self_ensemble == views


@pytest.mark.parametrize("given", [3, 16, "many"])
def test_a_view_count_other_than_1_2_4_or_8_is_refused(given: object) -> None:
    with pytest.raises(ValidationError, match="1, 2, 4 or 8"):
        ModelEntry.model_validate({"file": "x", "task": "denoise", "self_ensemble": given})


def test_tiles_overlap_by_at_least_the_models_receptive_radius(tmp_path: Path) -> None:
    torch.manual_seed(11)
    deep = DnCNN(features=8, layers=12)
    last = deep.model[-1]
    assert isinstance(last, torch.nn.Conv2d)
    with torch.no_grad():
        last.weight.mul_(30.0)  # far context then shows in the output
    save_ours(deep, tmp_path / "deep.safetensors", {})
    entry = ModelEntry(file=str(tmp_path / "deep.safetensors"), task="denoise", tile=32)
    settings = small_settings(tmp_path).model_copy(
        update={"models": {"deep": entry}, "denoise_model": "deep"}
    )  # overlap 8, under the 12 px this model needs
    built = engines(settings)
    radii = engine_radii(built)
    assert radii == {"deep": 12} and overlap_for("deep", settings, radii["deep"]) == 12
    assert overlap_for("deep", settings) == 8 and overlap_for("deep", settings, 3) == 8
    run, sides = direct_runner(built), set[int]()

    def recording(model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        sides.update(tile.shape[-1] for tile in tiles)
        return run(model, tiles)

    image = noisy(photo("chelsea").resize((120, 100)), 15)
    whole = settings.model_copy(update={"models": {"deep": entry.model_copy(update={"tile": 512})}})
    one = restore(image, "denoise", whole, run)
    short = restore(image, "denoise", settings, recording)
    assert sides == {32 + 2 * 8}
    sides.clear()
    enough = restore(image, "denoise", settings, recording, radii)
    assert sides == {32 + 2 * 12}
    assert one.image is not None and short.image is not None and enough.image is not None
    pixels = [np.asarray(r.image, dtype=int) for r in (one, short, enough)]
    assert np.abs(pixels[2] - pixels[0]).max() <= 1  # as the whole image, up to rounding
    assert np.abs(pixels[1] - pixels[0]).max() > 1  # 8 px of context were too few
