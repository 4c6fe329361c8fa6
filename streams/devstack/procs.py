"""Starting, finding and stopping the local servers we launched ourselves.

A server is recorded by its PID and by a marker (its data directory) that
must appear in its command line, so that a PID reused by an unrelated
process after a reboot is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A failure of the local stack that the user can act on; the message says how."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `host`:`port` now. Only "in use" is False; another
    failure to bind (no such address here, a port below 1024 without the right) raises,
    for the caller's error to say what it is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # The servers bind with SO_REUSEADDR, so a port in TIME_WAIT after `down` is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def spawn(
    argv: Sequence[str],
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server detached from our session, its output in a new log_file; the
    previous start's log is kept as log_file.1 (see `rotate`)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    rotate(log_file)
    full_env = {**os.environ, **(env or {})}
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return proc


def rotate(log_file: Path) -> None:
    """Move log_file to log_file.1, replacing an older .1. Appending to one file for every
    start let it grow without end (`--fresh` keeps logs/ too); one start and the one
    before are what a person reads after a failed start."""
    with contextlib.suppress(FileNotFoundError):
        log_file.replace(log_file.with_name(f"{log_file.name}.1"))


def exit_description(proc: subprocess.Popen[bytes] | None) -> str:
    """How a child we started ended, or '' while it runs (or if it is not our child)."""
    if proc is None or proc.poll() is None:
        return ""
    code = proc.returncode
    if code < 0:
        return f" (killed by signal {signal.Signals(-code).name})"
    return f" (exit code {code})"


def cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0]


def is_ours(pid: int, marker: str) -> bool:
    """True while pid is alive, not a zombie, and was started with marker in its argv."""
    for _ in range(10):
        state = _state(pid)
        if state is None or state in "ZX":
            return False
        line = cmdline(pid)
        # MinIO re-executes itself early on; for an instant its cmdline reads empty.
        if line:
            return marker in line
        time.sleep(0.05)
    return False


def stop(pid: int, marker: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns False if the process was not ours or not running."""
    if not is_ours(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_ours(pid, marker):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not is_ours(pid, marker):
            break
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    # Only our own children can be reaped; for others this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    alive: Callable[[], bool],
    what: str,
    log_file: Path,
    *,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll check() until it passes; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise StackError(
                f"{what} exited during start-up{exit_description(proc)}; "
                f"see its log: {log_file}\n{tail(log_file)}"
            )
        time.sleep(0.3)
    raise StackError(f"{what} did not become ready in {timeout_s:.0f} s; see its log: {log_file}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def run_checked(argv: Sequence[str], what: str, hint: str) -> str:
    """Run an install step; on failure raise a StackError naming the step and what to do."""
    try:
        proc = subprocess.run(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {argv[0]} is not installed. {hint}") from exc
    if proc.returncode != 0:
        last = "\n".join("    " + line for line in proc.stdout.strip().splitlines()[-20:])
        raise StackError(f"{what} failed (exit {proc.returncode}). {hint}\n{last}")
    return proc.stdout
