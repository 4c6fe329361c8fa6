"""A worker serves /metrics, /healthz and /readyz, and logs JSON lines with the message's place."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.app.settings import Settings
from streams.devstack.procs import free_port
from tests.integration.streams.runner.fleet import (
    start_process,
    stop_process,
    submit_ids,
    topics,
    wait_for,
)

MakeFleet = Callable[..., Settings]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sample(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_probes_and_json_logs(make_fleet: MakeFleet, tmp_path: Path) -> None:
    port = free_port()
    fleet = make_fleet(metrics_port=port)
    ids = submit_ids(fleet, [*(f"img-{i}" for i in range(20)), "poison-1", "poison-2"])
    log = tmp_path / "worker.log"
    proc = start_process(fleet, "tests.integration.streams.runner.stages:FIRST", "r0", log)
    try:
        wait_for(fleet, topics(fleet).done, 2)  # the two rejections complete at once
        wait_for(fleet, topics(fleet).inbox("categorize"), 20)
        deadline = time.monotonic() + 20
        metrics = ""
        while time.monotonic() < deadline:
            status, metrics = _get(port, "/metrics")
            lag = _sample(metrics, "pixelfleet_consumer_lag", stage="validate")
            if (
                status == 200
                and _sample(metrics, "pixelfleet_messages_total", stage="validate") == 22
                and lag == 0
            ):
                break
            time.sleep(0.5)
        assert _get(port, "/healthz")[0] == 200
        ready, why = _get(port, "/readyz")
        assert ready == 200, why
        assert _get(port, "/nope")[0] == 404
    finally:
        assert stop_process(proc) == 0
    assert _sample(metrics, "pixelfleet_messages_total", stage="validate", outcome="ok") == 20
    assert _sample(metrics, "pixelfleet_messages_total", stage="validate", outcome="rejected") == 2
    assert (
        _sample(metrics, "pixelfleet_dead_letters_total", stage="validate", reason="poisoned") == 2
    )
    assert _sample(metrics, "pixelfleet_consumer_lag", stage="validate") == 0
    assert _sample(metrics, "pixelfleet_batch_size_count", stage="validate") >= 1
    assert _sample(metrics, "pixelfleet_batch_size_sum", stage="validate") == len(ids)
    assert _sample(metrics, "pixelfleet_transaction_seconds_count", stage="validate") >= 1
    assert _sample(metrics, "pixelfleet_processing_seconds_count", stage="validate") == len(ids)
    assert _sample(metrics, "pixelfleet_bytes_total", stage="validate", direction="out") > 0
    assert _sample(metrics, "pixelfleet_assigned_partitions", stage="validate") == 4

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    letters = [line for line in lines if line["msg"] == "dead-lettered"]
    assert sorted(line["image_id"] for line in letters) == ["poison-1", "poison-2"]
    for line in letters:
        assert line["stage"] == "validate" and line["level"] == "warning"
        assert isinstance(line["partition"], int) and isinstance(line["offset"], int)
    secret = fleet.s3.secret_key.get_secret_value()
    assert secret not in log.read_text()
