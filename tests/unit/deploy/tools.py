"""Paths and the offline tools the deploy tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "pixelfleet"


def tool(name: str) -> str:
    """The path of a tool .ci/test-deps.sh installs; a missing one fails, never skips."""
    found = shutil.which(name)
    assert found, f"{name} is needed: run bash .ci/test-deps.sh (or make test), which installs it"
    return found
