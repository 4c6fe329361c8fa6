"""`pixelfleet dev up/status/down` on a data directory of its own: data survives a restart."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import NewTopic
from pydantic import SecretStr

from streams.config.settings import KafkaSettings, S3Settings
from streams.io import clients

CLI = [sys.executable, "-m", "streams.cli"]


def _dev(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, "dev", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert proc.returncode == 0, (
            f"dev {args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _exports(stdout: str) -> dict[str, str]:
    env = {}
    for line in stdout.splitlines():
        assert line.startswith("export "), line
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def _processes_using(data_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(data_dir) in line and state != "Z":
            pids.append(int(entry.name))
    return pids


def _settings(env: dict[str, str]) -> tuple[KafkaSettings, S3Settings]:
    return (
        KafkaSettings(bootstrap=env["PIXELFLEET_KAFKA_BOOTSTRAP"]),
        S3Settings(
            endpoint=env["PIXELFLEET_S3_ENDPOINT"],
            access_key=env["PIXELFLEET_S3_ACCESS_KEY"],
            secret_key=SecretStr(env["PIXELFLEET_S3_SECRET_KEY"]),
        ),
    )


def test_down_then_up_keeps_topics_and_objects(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    started = time.monotonic()
    env = _exports(_dev("up", data_dir=data_dir).stdout)
    print(f"dev up (warm cache, new data dir): {time.monotonic() - started:.1f} s")
    try:
        assert _dev("check", data_dir=data_dir).returncode == 0
        kafka, s3 = _settings(env)
        admin = clients.admin(kafka)
        admin.create_topics([NewTopic("keep-me", 2, 1)])["keep-me"].result(timeout=30)
        producer = clients.transactional_producer(kafka, "restart-test")
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce("keep-me", key=b"img-1", value=b"survives", partition=1)
        producer.commit_transaction(30)
        s3c = clients.s3(s3)
        s3c.make_bucket("keep-bucket")
        s3c.put_object("keep-bucket", "a/b.txt", io.BytesIO(b"still here"), 10)

        status = _dev("status", data_dir=data_dir)
        assert status.stdout.count("running (pid") == 2

        _dev("down", data_dir=data_dir)
        assert _processes_using(data_dir) == [], "dev down left a server running"
        stopped = _dev("status", data_dir=data_dir, check=False)
        assert stopped.returncode == 3
        assert stopped.stdout.count("stopped") == 2

        restarted = time.monotonic()
        env2 = _exports(_dev("up", data_dir=data_dir).stdout)
        print(f"dev up (restart of existing data): {time.monotonic() - restarted:.1f} s")
        # Ports and credentials are reused, so a shell that ran `eval` stays valid.
        assert env2 == env
        kafka, s3 = _settings(env2)
        consumer = clients.consumer(kafka, "restart-test-reader")
        consumer.subscribe(["keep-me"])
        deadline, found = time.monotonic() + 60, None
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found = (msg.partition(), msg.key(), msg.value())
        consumer.close()
        assert found == (1, b"img-1", b"survives")
        assert clients.read_object(clients.s3(s3), "keep-bucket", "a/b.txt") == b"still here"
    finally:
        _dev("down", data_dir=data_dir, check=False)
    assert _processes_using(data_dir) == []


def test_up_when_already_running_reuses_the_servers(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    first = _dev("up", data_dir=data_dir)
    try:
        pids = sorted(_processes_using(data_dir))
        second = _dev("up", data_dir=data_dir)
        assert "already running" in second.stderr
        assert second.stdout == first.stdout
        assert sorted(_processes_using(data_dir)) == pids
    finally:
        _dev("down", data_dir=data_dir, check=False)


def test_up_fresh_forgets_old_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    env = _exports(_dev("up", data_dir=data_dir).stdout)
    try:
        kafka, _ = _settings(env)
        admin = clients.admin(kafka)  # held: a collected client cancels its futures
        admin.create_topics([NewTopic("old", 1, 1)])["old"].result(timeout=30)
        _dev("down", data_dir=data_dir)
        env = _exports(_dev("up", "--fresh", data_dir=data_dir).stdout)
        kafka, _ = _settings(env)
        assert "old" not in clients.admin(kafka).list_topics(timeout=10).topics
    finally:
        _dev("down", data_dir=data_dir, check=False)
