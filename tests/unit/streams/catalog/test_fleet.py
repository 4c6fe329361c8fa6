"""FleetView: the Fleet page's figures are the dashboard's own expressions, asked of a
Prometheus (here a fake one on 127.0.0.1), next to the lag `pixelfleet status` computes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.catalog import fleet as fleet_module
from streams.catalog.fleet import PROMQL, FleetView, by_stage, promql
from streams.config.settings import FleetSettings
from streams.config.topics import STAGES

DASHBOARD = Path(__file__).parents[4] / "deploy/helm/pixelfleet/files/dashboard.json"


def _dashboard_expressions() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.add(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def test_every_figure_is_a_dashboard_expression() -> None:
    dashboard = _dashboard_expressions()
    for figure, expression in PROMQL.items():
        as_on_dashboard = expression.replace('stage=~".*"', 'stage=~"$stage"')
        assert as_on_dashboard in dashboard, figure
    assert "$__rate_interval" not in promql("p95_s")


def test_a_prometheus_answer_becomes_figures_by_stage() -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"stage": "validate", "outcome": "rejected"}, "value": [1.0, "12.5"]},
                {"metric": {"stage": "validate", "outcome": "failed"}, "value": [1.0, "0.5"]},
                {"metric": {"stage": "enhance"}, "value": [1.0, "NaN"]},
                {"metric": {}, "value": [1.0, "3"]},
                {"metric": {"stage": "compress"}, "value": "broken"},
            ],
        },
    }
    assert by_stage(answer) == {"validate": 13.0, "enhance": None}


def test_the_view_asks_prometheus_once_per_figure_and_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    lag_calls: list[str] = []

    async def query(request: web.Request) -> web.Response:
        asked.append(request.query["query"])
        result = [{"metric": {"stage": "validate"}, "value": [0, "2"]}]
        return web.json_response({"status": "success", "data": {"result": result}})

    class _Lag:
        def __init__(self, lag: int) -> None:
            self.lag = lag

    def fake_lag(_settings: FleetSettings, stage: str, _topic: str, _group: str) -> _Lag:
        lag_calls.append(stage)
        if stage == "restore":
            raise RuntimeError("no broker")
        return _Lag(7)

    monkeypatch.setattr(fleet_module, "group_lag", fake_lag)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        app = web.Application()
        app.router.add_get("/api/v1/query", query)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        view = FleetView(FleetSettings(), str(server.make_url("/")))
        try:
            first = await view.stages()
            second = await view.stages()
        finally:
            await view.close()
            await server.close()
        return first, second

    first, second = asyncio.run(run())
    assert first is second  # within CACHE_S: nothing asked twice
    assert sorted(asked) == sorted(promql(f) for f in PROMQL)
    assert lag_calls == list(STAGES)
    rows = {row["stage"]: row for row in first["stages"]}
    assert rows["validate"]["throughput_per_s"] == 2.0 and rows["validate"]["lag"] == 7
    assert rows["restore"]["lag"] is None and rows["enhance"]["p95_s"] is None
    assert first["metrics_source"] == "prometheus"


def test_without_prometheus_the_metric_figures_are_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FleetView, "_lags", lambda _self: dict.fromkeys(STAGES, 0))
    answer = asyncio.run(FleetView(FleetSettings(), None).stages())
    assert answer["metrics_source"] is None
    assert all(row["p50_s"] is None and row["lag"] == 0 for row in answer["stages"])
