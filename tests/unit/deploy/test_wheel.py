"""The wheel the image's build stage makes (`pip wheel --no-deps`), installed outside the
repository: the image runs an installed package, not our checkout, so anything the package
reads from its own folder (model weights, JSON schemas, the Kafka POM) must be inside."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.unit.deploy.tools import ROOT

CHECK = """
import sys
from pathlib import Path
import processors.restore.models as models
import schemas, streams
from processors.restore.settings import RestoreSettings
from streams.cli.main import cli

site = Path(sys.argv[1])
for module in (streams, schemas, models):
    assert Path(module.__file__).is_relative_to(site), module.__file__
for name, entry in RestoreSettings().models.items():
    loaded = models.load_model(name, entry)
    assert entry.path().is_relative_to(site), entry.path()
    print(name, loaded.scale)
print(len(list((Path(schemas.__file__).parent / "json" / "v1").glob("*.schema.json"))))
print(sorted(p.name for p in (Path(streams.__file__).parent / "devstack" / "resources").iterdir()))
cli(["--help"])
"""


def test_the_images_wheel_works_installed(tmp_path: Path) -> None:
    # No build isolation: the venv's pinned setuptools builds it, offline.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("pixelfleet-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "deploy/"))]
    (info,) = site.glob("pixelfleet-*.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(info / "entry_points.txt")
    assert entry_points["console_scripts"]["pixelfleet"] == "streams.cli.main:cli"

    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PIXELFLEET_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    models = ["unet-color 1", "unet-color-fast 1", "dncnn-color 1", "compact-x2 2", "compact-x4 4"]
    assert lines[:5] == models
    assert lines[5] == "5"
    assert lines[6] == "['kafka-pom.xml', 'log4j2.xml']"
    assert "worker" in done.stdout and "init" in done.stdout
