"""`pixelfleet dev up|down|status`: one real Kafka and one real MinIO per data directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from streams.config.settings import FleetSettings
from streams.devstack import kafka, minio
from streams.devstack.procs import (
    StackError,
    free_port,
    is_ours,
    port_is_free,
    spawn,
    stop,
    wait_until,
)
from streams.devstack.settings import DevStackSettings, LocalSettings

Progress = Callable[[str], None]
STATE_FILE = "stack.json"
SERVERS = ("kafka", "minio")
S = TypeVar("S", bound=FleetSettings)


@dataclass
class ServerState:
    port: int = 0
    pid: int = 0
    extra_port: int = 0  # Kafka's controller listener


@dataclass
class StackState:
    kafka: ServerState = field(default_factory=ServerState)
    minio: ServerState = field(default_factory=ServerState)
    access_key: str = ""
    secret_key: str = ""


@dataclass(frozen=True)
class ServerStatus:
    name: str
    running: bool
    pid: int
    address: str
    log: Path


@dataclass(frozen=True)
class StackInfo:
    data_dir: Path
    bootstrap: str
    s3_endpoint: str
    access_key: str
    secret_key: str
    started: tuple[str, ...]

    def env(self) -> dict[str, str]:
        return {
            "PIXELFLEET_KAFKA_BOOTSTRAP": self.bootstrap,
            "PIXELFLEET_S3_ENDPOINT": self.s3_endpoint,
            "PIXELFLEET_S3_ACCESS_KEY": self.access_key,
            "PIXELFLEET_S3_SECRET_KEY": self.secret_key,
        }

    def settings(self, base: S) -> S:
        """`base` with Kafka and S3 pointing at this stack."""
        s3 = base.s3.model_copy(
            update={
                "endpoint": self.s3_endpoint,
                "access_key": self.access_key,
                "secret_key": SecretStr(self.secret_key),
            }
        )
        kafka = base.kafka.model_copy(update={"bootstrap": self.bootstrap})
        return base.model_copy(update={"kafka": kafka, "s3": s3})

    def shell_exports(self) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env().items())


class DevStack:
    def __init__(self, dev: DevStackSettings, progress: Progress = lambda _msg: None) -> None:
        # One spelling of the cache for the installers, their markers and the install lock:
        # with `~` left in, the lock and the installs would be in different folders.
        self.dev = dev.model_copy(update={"cache_dir": dev.cache_dir.expanduser().resolve()})
        self.data_dir = dev.data_dir.expanduser().resolve()
        self.progress = progress
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- paths and markers -------------------------------------------------

    @property
    def kafka_config(self) -> Path:
        return self.data_dir / "kafka" / "server.properties"

    @property
    def minio_data(self) -> Path:
        return self.data_dir / "minio" / "data"

    def log_file(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def _marker(self, name: str) -> str:
        return str(self.kafka_config if name == "kafka" else self.minio_data)

    # -- state -------------------------------------------------------------

    def _load(self) -> StackState:
        path = self.data_dir / STATE_FILE
        if not path.exists():
            return StackState()
        raw = json.loads(path.read_text())
        return StackState(
            kafka=ServerState(**raw.get("kafka", {})),
            minio=ServerState(**raw.get("minio", {})),
            access_key=raw.get("access_key", ""),
            secret_key=raw.get("secret_key", ""),
        )

    def _save(self, state: StackState) -> None:
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        # The file holds the MinIO root secret: readable by its owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(state), out, indent=2)
        tmp.replace(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def _install_locked(self) -> Iterator[None]:
        """The cache is shared by every data folder: two first `up`s must not build into
        it at once (half-copied jars, a MinIO binary written twice)."""
        cache = self.dev.cache_dir
        cache.mkdir(parents=True, exist_ok=True)
        with (cache / ".install.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress(f"install: waiting for another install into {cache} to finish")
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _running(self, name: str, server: ServerState) -> bool:
        child = self._children.get(name)
        if child is not None and child.pid == server.pid:
            return child.poll() is None  # our own child: its exit status is certain
        return server.pid > 0 and is_ours(server.pid, self._marker(name))

    # -- commands ----------------------------------------------------------

    def installed(self) -> bool:
        """Whether both servers are in the cache, by the markers `ensure_installed` checks:
        Kafka's `.complete` (written after the last jar) and MinIO's (written after its
        binary was renamed into place whole). Asked without the lock, so it trusts nothing
        an install still under way could have written in part."""
        return (kafka.install_dir(self.dev) / ".complete").exists() and minio.installed(self.dev)

    def install(self) -> tuple[Path, Path]:
        # The lock only orders installs: an `up` with nothing to install must not wait
        # behind another data folder's first MinIO build (minutes) for it. Without the
        # markers, each ensure_installed checks its own again under the lock, so what the
        # install we waited for put into the cache is not installed a second time.
        lock: contextlib.AbstractContextManager[None] = (
            contextlib.nullcontext() if self.installed() else self._install_locked()
        )
        with lock:
            libs = kafka.ensure_installed(self.dev, self.progress)
            binary = minio.ensure_installed(self.dev, self.progress)
        return libs, binary

    def up(self, fresh: bool = False) -> StackInfo:
        libs, binary = self.install()
        with self._locked():
            if fresh:
                self._stop(self._load(), SERVERS)
                self._wipe()
            state = self._load()
            if not state.access_key:
                state.access_key, state.secret_key = self._initial_credentials()
            started: list[str] = []
            try:
                if not self._running("kafka", state.kafka):
                    self._start_kafka(libs, state)
                    started.append("kafka")
                if not self._running("minio", state.minio):
                    self._start_minio(binary, state)
                    started.append("minio")
                self._save(state)
                info = self._info(state, tuple(started))
                self._wait_ready(info, state)
            except (StackError, OSError):
                # Only what this call started (MinIO failing to start must not leave the
                # Kafka it just started unrecorded): a server that was running before is
                # another `up`'s, maybe serving someone else, and stays.
                self._stop(state, tuple(started))
                self._save(state)
                raise
            return info

    def down(self) -> list[str]:
        with self._locked():
            state = self._load()
            stopped = self._stop(state, SERVERS)
            self._save(state)
            return stopped

    def stop_server(self, name: str) -> bool:
        """Stop one server (chaos tests and operators); `up` starts it again."""
        with self._locked():
            state = self._load()
            server = state.kafka if name == "kafka" else state.minio
            stopped = bool(server.pid) and stop(server.pid, self._marker(name))
            server.pid = 0
            self._save(state)
            return stopped

    def status(self) -> list[ServerStatus]:
        state = self._load()
        return [
            ServerStatus(
                "kafka",
                self._running("kafka", state.kafka),
                state.kafka.pid,
                f"127.0.0.1:{state.kafka.port}",
                self.log_file("kafka"),
            ),
            ServerStatus(
                "minio",
                self._running("minio", state.minio),
                state.minio.pid,
                f"http://127.0.0.1:{state.minio.port}",
                self.log_file("minio"),
            ),
        ]

    def info(self) -> StackInfo | None:
        """The connection settings of a running stack, or None if it is not (fully) up."""
        state = self._load()
        if not (self._running("kafka", state.kafka) and self._running("minio", state.minio)):
            return None
        return self._info(state, ())

    # -- internals ---------------------------------------------------------

    def _initial_credentials(self) -> tuple[str, str]:
        if self.dev.minio_root_user and self.dev.minio_root_password:
            return self.dev.minio_root_user, self.dev.minio_root_password.get_secret_value()
        return minio.new_credentials()

    def _port(self, wanted: int, previous: int, exported: str = "") -> int:
        if wanted:
            if not port_is_free(wanted):
                raise StackError(
                    f"port {wanted} is taken; pick another or set it to 0 for a free one"
                )
            return wanted
        # Reusing last run's port keeps the exported settings of a shell valid across restarts.
        if previous and port_is_free(previous):
            return previous
        port = free_port()
        if previous and exported:
            # On stderr: a shell that ran the eval before still points at the old port.
            self.progress(
                f"note: port {previous} is taken now, so {exported} moves to port {port}; "
                "eval the output of `pixelfleet dev up` again in shells that use the stack"
            )
        return port

    def _start_kafka(self, libs: Path, state: StackState) -> None:
        state.kafka.port = self._port(
            self.dev.kafka_port, state.kafka.port, "PIXELFLEET_KAFKA_BOOTSTRAP"
        )
        state.kafka.extra_port = self._port(0, state.kafka.extra_port)
        config = kafka.write_config(self.data_dir, state.kafka.port, state.kafka.extra_port)
        kafka.format_storage(libs, config, self.data_dir)
        argv = kafka.server_argv(libs, config, self.data_dir, self.dev.kafka_heap_mb)
        self._children["kafka"] = spawn(argv, self.log_file("kafka"))
        state.kafka.pid = self._children["kafka"].pid
        self.progress(f"kafka: started pid {state.kafka.pid} on 127.0.0.1:{state.kafka.port}")

    def _start_minio(self, binary: Path, state: StackState) -> None:
        state.minio.port = self._port(
            self.dev.minio_port, state.minio.port, "PIXELFLEET_S3_ENDPOINT"
        )
        self.minio_data.mkdir(parents=True, exist_ok=True)
        argv = minio.server_argv(binary, self.data_dir, state.minio.port)
        env = minio.server_env(state.access_key, state.secret_key)
        self._children["minio"] = spawn(argv, self.log_file("minio"), env=env)
        state.minio.pid = self._children["minio"].pid
        self.progress(f"minio: started pid {state.minio.pid} on 127.0.0.1:{state.minio.port}")

    def _wait_ready(self, info: StackInfo, state: StackState) -> None:
        started = time.monotonic()
        wait_until(
            lambda: minio.is_ready(info.s3_endpoint),
            self.dev.start_timeout_s,
            lambda: self._running("minio", state.minio),
            "MinIO",
            self.log_file("minio"),
            proc=self._children.get("minio"),
        )
        wait_until(
            lambda: kafka.is_ready(info.bootstrap),
            self.dev.start_timeout_s,
            lambda: self._running("kafka", state.kafka),
            "Kafka",
            self.log_file("kafka"),
            proc=self._children.get("kafka"),
        )
        self.progress(f"stack: ready in {time.monotonic() - started:.1f} s")

    def _stop(self, state: StackState, names: tuple[str, ...]) -> list[str]:
        """Stop these servers (MinIO first, as `down` always did); the names stopped."""
        stopped = []
        for name, server in (("minio", state.minio), ("kafka", state.kafka)):
            if name not in names:
                continue
            if server.pid and stop(server.pid, self._marker(name)):
                stopped.append(name)
            server.pid = 0
        return stopped

    def _wipe(self) -> None:
        for sub in ("kafka", "minio", STATE_FILE):
            path = self.data_dir / sub
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _info(self, state: StackState, started: tuple[str, ...]) -> StackInfo:
        return StackInfo(
            data_dir=self.data_dir,
            bootstrap=f"127.0.0.1:{state.kafka.port}",
            s3_endpoint=f"http://127.0.0.1:{state.minio.port}",
            access_key=state.access_key,
            secret_key=state.secret_key,
            started=started,
        )


@contextlib.contextmanager
def stack_for_tools(data_dir: Path) -> Iterator[LocalSettings]:
    """Settings for a bench or a script: the stack the environment names, if any, else a
    throwaway local one in data_dir, stopped afterwards."""
    if os.environ.get("PIXELFLEET_KAFKA_BOOTSTRAP") and os.environ.get("PIXELFLEET_S3_ENDPOINT"):
        yield LocalSettings()
        return
    base = LocalSettings()
    stack = DevStack(base.dev.model_copy(update={"data_dir": data_dir}))
    info = stack.up()
    try:
        yield info.settings(base)
    finally:
        stack.down()
