"""The help texts name every label value the code emits, so a reader of /metrics is never
left guessing what a series means."""

from __future__ import annotations

import re
from pathlib import Path

from streams.observe.metrics import FETCH_THROTTLED

FETCH = Path(__file__).resolve().parents[4] / "streams" / "stages" / "fetch"


def _throttle_causes() -> set[str]:
    """Every cause the fetch stage counts: those the politeness gate returns, and those
    the stage passes to FETCH_THROTTLED.labels itself."""
    gate = (FETCH / "politeness.py").read_text()
    causes = set(re.findall(r'return "(\w+)", ', gate))
    for source in FETCH.glob("*.py"):
        text = source.read_text()
        causes |= set(re.findall(r'FETCH_THROTTLED\.labels\([^)]*, "(\w+)"\)', text))
    return causes


def test_the_throttle_help_names_every_cause() -> None:
    causes = _throttle_causes()
    # The scan found the gate's causes and the busy-process one failures.py counts.
    assert {"rate", "concurrency", "retry_after", "process"} <= causes
    help_text = FETCH_THROTTLED._documentation
    assert [c for c in sorted(causes) if not re.search(rf"\b{c}\b", help_text)] == []
