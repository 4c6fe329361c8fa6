from __future__ import annotations

from pathlib import Path

import pytest
import torch

from processors.restore import tiling
from processors.restore.arch import CompactSR, DnCNN, receptive_radius


@pytest.mark.parametrize(
    ("height", "width"), [(37, 53), (100, 64), (64, 64), (129, 257), (20, 300)]
)
def test_kept_parts_cover_the_image_exactly_once(height: int, width: int) -> None:
    cover = torch.zeros(height, width, dtype=torch.int32)
    windows = tiling.plan(height, width, tile=32, overlap=8)
    for w in windows:
        cover[w.rows.keep_from : w.rows.keep_to, w.cols.keep_from : w.cols.keep_to] += 1
        # Every window lies inside the image and keeps `overlap` of context where it can.
        assert w.rows.start >= 0 and w.rows.start + w.rows.size <= height
        assert w.rows.keep_from - w.rows.start >= 8 or w.rows.start == 0
        far_margin = w.rows.start + w.rows.size - w.rows.keep_to
        assert far_margin >= 8 or w.rows.start + w.rows.size == height
    assert bool((cover == 1).all())


def test_windows_of_a_large_image_share_one_shape() -> None:
    windows = tiling.plan(300, 500, tile=64, overlap=16)
    assert {(w.rows.size, w.cols.size) for w in windows} == {(96, 96)}
    assert len(windows) == 5 * 8


@pytest.mark.parametrize(
    ("model", "scale"),
    [
        (DnCNN(features=8, layers=6), 1),
        (CompactSR(2, features=8, convs=3), 2),
        (CompactSR(4, features=8, convs=3), 4),
    ],
)
def test_tiled_equals_untiled(model: torch.nn.Module, scale: int) -> None:
    torch.manual_seed(0)
    model.eval()
    image = torch.rand(3, 75, 131)
    overlap = receptive_radius(model)
    with torch.inference_mode():
        whole = model(image.unsqueeze(0))[0]
        windows = tiling.plan(75, 131, tile=24, overlap=overlap)
        outs = [model(tiling.cut(image, w).unsqueeze(0))[0] for w in windows]
    stitched = tiling.stitch(outs, windows, 75, 131, scale)
    assert len(windows) > 4
    assert stitched.shape == (3, 75 * scale, 131 * scale)
    assert torch.allclose(stitched, whole, atol=1e-5), (stitched - whole).abs().max()


def test_too_little_overlap_shows_seams(tmp_path: Path) -> None:
    # The check above is not vacuous: without enough context the tiles differ at the seams.
    torch.manual_seed(0)
    model = DnCNN(features=8, layers=6).eval()
    image = torch.rand(3, 64, 64)
    with torch.inference_mode():
        whole = model(image.unsqueeze(0))[0]
        windows = tiling.plan(64, 64, tile=16, overlap=1)
        outs = [model(tiling.cut(image, w).unsqueeze(0))[0] for w in windows]
    assert (tiling.stitch(outs, windows, 64, 64, 1) - whole).abs().max() > 1e-3
