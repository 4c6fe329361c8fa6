"""The restoration models' photo pool: which pictures, from which source, under which licence,
and which sources are held out for evaluation.

A *source* is a whole package (a Debian artwork package, or scikit-image's samples). The
evaluation split holds out whole sources, never crops of pictures the models trained on:
a model that only memorised its training pictures scores badly on a source it never saw,
which is the failure the split exists to show.

The pool on disk is a folder of PNGs plus `manifest.json`; `pool_build.py` makes it. This
module only reads and decides, so the choices are unit-tested without any download.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from processors.restore.photos import EVALUATION, TRAINING

Split = Literal["train", "eval"]

# Debian packages of freely licensed photographs and artwork (their copyright files give
# each picture's licence). Held out: one package of photographs and one of artwork, so the
# evaluation asks both "photos it never saw" and "illustrations it never saw".
DEBIAN_SOURCES: dict[str, Split] = {
    "gnome-backgrounds": "train",
    "desktop-base": "train",
    "plasma-workspace-wallpapers": "train",
    "debian-edu-artwork-buster": "train",
    "debian-edu-artwork-emerald": "train",
    "debian-edu-artwork-homeworld": "train",
    "debian-edu-artwork-softwaves": "train",
    "debian-edu-artwork-spacefun": "train",
    # Ubuntu Touch's wallpapers, mostly large photographs by named photographers (CC BY
    # and CC BY-SA 4.0): the training split's other photographs are scikit-image's few
    # small ones and GNOME's, so without these it learns fine natural texture from little.
    "lomiri-wallpapers-16.04": "train",
    "lomiri-wallpapers-20.04": "train",
    "mate-backgrounds": "eval",
    "sway-backgrounds": "eval",
}
SKIMAGE_SOURCE = "scikit-image"
# All of scikit-image's samples train: the pool's evaluation holds out whole packages.
SKIMAGE_PHOTOS = (*TRAINING, *EVALUATION)
SPLITS: dict[str, Split] = {SKIMAGE_SOURCE: "train", **DEBIAN_SOURCES}

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MIN_SIDE = 512  # smaller files are icons, logos and previews
LONG_SIDE = 1536  # stored size: shrinking wallpapers also fades their own JPEG damage
MIN_DETAIL = 2.0  # mean gradient, grey levels: below it a picture is a flat gradient


@dataclass(frozen=True)
class Picture:
    """One stored picture of the pool and where it came from."""

    file: str  # relative to the pool folder
    source: str
    origin: str  # the path inside the package, or the scikit-image sample's name
    version: str  # the package's version
    licence: str
    sha256: str  # of the stored PNG
    width: int
    height: int

    @property
    def split(self) -> Split:
        return SPLITS.get(self.source, "train")


@dataclass(frozen=True)
class Manifest:
    pictures: tuple[Picture, ...]

    def of(self, split: Split, sources: Iterable[str] | None = None) -> list[Picture]:
        wanted = set(sources) if sources is not None else None
        return [
            p for p in self.pictures if p.split == split and (wanted is None or p.source in wanted)
        ]

    def sources(self, split: Split) -> list[str]:
        return sorted({p.source for p in self.pictures if p.split == split})

    def dump(self) -> str:
        return json.dumps({"pictures": [asdict(p) for p in self.pictures]}, indent=1)

    @staticmethod
    def load(folder: Path) -> Manifest:
        data = json.loads((folder / "manifest.json").read_text())
        return Manifest(tuple(Picture(**entry) for entry in data["pictures"]))


def read_picture(folder: Path, picture: Picture) -> NDArray[np.uint8]:
    with Image.open(folder / picture.file) as image:
        return np.asarray(image.convert("RGB"))


# --- choosing pictures ---------------------------------------------------------------


def is_picture_path(path: str) -> bool:
    return path.lower().endswith(PICTURE_SUFFIXES)


def usable(image: Image.Image) -> str | None:
    """Why a decoded package file is not a training picture, or None when it is one."""
    if min(image.size) < MIN_SIDE:
        return f"smaller than {MIN_SIDE} px"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if alpha.min() < 255:
            return "partly transparent (a logo or overlay)"
    return None


def detail(rgb: NDArray[np.uint8]) -> float:
    """Mean absolute horizontal plus vertical difference of the grey image."""
    grey = rgb.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def signature(image: Image.Image) -> NDArray[np.float32]:
    """A small grey thumbnail of the centre square: the same picture shipped at several
    sizes looks the same here."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.convert("L").crop((left, top, left + side, top + side))
    return np.asarray(square.resize((16, 16), Image.Resampling.BOX), dtype=np.float32)


SAME_PICTURE = 8.0  # mean thumbnail difference, grey levels, below which two are one


def largest_of_each(candidates: Sequence[tuple[str, Image.Image]]) -> list[str]:
    """Of pictures that are one picture at several sizes (or cut to a nearby framing),
    keep the largest; the kept paths in the order given."""
    by_area = sorted(candidates, key=lambda c: -c[1].width * c[1].height)
    kept: list[tuple[str, NDArray[np.float32]]] = []
    for path, image in by_area:
        thumb = signature(image)
        if all(float(np.abs(thumb - other).mean()) >= SAME_PICTURE for _, other in kept):
            kept.append((path, thumb))
    chosen = {path for path, _ in kept}
    return [path for path, _ in candidates if path in chosen]


def shrink(image: Image.Image, long_side: int = LONG_SIDE) -> Image.Image:
    rgb = image.convert("RGB")
    scale = long_side / max(rgb.size)
    if scale >= 1:
        return rgb
    size = (round(rgb.width * scale), round(rgb.height * scale))
    return rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# --- licences from Debian copyright files ----------------------------------------------


@dataclass(frozen=True)
class Stanza:
    patterns: tuple[str, ...]
    licence: str


def parse_dep5(text: str) -> list[Stanza]:
    """The `Files:` paragraphs of a machine-readable (DEP-5) copyright file, in order."""
    stanzas: list[Stanza] = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = ""
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and current:
                # Continuation: more file patterns; for License it is the licence's text.
                if current == "files":
                    fields[current] += " " + line.strip()
            elif ":" in line:
                current, _, value = line.partition(":")
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and fields.get("license"):
            stanzas.append(Stanza(tuple(fields["files"].split()), fields["license"]))
    return stanzas


def licence_of(installed_path: str, copyright_text: str) -> str:
    """The licence the package's copyright file gives for one installed file.

    Installed paths differ from the source paths the file names, so a stanza matches when
    its pattern matches the path's tail, or when it names the file itself (no wildcard in
    its last part) under another folder than the one it is installed in; as in DEP-5, the
    last matching stanza wins. A copyright file in free text yields the licences it names,
    marked as such.
    """
    if copyright_text.lstrip().lower().startswith("format:"):
        found = "unknown"
        for stanza in parse_dep5(copyright_text):
            if any(_tail_matches(installed_path, p) for p in stanza.patterns):
                found = stanza.licence
        return found
    named = sorted(set(re.findall(r"Licensed under (.+?)\.?$", copyright_text, re.MULTILINE)))
    return "free text: " + ("; ".join(named) if named else "see the package's copyright file")


def _tail_matches(path: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    parts = path.split("/")
    depth = pattern.count("/") + 1
    if fnmatch.fnmatch("/".join(parts[-depth:]), pattern):
        return True
    # e.g. lomiri's "16.04/Dragonfly_by_Bolly.jpg", installed as backgrounds/Dragonfly...
    named = pattern.rsplit("/", 1)[-1]
    return not any(c in named for c in "*?[") and named == parts[-1]
