"""The catalog the demo serves its web console from: one `pixelfleet catalog` process on
the demo's stack, with a key made for this run (printed, so the person can sign in).

The key may act (redrive, replay, delete): the demo's stack is the person's own. The table
lives in memory, so nothing of the catalog outlives the demo but its log.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from streams.devstack.procs import free_port, port_is_free

READY_TIMEOUT_S = 120.0


class DemoCatalog:
    def __init__(self, env: dict[str, str], log_dir: Path, port: int) -> None:
        self.env = env
        self.log = log_dir / "catalog.log"
        # The configured port where it is free, so a second run usually keeps its URL.
        self.port = port if port_is_free(port) else free_port()
        self.key = secrets.token_urlsafe(18)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(self.key.encode()).hexdigest()
        env = {
            **os.environ,
            **self.env,
            "PIXELFLEET_CATALOG_HOST": "127.0.0.1",
            "PIXELFLEET_CATALOG_PORT": str(self.port),
            "PIXELFLEET_CATALOG_ADVERTISED_URL": self.url.rstrip("/"),
            "PIXELFLEET_CATALOG_STORE": "memory",
            "PIXELFLEET_CATALOG_DATA_DIR": str(self.log.parent / "catalog"),
            "PIXELFLEET_CATALOG_API_KEY_HASHES": digest,
            "PIXELFLEET_CATALOG_ACTING_KEY_HASHES": digest,
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "catalog"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # As the workers: Ctrl-C reaches the demo, which stops the catalog itself.
                start_new_session=True,
            )

    def problem(self) -> str | None:
        """Why it is not serving, if it exited; None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        tail = self.log.read_text(errors="replace").splitlines()[-8:] if self.log.exists() else []
        return f"the catalog exited with code {self.process.returncode}:\n" + "\n".join(tail)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str | None:
        """None once /readyz answers 200; else what went wrong."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            exited = self.problem()
            if exited:
                return exited
            try:
                with urllib.request.urlopen(self.url + "readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        return f"the catalog was not ready after {timeout_s:.0f} s; see {self.log}"

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM (it leaves its group and closes), kill if it overstays; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def serve_until_interrupted(catalog: DemoCatalog) -> None:
    """Block while the catalog runs; Ctrl-C (SIGINT) or SIGTERM ends the wait."""
    stopped = []

    def on_term(_signum: int, _frame: object) -> None:
        stopped.append(True)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not stopped and catalog.problem() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
