"""Imports point one way: cli -> demo -> app -> stages/devstack -> runner -> io/observe -> config.

The runner, and a custom `worker --spec` stage, must load without the image stages:
no Pillow, numpy, imagehash or torch in a worker process that does not need them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.streams.runner.stages import IMAGE_LIBRARIES

ROOT = Path(__file__).resolve().parents[3]
# The same list the integration test's custom worker reports on.
HEAVY = IMAGE_LIBRARIES

# A package may import its own layer and those with a smaller number.
LAYERS = {
    "config": 0,
    "io": 1,
    "observe": 1,
    "runner": 2,
    "stages": 3,
    "devstack": 3,
    "notify": 3,
    "catalog": 5,
    "app": 4,
    "demo": 5,
    "ops": 5,
    "cli": 6,
}
# Modules a layer may reach above itself. devstack/settings is the dev stack's section of
# the settings, read by app/settings; nothing else crosses.
ALLOWED_UP = {("app", "streams.devstack.settings")}


def _imports(path: Path) -> list[str]:
    """Every streams.* or processors.* module a file imports, at any depth (lazy included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.extend(names if node.module == "streams" else [node.module])
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name.split(".")[0] in ("streams", "processors")]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "processors":
        return LAYERS["stages"]  # only the stages (and above) may call processors
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_package_of_streams_has_a_layer() -> None:
    packages = {p.name for p in (ROOT / "streams").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    loose = sorted(p.name for p in (ROOT / "streams").glob("*.py") if p.name != "__init__.py")
    assert loose == [], "every module of streams/ belongs to a layer's package"


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "streams").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_imports_point_down(path: Path) -> None:
    package = path.relative_to(ROOT / "streams").parts[0]
    if package not in LAYERS:
        return  # streams/__init__.py
    own = LAYERS[package]
    upward = [
        name
        for name in _imports(path)
        if (_layer(name) or 0) > own and (package, name) not in ALLOWED_UP
    ]
    assert upward == [], f"{path.relative_to(ROOT)} imports above its layer: {upward}"


def test_the_runner_and_a_custom_worker_load_no_image_library() -> None:
    code = (
        "import sys\n"
        "import streams.runner.worker, streams.runner.supervisor, streams.io.topic_reader\n"
        "import streams.cli.main, streams.cli.worker\n"
        "from streams.config.settings import FleetSettings\n"
        "FleetSettings()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
