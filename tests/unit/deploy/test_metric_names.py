"""The dashboard and the alert rules use only metric names the code exports; the catalog
row's queries return data on made-up series (promtool), since the integration test's run
has no catalog service."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import streams.observe.metrics  # noqa: F401 (registers every metric)
from tests.unit.deploy.tools import CHART, promtool

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    names: set[str] = set()
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


def _panels() -> list[dict[str, Any]]:
    return json.loads((CHART / "files" / "dashboard.json").read_text())["panels"]  # type: ignore[no-any-return]


def _row(title: str) -> list[dict[str, Any]]:
    """The panels of a row: those after it in the file, up to the next row, all below it."""
    panels = _panels()
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title)
    below = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        assert panel["gridPos"]["y"] > panels[start]["gridPos"]["y"], panel["title"]
        below.append(panel)
    assert below, f"row {title} is empty"
    return below


def _shows_every_metric(row: str, prefix: str) -> set[str]:
    """The names a row's queries use, checked to cover every metric under a prefix (a
    histogram through its buckets)."""
    names = used(" ".join(t["expr"] for p in _row(row) for t in p["targets"]))
    wanted = {n for n in exported() if n.startswith(prefix)}
    counted = {n for n in wanted if not n.endswith(("_sum", "_count"))}
    assert counted <= names, counted - names
    return names


def test_dashboard_layout_has_unique_ids_and_no_overlapping_panels() -> None:
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_has_a_fetch_row_showing_every_fetch_metric() -> None:
    _shows_every_metric("fetch", "pixelfleet_fetch_")


def test_dashboard_has_a_catalog_row_showing_every_catalog_metric() -> None:
    _shows_every_metric("catalog", "pixelfleet_catalog_")
    exprs = {t["expr"] for p in _row("catalog") for t in p["targets"]}
    # Records behind by view, lookups by route, and the p99 by route from the buckets.
    assert any("pixelfleet_catalog_records_behind" in e and "by (view)" in e for e in exprs)
    assert any(
        re.search(r"by \(route\) \(rate\(pixelfleet_catalog_requests_total\[", e) for e in exprs
    )
    p99 = re.compile(
        r"histogram_quantile\(0\.99, sum by \(route, le\) "
        r"\(rate\(pixelfleet_catalog_request_seconds_bucket\["
    )
    assert any(p99.search(e) for e in exprs), exprs


def test_alert_rules_name_real_metrics() -> None:
    rules = (CHART / "templates" / "monitoring" / "prometheusrule.yaml").read_text()
    names = used(rules)
    assert {"pixelfleet_consumer_lag", "pixelfleet_messages_total"} <= names
    assert "pixelfleet_fetch_total" in names
    assert names <= exported(), names - exported()


# Two replicas scraped for ten minutes: what `pixelfleet catalog` exports while it serves.
CATALOG_SERIES = [
    *(
        {"series": f'pixelfleet_catalog_{name}{{instance="{i}",{labels}}}', "values": values}
        for i in ("c-0", "c-1")
        for name, labels, values in [
            ("records_behind", 'view="table"', "50-5x10"),
            ("records_behind", 'view="index"', "90-9x10"),
            ("records_applied_total", 'view="table"', "0+60x10"),
            ("records_applied_total", 'view="index"', "0+120x10"),
            ("images", "", "100+10x10"),
            ("ready", "", "0+0x5 1+0x5"),
            ("requests_total", 'route="/v1/images/{image_id}",code="200"', "0+120x10"),
            ("request_seconds_bucket", 'route="/v1/images/{image_id}",le="0.0025"', "0+60x10"),
            ("request_seconds_bucket", 'route="/v1/images/{image_id}",le="0.005"', "0+120x10"),
            ("request_seconds_bucket", 'route="/v1/images/{image_id}",le="+Inf"', "0+120x10"),
        ]
    )
]


def _promtool_catalog_row(tmp_path: Path, series: list[dict[str, str]]) -> int:
    """One alert per catalog query, firing where the query returns nothing (absent()); the
    test expects none to fire."""
    exprs = [t["expr"] for p in _row("catalog") for t in p["targets"]]
    exprs = [e.replace("$__rate_interval", "2m") for e in exprs]
    rules = [{"alert": f"Empty{i}", "expr": f"absent({e})"} for i, e in enumerate(exprs)]
    expect = [{"eval_time": "10m", "alertname": r["alert"], "exp_alerts": []} for r in rules]
    done = promtool(
        tmp_path,
        yaml.safe_dump({"groups": [{"name": "c", "rules": rules}]}),
        [{"interval": "1m", "input_series": series, "alert_rule_test": expect}],
    )
    assert "FAILED" in done.stdout + done.stderr or done.returncode == 0, done.stderr
    return done.returncode


def test_catalog_row_queries_return_data_on_the_catalogs_series(tmp_path: Path) -> None:
    assert _promtool_catalog_row(tmp_path, CATALOG_SERIES) == 0
    # And the check can fail: without the catalog's series every query comes back empty.
    other = [{"series": 'pixelfleet_consumer_lag{stage="validate"}', "values": "1+0x10"}]
    assert _promtool_catalog_row(tmp_path, other) != 0
