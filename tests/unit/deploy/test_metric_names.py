"""The dashboard and the alert rules use only metric names the code exports."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import streams.observe.metrics  # noqa: F401 (registers every metric)
from tests.unit.deploy.tools import CHART

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("pixelfleet_"):
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def used(text: str) -> set[str]:
    return set(re.findall(r"\bpixelfleet_[a-z_]+\b", text))


def test_dashboard_queries_name_real_metrics() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    # Rows have no targets.
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    names = used(exprs)
    assert len(names) >= 12
    assert names <= exported(), names - exported()


def test_dashboard_has_a_fetch_row_showing_every_fetch_metric() -> None:
    panels = json.loads((CHART / "files" / "dashboard.json").read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "fetch")
    below = panels[row + 1 :]
    assert below and all(p["type"] != "row" for p in below)
    assert all(p["gridPos"]["y"] > panels[row]["gridPos"]["y"] for p in below)
    names = used(" ".join(t["expr"] for p in below for t in p["targets"]))
    fetch = {n for n in exported() if n.startswith("pixelfleet_fetch_")}
    counted = {n for n in fetch if not n.endswith(("_sum", "_count"))}
    assert counted <= names, counted - names


def test_alert_rules_name_real_metrics() -> None:
    rules = (CHART / "templates" / "monitoring" / "prometheusrule.yaml").read_text()
    names = used(rules)
    assert {"pixelfleet_consumer_lag", "pixelfleet_messages_total"} <= names
    assert "pixelfleet_fetch_total" in names
    assert names <= exported(), names - exported()
