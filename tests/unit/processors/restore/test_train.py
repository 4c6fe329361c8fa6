from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from processors.restore.models import load_model
from processors.restore.photos import EVALUATION, TRAINING
from processors.restore.settings import ModelEntry, RestoreSettings
from processors.restore.train import main


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
    assert "astronaut" in meta["pixelfleet.photos"] and "coffee" not in meta["pixelfleet.photos"]
    assert "pixelfleet.steps" in json.loads(meta["pixelfleet.init"])  # the run it continued
    loaded = load_model(model, ModelEntry(file=str(path), task=task, scale=scale))  # type: ignore[arg-type]
    assert loaded.source == "pixelfleet"
