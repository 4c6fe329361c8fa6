from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from streams.devstack import kafka, minio
from streams.devstack.procs import StackError, free_port, is_ours, port_is_free, spawn, stop
from streams.devstack.settings import DevStackSettings
from streams.devstack.stack import DevStack, StackInfo


def test_cluster_id_is_kafka_shaped() -> None:
    for _ in range(2000):  # one in 64 raw ids starts with '-'; none of ours may
        cid = kafka.new_cluster_id()
        assert len(cid) == 22
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
        assert not cid.startswith("-")


def test_broker_config_is_single_node_kraft(tmp_path: Path) -> None:
    path = kafka.write_config(tmp_path, 19092, 19093)
    conf = dict(line.split("=", 1) for line in path.read_text().splitlines())
    assert conf["process.roles"] == "broker,controller"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert conf["transaction.state.log.replication.factor"] == "1"
    assert conf["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert conf["auto.create.topics.enable"] == "false"


def test_exports_are_shell_safe(tmp_path: Path) -> None:
    info = StackInfo(tmp_path, "127.0.0.1:1", "http://127.0.0.1:2", "user", "a'b c$d", ())
    out = subprocess.run(
        ["bash", "-c", f'{info.shell_exports()}printf %s "$PIXELFLEET_S3_SECRET_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "a'b c$d"


def test_spawned_process_is_recognised_and_stopped(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-dir")
    pid = spawn([sys.executable, "-c", "import time; time.sleep(60)", marker], tmp_path / "log").pid
    assert is_ours(pid, marker)
    assert not is_ours(pid, str(tmp_path / "other"))  # another stack's marker: not ours
    assert stop(pid, marker, timeout_s=10)
    assert not is_ours(pid, marker)
    assert not stop(pid, marker)  # a second stop is a no-op


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    marker = str(tmp_path / "stubborn")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    pid = spawn([sys.executable, "-c", code, marker], tmp_path / "log").pid
    import time

    time.sleep(0.5)  # let it install its handler
    assert stop(pid, marker, timeout_s=1)
    assert not is_ours(pid, marker)


def test_port_helpers() -> None:
    port = free_port()
    assert port_is_free(port)


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    dev = DevStackSettings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    with pytest.raises(StackError, match=r"java is not installed.*apt-get install openjdk"):
        kafka.ensure_installed(dev, print)


def test_missing_go_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    dev = DevStackSettings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    with pytest.raises(StackError, match=r"go is not installed.*Go 1.24"):
        minio.ensure_installed(dev, print)


@pytest.mark.parametrize(("set_by_user", "expected"), [(None, "auto"), ("local", "local")])
def test_the_minio_build_may_fetch_a_newer_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, set_by_user: str | None, expected: str
) -> None:
    """GOTOOLCHAIN=auto lets a Go from 1.21 on build the pinned MinIO (it needs 1.24) even
    where go.env says local; a value the user exported wins."""
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\nexit 1\n")
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    if set_by_user is None:
        monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    else:
        monkeypatch.setenv("GOTOOLCHAIN", set_by_user)
    seen: dict[str, str] = {}
    real_popen = subprocess.Popen

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        seen.update(kwargs["env"])
        return real_popen(argv, **kwargs)

    monkeypatch.setattr("streams.devstack.minio.subprocess.Popen", popen)
    dev = DevStackSettings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    with pytest.raises(StackError, match="go install failed"):
        minio.ensure_installed(dev, lambda _m: None)
    assert seen["GOTOOLCHAIN"] == expected


def test_taken_port_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        stack = DevStack(DevStackSettings(cache_dir=tmp_path, data_dir=tmp_path, kafka_port=taken))
        with pytest.raises(StackError, match=f"port {taken} is taken"):
            stack._port(taken, 0)


def test_minio_root_credentials_come_in_pairs(tmp_path: Path) -> None:
    # One alone used to be dropped, and the stack came up with generated credentials.
    for given in (
        {"minio_root_user": "admin"},
        {"minio_root_password": "s3cret-s3cret"},
        {"minio_root_user": "admin", "minio_root_password": ""},  # an empty variable
    ):
        with pytest.raises(ValueError, match="both PIXELFLEET_DEV_MINIO_ROOT_USER"):
            DevStackSettings(cache_dir=tmp_path, data_dir=tmp_path, **given)  # type: ignore[arg-type]
    both = DevStackSettings(
        cache_dir=tmp_path,
        data_dir=tmp_path,
        minio_root_user="a",
        minio_root_password=SecretStr("b" * 8),
    )
    assert both.minio_root_user == "a"


def test_dev_status_output_is_safe_to_eval(tmp_path: Path) -> None:
    """Every line is a shell comment or an export, so `eval "$(pixelfleet dev status)"`
    runs nothing else; a stack that is not running exits 3."""
    from click.testing import CliRunner

    from streams.cli import main

    result = CliRunner().invoke(main.cli, ["dev", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["kafka", "minio"]
    assert all(line.startswith("# ") for line in lines), lines
