"""The real MinIO server, built from source with `go install` into the cache."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
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


def binary(dev: DevStackSettings) -> Path:
    return dev.cache_dir / "minio" / dev.minio_module_version / "bin" / "minio"


def ensure_installed(dev: DevStackSettings, progress: Progress) -> Path:
    """Build the server once; later calls return at once."""
    target = binary(dev)
    if target.exists() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise StackError(f"MinIO install: go is not installed. {GO_HINT}")
    progress(
        f"minio: building {MODULE}@{dev.minio_module_version} with go install "
        "(once; a few minutes on two cores)"
    )
    started = time.monotonic()
    env = {
        **os.environ,
        "GOBIN": str(target.parent),
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
    if proc.wait() != 0 or not target.exists():
        last = "\n".join("    " + x for x in lines[-25:])
        raise StackError(
            f"MinIO install: go install failed (exit {proc.returncode}). {GO_HINT}\n{last}"
        )
    progress(f"minio: built {target} in {time.monotonic() - started:.0f} s")
    return target


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
