"""Build the photo pool: `python -m processors.restore.pool_build --out DIR`.

Downloads the Debian packages of `pool.DEBIAN_SOURCES` with `apt-get download` (run
`apt-get update` first), unpacks them with `dpkg-deb -x`, keeps the largest copy of each
picture that is big, opaque and detailed enough, stores it as PNG (long side at most
`pool.LONG_SIDE`), adds scikit-image's samples, copies each package's copyright file beside
its pictures and writes `manifest.json`. The same package versions give the same pool: the
manifest records every file's version, licence and SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from processors.restore import pool
from processors.restore.photos import sample_photo

Image.MAX_IMAGE_PIXELS = 60_000_000  # some wallpapers are 5640 x 3172


def _run(args: Sequence[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def download(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded unless already there."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def _stored_name(inside: str) -> str:
    tail = "/".join(Path(inside).parts[-3:])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail.rsplit(".", 1)[0]) + ".png"


def _store(image: Image.Image, folder: Path, name: str) -> tuple[str, int, int] | None:
    rgb = pool.shrink(image)
    if pool.detail(np.asarray(rgb)) < pool.MIN_DETAIL:
        return None
    path = folder / name
    rgb.save(path, optimize=False, compress_level=6)
    return hashlib.sha256(path.read_bytes()).hexdigest(), rgb.width, rgb.height


def add_package(package: str, debs: Path, out: Path) -> list[pool.Picture]:
    deb = download(package, debs)
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], debs).strip()
    folder = out / package
    folder.mkdir(parents=True, exist_ok=True)
    pictures: list[pool.Picture] = []
    with tempfile.TemporaryDirectory() as unpacked:
        root = Path(unpacked)
        _run(["dpkg-deb", "-x", str(deb), str(root)], debs)
        copyright_file = root / "usr/share/doc" / package / "copyright"
        copyright_text = copyright_file.read_text(errors="replace")
        (folder / "copyright").write_text(copyright_text)
        opened: list[tuple[str, Image.Image]] = []
        for path in sorted(root.rglob("*")):
            inside = path.relative_to(root).as_posix()
            if not path.is_file() or path.is_symlink() or not pool.is_picture_path(inside):
                continue
            try:
                image: Image.Image = Image.open(path)
                image.load()
            except (OSError, Image.DecompressionBombError):
                continue
            if pool.usable(image) is None:
                opened.append((inside, image))
        by_path = dict(opened)
        for inside in pool.largest_of_each(opened):
            image = by_path[inside]
            name = _stored_name(inside)
            stored = _store(image, folder, name)
            if stored is None:
                continue
            digest, width, height = stored
            licence = pool.licence_of(inside, copyright_text)
            pictures.append(
                pool.Picture(
                    f"{package}/{name}", package, inside, version, licence, digest, width, height
                )
            )
    return pictures


def add_skimage(out: Path) -> list[pool.Picture]:
    from importlib.metadata import version

    folder = out / pool.SKIMAGE_SOURCE
    folder.mkdir(parents=True, exist_ok=True)
    pictures = []
    for name in pool.SKIMAGE_PHOTOS:
        image = Image.fromarray(sample_photo(name))
        path = folder / f"{name}.png"
        image.save(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        # Licences as scikit-image's data module states them.
        licence = "public domain or CC0 (scikit-image data module)"
        pictures.append(
            pool.Picture(
                f"{pool.SKIMAGE_SOURCE}/{name}.png",
                pool.SKIMAGE_SOURCE,
                name,
                version("scikit-image"),
                licence,
                digest,
                image.width,
                image.height,
            )
        )
    return pictures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the pool folder to write")
    parser.add_argument("--debs", type=Path, help="where .deb files are kept (default: OUT/debs)")
    args = parser.parse_args(argv)
    out: Path = args.out
    debs: Path = args.debs or out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    pictures = add_skimage(out)
    for package in pool.DEBIAN_SOURCES:
        try:
            found = add_package(package, debs, out)
        except RuntimeError as exc:
            print(f"{package}: {exc}\n  (run `apt-get update` first?)", file=sys.stderr)
            return 1
        print(f"{package}: {len(found)} pictures", flush=True)
        pictures += found
    (out / "manifest.json").write_text(pool.Manifest(tuple(pictures)).dump())
    for split in ("train", "eval"):
        chosen = [p for p in pictures if p.split == split]
        print(f"{split}: {len(chosen)} pictures from {len({p.source for p in chosen})} sources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
