"""`pixelfleet worker` as a user starts it: a custom stage loads no image library, and
two workers on one host both run, whatever the metrics port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.app.settings import Settings
from streams.io.topic_reader import latest_records
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    ROOT,
    fleet_settings,
    init_fleet,
    settings_env,
    start_process,
    stop_process,
    submit_ids,
    topics,
    wait_for,
)

LIGHT = "tests.integration.streams.runner.stages:LIGHT"
LIGHT_COMPRESS = "tests.integration.streams.runner.stages:LIGHT_COMPRESS"


def test_a_custom_stage_worker_loads_no_image_library(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    proc = start_process(fleet, LIGHT, "r0", tmp_path / "worker.log")
    try:
        ids = submit_ids(fleet, ["light-1", "light-2"])
        wait_for(fleet, topics(fleet).done, len(ids))
    finally:
        assert stop_process(proc) == 0, (tmp_path / "worker.log").read_text()
    records = latest_records(fleet)
    details = {i: records[i].stages["validate"].detail for i in ids}
    assert details == dict.fromkeys(ids, "image libraries: none")


def _worker(env: dict[str, str], spec: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--spec", spec],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _serving_port(log: Path, timeout: float = 60) -> int:
    """The port a worker's log says it serves /metrics on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and "serving /metrics" in line:
                return int(json.loads(line)["port"])
        time.sleep(0.2)
    raise AssertionError(f"no port in {log}: {log.read_text()}")


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read()


def test_two_workers_on_one_host_both_run_and_a_taken_port_set_on_purpose_is_one_line(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    env = {**os.environ, **settings_env(fleet)}
    env.pop("PIXELFLEET_RUNNER_METRICS_PORT")  # both workers want the default port
    first = _worker(env, LIGHT, tmp_path / "validate.log")
    second = _worker(env, LIGHT_COMPRESS, tmp_path / "compress.log")
    try:
        ports = {_serving_port(tmp_path / "validate.log"), _serving_port(tmp_path / "compress.log")}
        assert len(ports) == 2, "each worker serves its own port"
        for port in ports:
            status, body = _get(port, "/metrics")
            assert status == 200 and b"pixelfleet_" in body
        assert first.poll() is None and second.poll() is None
    finally:
        codes = [stop_process(first), stop_process(second)]
    logs = (tmp_path / "validate.log").read_text() + (tmp_path / "compress.log").read_text()
    assert codes == [0, 0], logs
    assert "Traceback" not in logs
    # The default port went to one of them at most; the other said which port it took.
    assert any("is taken" in line for line in logs.splitlines()), logs

    # A port set on purpose that is taken: exit 1 with one line that names the setting.
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "worker", "--spec", LIGHT],
            cwd=ROOT,
            env={**env, "PIXELFLEET_RUNNER_METRICS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "PIXELFLEET_RUNNER_METRICS_PORT" in errors[0], done.stderr


def test_a_worker_stopped_while_it_still_loads_its_stage_exits_cleanly(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """The demo stops its workers as soon as every image is done; a re-run with nothing
    left to do stops them while restore is still importing torch."""
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    # PYTHONFAULTHANDLER: should it ever hang, SIGABRT prints where every thread stands.
    env = {**os.environ, **settings_env(fleet), "PYTHONFAULTHANDLER": "1"}
    log = tmp_path / "restore.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--stage", "restore"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # Stop it once it handles SIGTERM (its first act), while torch takes seconds more to
    # import; on a loaded machine a fixed sleep could signal the interpreter still starting.
    deadline = time.monotonic() + 20
    while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None
    try:
        code = stop_process(proc, timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(10)
        raise AssertionError(f"still running 30 s after SIGTERM:\n{log.read_text()}") from None
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert text.splitlines()[-1] == "stopped by SIGTERM before the stages started"


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler installed (Linux: SigCgt in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
