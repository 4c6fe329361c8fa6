"""Shared fixtures: one real Kafka + MinIO stack per session, unique names per test.

The stack is chosen in this order:
1. `PIXELFLEET_KAFKA_BOOTSTRAP` and `PIXELFLEET_S3_ENDPOINT` from the environment;
2. testcontainers, when a Docker daemon answers;
3. our own `pixelfleet dev up` launcher in a temporary data directory.
A stack that cannot be had fails the tests that need it; it never skips them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from minio import Minio
from pydantic import SecretStr

from streams.app.settings import Settings
from streams.config.settings import KafkaSettings, S3Settings
from streams.devstack.procs import StackError
from streams.devstack.stack import DevStack
from streams.io import clients


@dataclass(frozen=True)
class Stack:
    kafka: KafkaSettings
    s3: S3Settings
    source: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder a test lives in decides its marker, so `-m unit` needs no bookkeeping.
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "integration", "e2e"):
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def _testcontainers_stack() -> Iterator[Stack]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, MinioContainer() as minio:
        conf = minio.get_config()
        yield Stack(
            kafka=KafkaSettings(bootstrap=kafka.get_bootstrap_server()),
            s3=S3Settings(
                endpoint=f"http://{conf['endpoint']}",
                access_key=conf["access_key"],
                secret_key=SecretStr(conf["secret_key"]),
            ),
            source="testcontainers",
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.environ.get("PIXELFLEET_KAFKA_BOOTSTRAP") and os.environ.get("PIXELFLEET_S3_ENDPOINT"):
        settings = Settings()
        yield Stack(kafka=settings.kafka, s3=settings.s3, source="environment")
        return
    if _docker_answers():
        yield from _testcontainers_stack()
        return
    dev = Settings().dev.model_copy(update={"data_dir": tmp_path_factory.mktemp("stack")})
    launcher = DevStack(dev, progress=print)
    try:
        info = launcher.up()
    except StackError as exc:
        pytest.fail(f"no Kafka + MinIO stack for the integration tests: {exc}", pytrace=False)
    try:
        settings = info.settings(Settings())
        yield Stack(kafka=settings.kafka, s3=settings.s3, source="devstack")
    finally:
        launcher.down()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names that no other test (or earlier run against the same stack) uses."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def kafka_admin(stack: Stack) -> AdminClient:
    return clients.admin(stack.kafka)


@pytest.fixture
def new_topic(kafka_admin: AdminClient, unique_name: Callable[[str], str]) -> Callable[..., str]:
    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name("t")
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        kafka_admin.create_topics([topic])[name].result(timeout=30)
        return name

    return make


@pytest.fixture
def new_group(unique_name: Callable[[str], str]) -> Callable[[], str]:
    return lambda: unique_name("g")


@pytest.fixture
def s3_client(stack: Stack) -> Minio:
    return clients.s3(stack.s3)


@pytest.fixture
def new_bucket(s3_client: Minio, unique_name: Callable[[str], str]) -> Callable[[], str]:
    def make() -> str:
        # S3 bucket names: 3-63 lowercase letters, digits and dashes.
        name = unique_name("b")[:63].rstrip("-")
        s3_client.make_bucket(name)
        return name

    return make
