"""The MinIO binary reaches the cache whole or not at all: `go install` builds into a
folder of its own, the binary is renamed into place, and only a marker written after that
says it is installed. A fake `go` on the PATH stands in for the real build (minutes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.devstack import kafka, minio
from streams.devstack.procs import StackError
from streams.devstack.settings import DevStackSettings
from streams.devstack.stack import DevStack

# What the fake build writes: a first part, then (the copy going on) the rest.
FIRST_PART = "#!/bin/sh\n"
REST = 'echo "minio version FAKE"\n'

# A `go install` that copies into GOBIN as Go does across file systems: the file created
# executable and part written, then the rest. Halfway it logs where it writes and whether
# anything is at the final path yet; it exits with $FAKE_GO_EXIT.
FAKE_GO = """#!/bin/sh
echo "gobin $GOBIN" >> "$FAKE_GO_LOG"
printf '%s' "$FAKE_FIRST_PART" > "$GOBIN/minio"
chmod 777 "$GOBIN/minio"
if [ -e "$FAKE_GO_FINAL" ]; then echo "final present" >> "$FAKE_GO_LOG"; fi
[ "${FAKE_GO_EXIT:-0}" = 0 ] || exit "$FAKE_GO_EXIT"
printf '%s' "$FAKE_REST" >> "$GOBIN/minio"
"""


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DevStackSettings:
    """Settings whose cache is in tmp_path, with only the fake `go` on the PATH."""
    tools = tmp_path / "tools"
    tools.mkdir()
    go = tools / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    settings = DevStackSettings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")  # the fake's printf and chmod
    monkeypatch.setenv("FAKE_GO_LOG", str(tmp_path / "go.log"))
    monkeypatch.setenv("FAKE_GO_FINAL", str(minio.binary(settings)))
    monkeypatch.setenv("FAKE_FIRST_PART", FIRST_PART)
    monkeypatch.setenv("FAKE_REST", REST)
    return settings


def _log() -> list[str]:
    """What the fake go logged: a `gobin` line per build, then `final present` if anything
    was at the final path halfway through it."""
    log = Path(os.environ["FAKE_GO_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def _builds() -> int:
    return sum(line.startswith("gobin ") for line in _log())


def _build_folders(dev: DevStackSettings) -> list[Path]:
    return list(minio.binary(dev).parent.parent.glob(".gobin-*"))


def test_the_binary_appears_whole_and_only_once_the_build_is_done(dev: DevStackSettings) -> None:
    target = minio.ensure_installed(dev, lambda _m: None)
    assert target == minio.binary(dev)
    log = _log()
    assert _builds() == 1 and "final present" not in log  # nothing there while it built
    gobin = Path(log[0].removeprefix("gobin "))
    # Built beside the final folder (one file system, so the rename is atomic), not in it.
    assert gobin.is_absolute() and gobin.parent == target.parent.parent
    assert gobin != target.parent
    assert target.read_text() == FIRST_PART + REST
    assert os.access(target, os.X_OK)
    assert minio.complete_marker(dev).exists() and minio.installed(dev)
    assert _build_folders(dev) == []  # the build folder is gone
    # Installed: a second call builds nothing.
    assert minio.ensure_installed(dev, lambda _m: None) == target
    assert _builds() == 1


def test_a_failed_build_leaves_nothing_a_concurrent_up_could_start(
    dev: DevStackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_EXIT", "1")  # dies halfway through writing the binary
    with pytest.raises(StackError, match="go install failed"):
        minio.ensure_installed(dev, lambda _m: None)
    assert _builds() == 1
    assert not minio.binary(dev).exists()
    assert not minio.complete_marker(dev).exists() and not minio.installed(dev)
    assert _build_folders(dev) == []


def test_a_binary_still_being_copied_is_not_taken_for_installed(dev: DevStackSettings) -> None:
    """The review's case: Kafka installed, and the MinIO binary created 0777 at its final
    path by a copy still under way. `installed()`, asked without the lock, must say no."""
    stack = DevStack(dev)
    done = kafka.install_dir(dev) / ".complete"
    done.parent.mkdir(parents=True)
    done.write_text("1 jars\n")
    target = minio.binary(dev)
    target.parent.mkdir(parents=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o777)
    try:
        os.write(fd, b"\x7fELF" + b"\0" * 60)
        assert not stack.installed()
    finally:
        os.close(fd)
    # Without the marker it is built again, and the whole binary replaces the part.
    minio.ensure_installed(dev, lambda _m: None)
    assert _builds() == 1
    assert target.read_text() == FIRST_PART + REST
    assert stack.installed()


def test_a_whole_binary_from_before_the_marker_is_marked_not_built_again(
    dev: DevStackSettings,
) -> None:
    # A cache built by an older pixelfleet has the binary and no marker: one that answers
    # --version is whole (a cut copy does not run), so it costs no rebuild of minutes.
    target = minio.binary(dev)
    target.parent.mkdir(parents=True)
    target.write_text(FIRST_PART + REST)
    target.chmod(0o755)
    assert not minio.installed(dev)

    assert minio.ensure_installed(dev, lambda _m: None) == target

    assert _builds() == 0
    assert minio.complete_marker(dev).exists() and minio.installed(dev)
