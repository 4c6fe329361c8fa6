"""DevStack's bookkeeping around its servers, with stand-ins for Kafka and MinIO: a failed
`up` stops only what it started, each start has a log file of its own, first installs
into one cache take turns, and a port that had to change is said out loud."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.devstack import kafka, minio
from streams.devstack.procs import StackError, is_ours, spawn, stop
from streams.devstack.settings import DevStackSettings
from streams.devstack.stack import DevStack, StackState

SLEEPER = "import time; time.sleep(60)"


def _stack(tmp_path: Path, data: str = "data", said: list[str] | None = None) -> DevStack:
    dev = DevStackSettings(cache_dir=tmp_path / "cache", data_dir=tmp_path / data)
    return DevStack(dev, progress=(said.append if said is not None else lambda _m: None))


def _stand_in(stack: DevStack, name: str, started: list[int]) -> Callable[[Path, StackState], None]:
    """A `_start_kafka` or `_start_minio`: a sleeping process with the server's marker in
    its command line, which the stack takes for that server; its PID goes to `started`."""

    def start(_installed: Path, state: StackState) -> None:
        log = stack.data_dir / f"{name}.log"
        proc = spawn([sys.executable, "-c", SLEEPER, stack._marker(name)], log)
        stack._children[name] = proc
        (state.kafka if name == "kafka" else state.minio).pid = proc.pid
        started.append(proc.pid)

    return start


def _fails(message: str) -> Callable[..., None]:
    def fail(*_args: object) -> None:
        raise StackError(message)

    return fail


def test_a_failed_up_stops_only_the_servers_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(tmp_path)
    # A "broker" some earlier `up` started and others may be using: its marker (the
    # config path) is in its command line, so the stack takes it for its own Kafka.
    broker = spawn([sys.executable, "-c", SLEEPER, stack._marker("kafka")], tmp_path / "k.log")
    state = StackState(access_key="a", secret_key="s")
    state.kafka.pid, state.kafka.port = broker.pid, 1
    stack.data_dir.mkdir(parents=True)
    stack._save(state)
    started: list[int] = []
    monkeypatch.setattr(stack, "install", lambda: (tmp_path / "libs", tmp_path / "minio"))
    monkeypatch.setattr(stack, "_start_minio", _stand_in(stack, "minio", started))
    monkeypatch.setattr(stack, "_wait_ready", _fails("MinIO did not become ready"))
    try:
        with pytest.raises(StackError, match="did not become ready"):
            stack.up()
        (minio_pid,) = started
        assert not is_ours(minio_pid, stack._marker("minio"))  # the one it started: stopped
        assert is_ours(broker.pid, stack._marker("kafka"))  # the one it found: running
        after = stack._load()
        assert (after.kafka.pid, after.minio.pid) == (broker.pid, 0)
    finally:
        stop(broker.pid, stack._marker("kafka"), timeout_s=10)


def test_a_server_that_fails_to_start_takes_down_the_one_just_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else that Kafka ran on, in no stack.json, out of reach of `dev down`."""
    stack = _stack(tmp_path)
    started: list[int] = []
    monkeypatch.setattr(stack, "install", lambda: (tmp_path / "libs", tmp_path / "minio"))
    monkeypatch.setattr(stack, "_start_kafka", _stand_in(stack, "kafka", started))
    monkeypatch.setattr(stack, "_start_minio", _fails("port 9000 is taken"))
    with pytest.raises(StackError, match="is taken"):
        stack.up()
    (kafka_pid,) = started
    try:
        assert not is_ours(kafka_pid, stack._marker("kafka"))
        assert stack._load().kafka.pid == 0
    finally:
        stop(kafka_pid, stack._marker("kafka"), timeout_s=10)


def test_each_start_writes_a_new_log_and_keeps_the_one_before(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "minio.log"
    for n in (1, 2, 3):
        spawn([sys.executable, "-c", f"print('start {n}')"], log).wait(10)
    assert log.read_text() == "start 3\n"
    assert log.with_name("minio.log.1").read_text() == "start 2\n"
    assert sorted(p.name for p in log.parent.iterdir()) == ["minio.log", "minio.log.1"]


def test_first_installs_into_one_cache_take_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside: list[str] = []
    overlaps: list[str] = []
    lock = threading.Lock()

    def slow_install(dev: DevStackSettings, _progress: object) -> Path:
        with lock:
            if inside:
                overlaps.append(f"{dev.data_dir.name} while {inside[0]}")
            inside.append(dev.data_dir.name)
        time.sleep(0.3)  # long enough for the other thread to arrive meanwhile
        with lock:
            inside.remove(dev.data_dir.name)
        return dev.cache_dir / "kafka"

    monkeypatch.setattr(kafka, "ensure_installed", slow_install)
    monkeypatch.setattr(minio, "ensure_installed", lambda dev, _p: dev.cache_dir / "minio")
    said: list[str] = []
    stacks = [_stack(tmp_path, "one", said), _stack(tmp_path, "two", said)]
    threads = [threading.Thread(target=s.install) for s in stacks]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the first holds the lock when the second asks
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    assert [m for m in said if "waiting for another install" in m] != []


def test_a_port_that_had_to_change_is_said_on_stderr(tmp_path: Path) -> None:
    said: list[str] = []
    stack = _stack(tmp_path, said=said)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        port = stack._port(0, taken, "PIXELFLEET_S3_ENDPOINT")
    assert port != taken
    (note,) = said
    assert f"port {taken} is taken" in note and f"to port {port}" in note
    assert "PIXELFLEET_S3_ENDPOINT" in note and "eval" in note
    # The first choice of a port, and a kept one, are not news.
    assert stack._port(0, 0, "PIXELFLEET_S3_ENDPOINT") > 0
    assert stack._port(0, port, "PIXELFLEET_S3_ENDPOINT") == port
    assert len(said) == 1
