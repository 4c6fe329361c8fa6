"""One worker process per stage, as a deployment runs them, started and stopped together."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streams.devstack.procs import free_port


@dataclass
class WorkerProcess:
    stage: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path


def run_id_for(log_dir: Path) -> str:
    """The run id of the demos that log into `log_dir`: 8 hex digits of a hash of the host
    and the folder's resolved path.

    The replica id (`demo-<run>-<stage>`) names the worker's transactional producer. Two
    demos in different folders (or on two machines sharing a stack) must differ, or they
    fence each other's producers. A rerun in the same folder must not: its producers then
    fence the previous run's, aborting a transaction a worker killed after its grace left
    open, which would otherwise hold read_committed readers back until
    transaction.timeout.ms and leave one more transactional id behind on every run."""
    where = f"{socket.gethostname()}\0{log_dir.expanduser().resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


class WorkerProcesses:
    """`pixelfleet worker --stage NAME` for each stage, logging to files in `log_dir`."""

    def __init__(
        self, stages: list[str], env: dict[str, str], log_dir: Path, run_id: str = ""
    ) -> None:
        self.stages = stages
        self.env = env
        self.log_dir = log_dir
        self.run_id = run_id or run_id_for(log_dir)
        self.workers: list[WorkerProcess] = []

    def start(self) -> None:
        for stage in self.stages:
            self.add(stage)

    def add(self, stage: str) -> WorkerProcess:
        """One more worker of `stage`: a replica of its own (transactional id, log, port)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        same = sum(1 for w in self.workers if w.stage == stage)
        name = stage if same == 0 else f"{stage}-{same}"
        replica = f"demo-{self.run_id}-{name}"
        port = free_port()
        log = self.log_dir / f"{name}.log"
        env = {
            **os.environ,
            **self.env,
            "PIXELFLEET_RUNNER_METRICS_PORT": str(port),
            "PIXELFLEET_RUNNER_REPLICA_ID": replica,
        }
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--stage", stage],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C in the terminal reaches only the demo,
                # which then stops the workers in order.
                start_new_session=True,
            )
        worker = WorkerProcess(stage, process, port, log)
        self.workers.append(worker)
        return worker

    def retire(self, worker: WorkerProcess, grace_s: float = 45.0) -> int:
        """Stop one worker as a scale-in does: SIGTERM, it commits and leaves its group."""
        worker.process.send_signal(signal.SIGTERM)
        try:
            code = worker.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            code = worker.process.wait()
        self.workers.remove(worker)
        return code

    def dead(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is not None]

    def stop(self, grace_s: float = 45.0) -> dict[str, int]:
        """SIGTERM all (each drains its batch and commits), then wait; kill what overstays."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes: dict[str, int] = {}
        for worker in self.workers:
            try:
                codes[worker.stage] = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                codes[worker.stage] = worker.process.wait()
        return codes

    def log_tail(self, worker: WorkerProcess, lines: int = 15) -> str:
        try:
            return "\n".join(worker.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
