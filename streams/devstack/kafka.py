"""The real Apache Kafka broker, single node, KRaft combined mode, from Maven Central jars."""

from __future__ import annotations

import base64
import logging
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from streams.devstack.procs import StackError, run_checked
from streams.devstack.settings import DevStackSettings

Progress = Callable[[str], None]

JAVA_HINT = "Install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`."
MAVEN_HINT = (
    "Install Maven, e.g. `apt-get install maven`, and make sure Maven Central is reachable."
)


def resource(name: str) -> Path:
    return Path(str(resources.files("streams.devstack") / "resources" / name))


def install_dir(dev: DevStackSettings) -> Path:
    return dev.cache_dir / "kafka" / f"{dev.kafka_version}-log4j{dev.log4j_version}"


def ensure_installed(dev: DevStackSettings, progress: Progress) -> Path:
    """Fetch the broker jars once into the cache; later calls return at once."""
    target = install_dir(dev)
    libs = target / "libs"
    if (target / ".complete").exists():
        return libs
    check_java()
    if shutil.which("mvn") is None:
        raise StackError(f"Kafka install: mvn is not installed. {MAVEN_HINT}")
    progress(f"kafka: fetching Apache Kafka {dev.kafka_version} jars from Maven Central (once)")
    if libs.exists():
        shutil.rmtree(libs)
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    shutil.copyfile(resource("kafka-pom.xml"), pom)
    argv = [
        "mvn",
        "-B",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={dev.cache_dir / 'm2'}",
        f"-Dkafka.version={dev.kafka_version}",
        f"-Dlog4j.version={dev.log4j_version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    _run_maven(argv, progress)
    jars = sorted(libs.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise StackError(
            f"Kafka install: Maven finished but no broker jar is in {libs}. {MAVEN_HINT}"
        )
    (target / ".complete").write_text(f"{len(jars)} jars\n")
    progress(f"kafka: installed {len(jars)} jars into {libs}")
    return libs


def _run_maven(argv: list[str], progress: Progress) -> None:
    downloaded = 0
    lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        match = re.search(r"Downloaded from \S+: \S+/([^/]+\.jar) \(([^,)]+)", line)
        if match:
            downloaded += 1
            progress(f"kafka:   [{downloaded:3d}] {match.group(1)} ({match.group(2)})")
    if proc.wait() != 0:
        last = "\n".join("    " + x for x in lines[-25:])
        raise StackError(
            f"Kafka install: Maven failed (exit {proc.returncode}). {MAVEN_HINT}\n{last}"
        )


def check_java() -> None:
    if shutil.which("java") is None:
        raise StackError(f"Kafka: java is not installed. {JAVA_HINT}")
    out = run_checked(["java", "-version"], "java -version", JAVA_HINT)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise StackError(
            f"Kafka 4 needs Java 17 or newer; `java -version` says {major}. {JAVA_HINT}"
        )


def new_cluster_id() -> str:
    """Kafka's own format: a random UUID, URL-safe base64 without padding (22 chars).

    Like Kafka's Uuid.randomUuid, never one starting with '-': the storage tool would
    read it as an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def write_config(data_dir: Path, port: int, controller_port: int) -> Path:
    log_dir = data_dir / "kafka" / "data"
    conf = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        # A single node cannot replicate; the internal topics must accept that.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "12",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests and laptops start consumers right away; no reason to wait 3 s for more.
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created by `pixelfleet init` with their intended settings, never implicitly.
        "auto.create.topics.enable": "false",
        "log.cleaner.backoff.ms": "1000",
    }
    path = data_dir / "kafka" / "server.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    return path


def format_storage(libs: Path, config: Path, data_dir: Path) -> None:
    """Format the KRaft log directory on first start only; later starts keep the data."""
    if (data_dir / "kafka" / "data" / "meta.properties").exists():
        return
    run_checked(
        [
            *java_base(libs, data_dir, heap_mb=256),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(config),
        ],
        "Kafka storage format",
        f"Check the config at {config}.",
    )


def java_base(libs: Path, data_dir: Path, heap_mb: int) -> list[str]:
    return [
        "java",
        f"-Xms{min(heap_mb, 256)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={resource('log4j2.xml')}",
        f"-Dkafka.logs.dir={data_dir / 'kafka' / 'logs'}",
        "-cp",
        f"{libs}/*",
    ]


def server_argv(libs: Path, config: Path, data_dir: Path, heap_mb: int) -> list[str]:
    return [*java_base(libs, data_dir, heap_mb), "kafka.Kafka", str(config)]


def _quiet() -> logging.Logger:
    # Probing a broker that is still starting makes librdkafka complain; nobody needs that.
    quiet = logging.getLogger("pixelfleet.devstack.probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def is_ready(bootstrap: str) -> bool:
    """The broker answers a metadata request, lists itself, and can run transactions."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _quiet()}
    admin = AdminClient(conf)
    try:
        if not admin.list_topics(timeout=2).brokers:
            return False
        # The transaction coordinator loads its log after start-up; the fleet needs it.
        probe = Producer(
            {
                "bootstrap.servers": bootstrap,
                "logger": _quiet(),
                "transactional.id": "pixelfleet.devstack.ready-probe",
            }
        )
        probe.init_transactions(5)
    except Exception:
        return False
    return True
