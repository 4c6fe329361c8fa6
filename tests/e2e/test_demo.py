"""`pixelfleet demo` as a newcomer runs it, on the real stack, checked against what the
topics and buckets hold; its report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaException

from streams.app.settings import Settings
from streams.devstack.procs import free_port
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    ROOT,
    fleet_settings,
    latest_records,
    read_topic,
    settings_env,
    topics,
)
from tests.support.photos import big_photo, encode

SAMPLES = 12


def _demo_env(fleet: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(fleet)}


def _demo(fleet: Settings, out: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "streams.cli", "demo", "--no-serve"),
            *("--out", str(out), "--timeout", "600"),
        ],
        cwd=ROOT,
        env=_demo_env(fleet),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed: apt-get install chromium (.ci/run does it)"
    return found


def _open_in_chromium(page: Path, screenshot: Path) -> str:
    """The DOM after load, and a full-width screenshot of the top of the page."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*base, "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    subprocess.run(
        [*base, f"--screenshot={screenshot}", "--window-size=1440,1800", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom


def test_the_demo_finishes_every_sample_and_its_report_renders(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    result = _demo(fleet, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every image finished" in result.stdout

    summary = json.loads((tmp_path / "summary.json").read_text())
    records = latest_records(fleet)
    assert len(records) == SAMPLES
    statuses = Counter(r.status for r in records.values())
    assert statuses == {"done": 10, "rejected": 2} and summary["status"] == statuses
    s3 = clients.s3(fleet.s3)
    originals = list(s3.list_objects(fleet.buckets.incoming, recursive=True))
    assert {o.object_name.split("/")[0] for o in originals} == set(records)
    objects = list(s3.list_objects(fleet.buckets.images, recursive=True))
    assert summary["variants"] == len(objects) == sum(len(r.variants) for r in records.values())
    assert summary["bytes_out"] == sum(o.size for o in objects)
    letters = Counter(
        json.loads(r.value)["reason_class"] for r in read_topic(fleet, topics(fleet).dlq)
    )
    assert letters == {"truncated": 1, "unsupported_format": 1}
    assert summary["dead_letters"] == {"validate: truncated": 1, "validate: unsupported_format": 1}
    assert [sorted(g) for g in summary["duplicates"]] == [
        ["gold-ring-coffee-copy.jpg", "gold-ring-coffee.jpg"]
    ]
    restored = Counter(str((r.restore or {}).get("outcome")) for r in records.values())
    assert restored["upscaled"] >= 2 and restored["denoised"] >= 1
    assert summary["restore"] == {k: v for k, v in restored.items() if k != "None"}
    done_events = Counter(r.key for r in read_topic(fleet, topics(fleet).done))
    assert set(done_events.values()) == {1} and len(done_events) == SAMPLES

    page = tmp_path / "report" / "index.html"
    screenshot = tmp_path / "report.png"
    dom = _open_in_chromium(page, screenshot)
    assert len(re.findall(r'<article class="card', dom)) == SAMPLES
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert images == 10 * 4  # the original and three preview formats per finished image
    assert 'data-broken="0"' in dom
    assert screenshot.stat().st_size > 50_000
    if target := os.environ.get("PIXELFLEET_DEMO_SCREENSHOT"):
        # How the README's picture is made (saved as JPEG there, to stay small).
        shutil.copyfile(screenshot, target)


def _workers_of(prefix: str) -> list[int]:
    """Worker processes started with this topic prefix, found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"worker" in cmdline and f"PIXELFLEET_TOPIC_PREFIX={prefix}".encode() in environ:
            found.append(int(entry.name))
    return found


def _finished(fleet: Settings) -> int:
    """Images on the done topic so far; 0 while the demo's `init` has just made the topic
    and its partitions are still electing leaders."""
    try:
        return len({r.key for r in read_topic(fleet, topics(fleet).done)})
    except KafkaException:
        return 0


def test_ctrl_c_stops_everything_and_a_second_run_finishes_the_rest(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    first = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--no-serve", "--out", str(tmp_path)],
        cwd=ROOT,
        env=_demo_env(fleet),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if _finished(fleet) >= 3:
            break
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        time.sleep(1)
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out[-3000:]
    assert "run the demo again" in out
    assert _workers_of(fleet.topic_prefix) == []
    finished_before = {r.key for r in read_topic(fleet, topics(fleet).done)}
    assert 3 <= len(finished_before) < SAMPLES

    second = _demo(fleet, tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{SAMPLES} images (" in second.stdout
    done_events = Counter(r.key for r in read_topic(fleet, topics(fleet).done))
    assert len(done_events) == SAMPLES
    assert set(done_events.values()) == {1}  # nothing finished twice
    assert _workers_of(fleet.topic_prefix) == []


def _lines(process: subprocess.Popen[str]) -> list[str]:
    """The process's output lines as they come, gathered by a thread (never blocks)."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: list[str], text: str, process: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        joined = "".join(lines)
        if text in joined:
            return joined
        assert process.poll() is None, joined[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} after {timeout:.0f} s:\n{''.join(lines)[-3000:]}")


def test_the_demo_serves_the_console_until_ctrl_c(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cup.jpg").write_bytes(encode(big_photo("coffee", 1000), "JPEG", quality=90))
    env = {**_demo_env(fleet), "PIXELFLEET_CATALOG_PORT": str(free_port()), "COLUMNS": "200"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", str(folder), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _lines(demo)
        out = _until(lines, "serving the console until Ctrl-C", demo, 600)
        found = re.search(
            r"report: (\S+)\s+console: (http://127\.0\.0\.1:\d+/)\s+\(API key: (\S+)\)", out
        )
        assert found, out[-3000:]
        url, key = found.group(2), found.group(3)
        with httpx.Client(timeout=10) as http:
            page = http.get(url)
            assert page.status_code == 200 and "pixelfleet console" in page.text
            access = http.get(url + "v1/access", headers={"X-API-Key": key})
            assert access.json() == {"read": True, "act": True}
            images = http.get(url + "v1/images", headers={"X-API-Key": key}).json()["images"]
            assert [i["status"] for i in images] == ["done"]
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, "".join(lines)[-3000:]
        assert time.monotonic() - started < 60
        assert "stopping the console" in "".join(lines)
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)
    finally:
        if demo.poll() is None:
            # Ctrl-C first: a killed demo cannot stop its catalog (a session of its own).
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
