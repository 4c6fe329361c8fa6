"""`dev up` takes the shared cache's install lock only when something is missing from the
cache, checks again once it holds the lock, and locks the same folder the installers fill.
Nothing is installed: the markers are made by hand and the real installers are stopped
short of Maven and Go."""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams.devstack import kafka, minio
from streams.devstack.settings import DevStackSettings
from streams.devstack.stack import DevStack


@pytest.fixture(autouse=True)
def no_real_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install that really starts (Maven, a Java check, a Go build) fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an install ran")

    monkeypatch.setattr(kafka, "check_java", refuse)
    monkeypatch.setattr(kafka, "_run_maven", refuse)
    monkeypatch.setattr("streams.devstack.minio.subprocess.Popen", refuse)


def _stack(cache: Path, data: Path, said: list[str]) -> DevStack:
    return DevStack(DevStackSettings(cache_dir=cache, data_dir=data), progress=said.append)


def _fill(dev: DevStackSettings) -> None:
    """What a finished install leaves: Kafka's `.complete`, an executable MinIO and then
    MinIO's `.complete`."""
    done = kafka.install_dir(dev) / ".complete"
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("1 jars\n")
    server = minio.binary(dev)
    server.parent.mkdir(parents=True, exist_ok=True)
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    minio.complete_marker(dev).write_text("10 bytes\n")


@contextmanager
def _another_install(cache: Path) -> Iterator[None]:
    """The install lock held as another data folder's first `up` holds it while building."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _in_thread(call: Callable[[], tuple[Path, Path]]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # handed to the test, which compares it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_an_installed_cache_is_used_without_waiting_for_the_lock(tmp_path: Path) -> None:
    said: list[str] = []
    stack = _stack(tmp_path / "cache", tmp_path / "two", said)
    _fill(stack.dev)
    assert stack.installed()
    with _another_install(tmp_path / "cache"):
        thread, out = _in_thread(stack.install)
        thread.join(5)
        waited = thread.is_alive()
    thread.join(5)
    assert not waited, "an up with everything installed waited behind another's install"
    assert out == [(kafka.install_dir(stack.dev) / "libs", minio.binary(stack.dev))]
    assert not any("waiting" in m for m in said)


def test_an_install_finished_while_waiting_is_not_done_again(tmp_path: Path) -> None:
    said: list[str] = []
    stack = _stack(tmp_path / "cache", tmp_path / "two", said)
    assert not stack.installed()
    with _another_install(tmp_path / "cache"):
        thread, out = _in_thread(stack.install)
        deadline = time.monotonic() + 5
        while not any("waiting for another install" in m for m in said):
            assert time.monotonic() < deadline, "install did not wait for the lock"
            time.sleep(0.01)
        _fill(stack.dev)  # the install it waited for finishes, then lets go of the lock
    thread.join(5)
    assert not thread.is_alive()
    # The markers were checked again under the lock: no second install (no_real_install).
    assert out == [(kafka.install_dir(stack.dev) / "libs", minio.binary(stack.dev))]


def test_a_cache_given_with_a_tilde_is_locked_where_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []

    def install(dev: DevStackSettings, _progress: object) -> Path:
        seen.append(dev.cache_dir)
        return dev.cache_dir

    monkeypatch.setattr(kafka, "ensure_installed", install)
    monkeypatch.setattr(minio, "ensure_installed", install)
    stack = _stack(Path("~/cache"), tmp_path / "data", [])
    stack.install()
    home_cache = (tmp_path / "cache").resolve()
    assert seen == [home_cache, home_cache]
    assert (home_cache / ".install.lock").exists()  # the lock is in that very folder
    assert not (tmp_path / "~").exists()  # no cache folder literally named "~"
    # The markers are looked for there too: once filled, no lock is taken.
    _fill(stack.dev)
    assert kafka.install_dir(stack.dev).is_relative_to(home_cache)
    (home_cache / ".install.lock").unlink()
    stack.install()
    assert not (home_cache / ".install.lock").exists()
    assert seen[2:] == [home_cache, home_cache]
