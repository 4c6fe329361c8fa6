"""A real Prometheus scrapes a real worker while images flow; every PromQL expression of
the Grafana dashboard returns data (the catalog and notify rows': valid PromQL only, as
this run has neither service) and every alert rule evaluates without error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.devstack.procs import free_port
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    ROOT,
    fleet_settings,
    init_fleet,
    settings_env,
    topics,
    wait_for,
)
from tests.support.http_servers import LoopbackServer
from tests.support.photos import big_photo, encode, photo


def _get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _query(base: str, expr: str) -> dict:  # type: ignore[type-arg]
    return _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is needed: apt-get install prometheus (.ci/run does it)"
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> str:
        # The chart's rules as compose's Prometheus loads them (a unit test keeps the file
        # equal to what the chart renders).
        rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
        config = tmp_path / "prometheus.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {
                            "job_name": "pixelfleet",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                result = _query(base, 'up{job="pixelfleet"}')["data"]["result"]
                if result and result[0]["value"][1] == "1":
                    return base
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never scraped the worker; see {tmp_path}/prometheus.log")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)


def _empty_dashboard_queries(base: str) -> list[str]:
    """Every dashboard query must be valid; those that return nothing, outside the catalog
    and notify rows (their metrics come from `pixelfleet catalog` and `pixelfleet notify`,
    which this run does not start; tests/unit/deploy/test_notify_deploy.py checks the
    notify row's metric names)."""
    dashboard = json.loads(
        (ROOT / "deploy" / "helm" / "pixelfleet" / "files" / "dashboard.json").read_text()
    )
    empty = []
    row = ""
    for panel in dashboard["panels"]:
        row = panel["title"] if panel["type"] == "row" else row
        for target in panel.get("targets", []):  # rows have none
            expr = target["expr"].replace("$stage", ".*").replace("$__rate_interval", "2m")
            answer = _query(base, expr)
            assert answer["status"] == "success", (panel["title"], answer)
            if not answer["data"]["result"] and row not in ("catalog", "notify"):
                empty.append(f"{panel['title']}: {expr}")
    return empty


def test_dashboard_and_alert_queries_return_data(
    stack: Stack,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    prometheus: Callable[[int], str],
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    metrics_port = free_port()
    server = LoopbackServer("127.0.0.1").start()
    # The fetch stage may reach this test's server, one request per 10 s: the second URL
    # of the host is throttled, so the dashboard's throttling panel has data too.
    fetch = {
        "allow_networks": ["127.0.0.1/32"],
        "allowed_ports": [80, 443, server.port],
        "default_host": {"rate_per_s": 0.1, "burst": 1, "concurrency": 1},
    }
    env = {
        **os.environ,
        **settings_env(fleet),
        "PIXELFLEET_RUNNER_METRICS_PORT": str(metrics_port),
        "PIXELFLEET_STAGES": json.dumps({"fetch": fetch}),
    }
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--stage", "all"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:  # the restore models load before /metrics answers as ready
            try:
                url = f"http://127.0.0.1:{metrics_port}/readyz"
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.5)
        base = prometheus(metrics_port)
        files = {
            "small.jpg": encode(photo("rocket"), "JPEG", quality=90),
            "large.jpg": encode(big_photo("coffee", 2400), "JPEG", quality=90),
            "broken.jpg": encode(big_photo("chelsea", 1600), "JPEG", quality=90)[:30_000],
        }
        submitter = Submitter(fleet)
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
            submitter.upload_and_submit(tmp_path / name, image_id=name.split(".")[0])
        server.serve_bytes("/a.jpg", files["large.jpg"])
        server.serve_bytes("/b.jpg", files["small.jpg"])
        server.html("/page.html")
        urls = [
            server.url("/a.jpg"),
            server.url("/b.jpg"),
            server.url("/page.html"),
            f"http://127.0.0.3:{server.port}/",  # loopback not admitted: refused, no connection
        ]
        for url in urls:
            submitter.submit_url(url)
        submitter.flush()
        wait_for(fleet, topics(fleet).done, len(files) + len(urls), timeout=300)
        time.sleep(5)  # a few more scrapes after the last change

        empty = _empty_dashboard_queries(base)
        assert not empty, "\n".join(empty)

        groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # Every rule of the file is loaded (8 today, the webhook breaker's and the retrying
        # batches' included).
        written = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
        names = sorted(rule["alert"] for group in written["groups"] for rule in group["rules"])
        assert sorted(rule["name"] for rule in rules) == names and len(names) == 8
        assert all(rule["health"] == "ok" for rule in rules), rules
        for rule in rules:
            assert _query(base, rule["query"])["status"] == "success"
    finally:
        worker.terminate()
        worker.wait(60)
        server.stop()
