"""The photo pool's choices: licences from copyright files, one copy per picture, opaque
pictures only, whole sources held out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from processors.restore import pool
from processors.restore.degrade import Capture, capture_noise, random_capture
from tests.support.photos import photo

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: backgrounds

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: nature/*.jpg
 desktop/Wide-*.png
Copyright: 2021 A Photographer
License: CC-BY-SA-4.0
 The licence's own text, which is not its name.

Files: debian/*
License: GPL-2+

Files: 16.04/Dragonfly_by_Bolly.jpg
License: CC-BY-4.0
"""


def test_the_last_matching_stanza_gives_the_licence() -> None:
    assert pool.licence_of("usr/share/backgrounds/x/nature/Dune.jpg", DEP5) == "CC-BY-SA-4.0"
    assert pool.licence_of("usr/share/backgrounds/x/desktop/Wide-1.png", DEP5) == "CC-BY-SA-4.0"
    assert pool.licence_of("usr/share/backgrounds/x/abstract/Flow.png", DEP5) == "GPL-2+"


def test_a_stanza_naming_one_file_finds_it_installed_under_another_folder() -> None:
    # The source tree's "16.04/" is not where the package installs the picture.
    assert pool.licence_of("usr/share/backgrounds/Dragonfly_by_Bolly.jpg", DEP5) == "CC-BY-4.0"
    # A wildcard's own folder still has to match: debian/* is not every file.
    assert pool.licence_of("usr/share/backgrounds/Other.jpg", DEP5) == "GPL-2+"


def test_a_free_text_copyright_file_names_what_it_says() -> None:
    text = "Image Authors:\n - a.jpg\n   Licensed under Creative Commons BY-SA 3.0 License.\n"
    assert pool.licence_of("a.jpg", text) == "free text: Creative Commons BY-SA 3.0 License"
    assert "see the package's copyright" in pool.licence_of("a.jpg", "All rights? Ask.")


def test_one_picture_at_several_sizes_is_kept_once_at_its_largest() -> None:
    big = photo("astronaut").resize((1024, 1024))
    other = photo("coffee").resize((900, 600))
    chosen = pool.largest_of_each(
        [("small.png", big.resize((512, 512))), ("mid.png", big.resize((700, 700))),
         ("big.png", big), ("c", other)]
    )  # fmt: skip
    assert chosen == ["big.png", "c"]


def test_logos_icons_and_flat_gradients_are_not_training_pictures() -> None:
    assert pool.usable(Image.new("RGB", (300, 900))) == "smaller than 512 px"
    logo = photo("coffee").resize((800, 600)).convert("RGBA")
    logo.putalpha(Image.linear_gradient("L").resize(logo.size))
    assert "transparent" in (pool.usable(logo) or "")
    assert pool.usable(photo("coffee").resize((800, 600))) is None
    gradient = np.asarray(Image.linear_gradient("L").resize((800, 600)).convert("RGB"))
    assert pool.detail(gradient) < pool.MIN_DETAIL < pool.detail(np.asarray(photo("coffee")))


def test_evaluation_holds_out_whole_sources(tmp_path: Path) -> None:
    pictures = tuple(
        pool.Picture(f"{src}/{i}.png", src, f"p{i}", "1", "GPL-2+", "0" * 64, 600, 600)
        for i, src in enumerate(["scikit-image", "gnome-backgrounds", "mate-backgrounds"])
    )
    manifest = pool.Manifest(pictures)
    (tmp_path / "manifest.json").write_text(manifest.dump())
    loaded = pool.Manifest.load(tmp_path)
    assert loaded == manifest
    assert loaded.sources("eval") == ["mate-backgrounds"]
    assert not set(loaded.sources("train")) & set(loaded.sources("eval"))
    assert {p.split for p in loaded.of("train")} == {"train"}


def test_capture_noise_has_the_stated_level_correlation_and_brightness_law() -> None:
    rng = np.random.default_rng(0)
    grey = np.full((256, 256, 3), 128, np.uint8)
    plain = capture_noise(grey, Capture(20.0), rng).astype(np.float64) - 128
    assert abs(plain.std() - 20.0) < 0.5
    assert abs(np.corrcoef(plain[..., 0].ravel(), plain[..., 1].ravel())[0, 1]) < 0.05
    shared = capture_noise(grey, Capture(20.0, correlation=0.5), rng).astype(np.float64) - 128
    assert abs(shared.std() - 20.0) < 0.5
    assert np.corrcoef(shared[..., 0].ravel(), shared[..., 1].ravel())[0, 1] > 0.5
    dark = np.full((256, 256, 3), 32, np.uint8)
    photon = capture_noise(dark, Capture(20.0, poisson=1.0), rng).astype(np.float64) - 32
    assert abs(photon.std() - 20.0 * np.sqrt(32 / 127.5)) < 0.6  # dimmer, quieter
    jpeg = capture_noise(grey, Capture(20.0, jpeg_after=60), rng).astype(np.float64) - 128
    assert jpeg.std() < plain.std()  # the encoder smooths part of the noise away


def test_the_gaussian_share_decides_how_many_captures_are_plain_gaussian() -> None:
    rng = np.random.default_rng(3)
    plain = Capture(0.0)[1:]  # every field but sigma at its default
    for share, expected in ((1.0, 200), (0.0, 0)):
        draws = [random_capture(rng, 50.0, share) for _ in range(200)]
        assert sum(draw[1:] == plain for draw in draws) == expected
    half = [random_capture(rng, 50.0)[1:] == plain for _ in range(400)]
    assert 160 < sum(half) < 240
