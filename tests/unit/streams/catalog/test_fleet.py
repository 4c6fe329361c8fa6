"""FleetView: the Fleet page's figures are the dashboard's own expressions, asked of a
Prometheus (here a fake one on 127.0.0.1), next to the lag `pixelfleet status` computes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
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
    assert sorted(lag_calls) == sorted(STAGES)  # asked at once, each once
    rows = {row["stage"]: row for row in first["stages"]}
    assert rows["validate"]["throughput_per_s"] == 2.0 and rows["validate"]["lag"] == 7
    assert rows["restore"]["lag"] is None and rows["enhance"]["p95_s"] is None
    assert first["metrics_source"] == "prometheus"


def test_without_prometheus_the_metric_figures_are_null(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_lag(_self: FleetView) -> dict[str, int | None]:
        return dict.fromkeys(STAGES, 0)

    monkeypatch.setattr(FleetView, "_lags", no_lag)
    answer = asyncio.run(FleetView(FleetSettings(), None).stages())
    assert answer["metrics_source"] is None
    assert all(row["p50_s"] is None and row["lag"] == 0 for row in answer["stages"])


def test_a_silent_broker_costs_the_page_its_lag_column_not_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    stuck = ("enhance", "compress")
    met: set[str] = set()
    ended: set[str] = set()
    both_stuck = threading.Barrier(len(stuck))
    lock = threading.Lock()

    class _Lag:
        lag = 3

    def stuck_lag(_settings: FleetSettings, stage: str, _topic: str, _group: str) -> _Lag:
        if stage in stuck:
            # Each waits for the other to start: a pool that ran them one after the other
            # would break the barrier (no lag) instead of passing it.
            both_stuck.wait(10)
            with lock:
                met.add(stage)
            release.wait(10)  # a broker that never answers these two
            with lock:
                ended.add(stage)
        return _Lag()

    monkeypatch.setattr(fleet_module, "group_lag", stuck_lag)
    monkeypatch.setattr(fleet_module, "LAG_TIMEOUT_S", 0.3)

    async def run() -> tuple[dict[str, Any], dict[str, Any], set[str]]:
        view = FleetView(FleetSettings(), None)
        try:
            first = await view.stages()
            with lock:
                ended_by_then = set(ended)
            again = await view.stages()  # kept: a missing lag is not asked for again at once
        finally:
            release.set()
            await view.close()
        return first, again, ended_by_then

    first, again, ended_by_then = asyncio.run(run())
    lags = {row["stage"]: row["lag"] for row in first["stages"]}
    assert lags == {s: None if s in stuck else 3 for s in STAGES}
    # The page came back while the stuck lookups still waited on the broker: it waited
    # LAG_TIMEOUT_S for them, not for their answers.
    assert ended_by_then == set()
    assert again is first
    # They ran side by side: both met at the barrier, so both were running at once.
    for _ in range(1500):  # up to 15 s, for a barrier that may have to time out
        with lock:
            if met == set(stuck) or both_stuck.broken:
                break
        time.sleep(0.01)
    assert met == set(stuck) and not both_stuck.broken


def test_a_stuck_lookup_is_waited_on_again_not_queued_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each page used to queue six new lookups behind the stuck ones: once the broker
    answered again, the lag column stayed empty until the queue had drained."""
    release = threading.Event()
    asked: list[str] = []

    class _Lag:
        lag = 5

    def stuck_lag(_settings: FleetSettings, stage: str, _topic: str, _group: str) -> _Lag:
        asked.append(stage)
        if stage == "restore":
            release.wait(10)
        return _Lag()

    monkeypatch.setattr(fleet_module, "group_lag", stuck_lag)
    monkeypatch.setattr(fleet_module, "LAG_TIMEOUT_S", 0.2)
    monkeypatch.setattr(fleet_module, "MISSING_CACHE_S", 0.0)

    async def run() -> list[dict[str, Any]]:
        view = FleetView(FleetSettings(), None)
        try:
            pages = [await view.stages() for _ in range(4)]  # the broker still silent
            release.set()
            await asyncio.sleep(0.1)
            pages.append(await view.stages())
        finally:
            release.set()
            await view.close()
        return pages

    pages = asyncio.run(run())
    # One stuck lookup, waited on by the four pages, then one fresh once it had answered
    # (it was five: each page started another, stuck behind the same silent broker).
    assert asked.count("restore") == 2
    assert [next(r["lag"] for r in p["stages"] if r["stage"] == "restore") for p in pages] == [
        None, None, None, None, 5,
    ]  # fmt: skip
