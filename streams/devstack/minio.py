"""The real MinIO server, built from source with `go install` into the cache."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.devstack.procs import StackError
from streams.devstack.settings import DevStackSettings

Progress = Callable[[str], None]

MODULE = "github.com/minio/minio"
GO_HINT = (
    "Install Go 1.24 or newer (e.g. `apt-get install golang` and let GOTOOLCHAIN=auto fetch a "
    "newer toolchain through the Go module proxy), and make sure the Go module proxy is reachable."
)


# A binary left without its marker is kept if `--version` answers within this.
VERSION_TIMEOUT_S = 30.0


def binary(dev: DevStackSettings) -> Path:
    return dev.cache_dir / "minio" / dev.minio_module_version / "bin" / "minio"


def complete_marker(dev: DevStackSettings) -> Path:
    """Written once the binary is in place, so that a binary without it (one from an older
    pixelfleet that `go install` may have left half-copied) is built again."""
    return binary(dev).parent.parent / ".complete"


def installed(dev: DevStackSettings) -> bool:
    """Whether the built server is in the cache. Safe without the install lock: the binary
    only ever appears whole (renamed into place), and the marker only after it."""
    target = binary(dev)
    return complete_marker(dev).exists() and target.exists() and os.access(target, os.X_OK)


def ensure_installed(dev: DevStackSettings, progress: Progress) -> Path:
    """Build the server once; later calls return at once."""
    target = binary(dev)
    if installed(dev):
        return target
    if _runs(target):
        # Built by a pixelfleet from before the marker: whole if it runs (a cut copy does
        # not), so it is marked, not built again (minutes).
        complete_marker(dev).write_text(f"{target.stat().st_size} bytes\n")
        return target
    go = shutil.which("go")
    if go is None:
        raise StackError(f"MinIO install: go is not installed. {GO_HINT}")
    progress(
        f"minio: building {MODULE}@{dev.minio_module_version} with go install "
        "(once; a few minutes on two cores)"
    )
    started = time.monotonic()
    # `go install` may copy the ~100 MB binary into GOBIN rather than rename it (its build
    # folder is often on another file system), creating the file first: built into the
    # final folder, a concurrent `dev up` could start a truncated binary. So it builds into
    # a folder of its own beside the final one (the same file system), renamed into place.
    target.parent.mkdir(parents=True, exist_ok=True)
    # Absolute: go refuses a relative GOBIN, and Python 3.11's mkdtemp may return one.
    gobin = Path(tempfile.mkdtemp(prefix=".gobin-", dir=target.parent.parent)).absolute()
    try:
        _place(_build(dev, go, gobin, progress), target)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    complete_marker(dev).write_text(f"{target.stat().st_size} bytes\n")
    progress(f"minio: built {target} in {time.monotonic() - started:.0f} s")
    return target


def _runs(target: Path) -> bool:
    """Whether a binary left in the cache starts and answers `--version`."""
    if not (target.exists() and os.access(target, os.X_OK)):
        return False
    try:
        done = subprocess.run(
            [str(target), "--version"],
            check=False,
            capture_output=True,
            timeout=VERSION_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _build(dev: DevStackSettings, go: str, gobin: Path, progress: Progress) -> Path:
    """`go install` the pinned MinIO into `gobin` and return the binary, or raise
    StackError."""
    env = {
        **os.environ,
        "GOBIN": str(gobin),
        "CGO_ENABLED": "0",
        # Module sources stay inside our cache, writable so that deleting the cache just works.
        "GOMODCACHE": str(dev.cache_dir / "go" / "mod"),
        "GOFLAGS": "-modcacherw",
        # The pinned MinIO needs Go 1.24; an older go (1.21 on) fetches that toolchain
        # itself when allowed to, but a go.env may say GOTOOLCHAIN=local (some packaged
        # ones do) and refuse. A GOTOOLCHAIN set in the environment is the user's: kept.
        "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN") or "auto",
    }
    proc = subprocess.Popen(
        [go, "install", "-trimpath", f"{MODULE}@{dev.minio_module_version}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    modules = 0
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("go: downloading"):
            modules += 1
            if modules % 25 == 0:
                progress(f"minio:   {modules} modules downloaded")
    built = gobin / "minio"  # go names the binary after the module's last element
    if proc.wait() != 0 or not built.exists():
        last = "\n".join("    " + x for x in lines[-25:])
        raise StackError(
            f"MinIO install: go install failed (exit {proc.returncode}). {GO_HINT}\n{last}"
        )
    return built


def _place(built: Path, target: Path) -> None:
    """Move the finished binary to `target` in one step: os.replace is atomic on one file
    system, so a reader sees no binary or the whole one, never a part of it."""
    # On disk before the rename, so that a crash cannot leave the name on an empty file.
    with built.open("rb") as written:
        os.fsync(written.fileno())
    os.replace(built, target)


def new_credentials() -> tuple[str, str]:
    return "pixelfleet", secrets.token_urlsafe(24)


def server_argv(binary_path: Path, data_dir: Path, port: int) -> list[str]:
    return [
        str(binary_path),
        "server",
        str(data_dir / "minio" / "data"),
        "--address",
        f"127.0.0.1:{port}",
        "--anonymous",
    ]


def server_env(access_key: str, secret_key: str) -> dict[str, str]:
    return {
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        # A laptop stack has no use for the web console or update checks.
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
    }


def is_ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def version(binary_path: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary_path), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "unknown"
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "unknown"
