"""Running real `pixelfleet catalog` processes, and metadata records to feed them, for the
catalog's tests and benches."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from pydantic import SecretStr

from schemas.events import Category, ImageRecord, ObjectRef, StageState, Variant, encode
from streams.app.settings import Settings
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.devstack.procs import free_port
from streams.io import clients
from tests.integration.streams.runner.fleet import settings_env

API_KEY = "catalog-test-key"
HEADERS = {"X-API-Key": API_KEY}
# A second accepted key, the only one that may act (redrive, replay, delete); API_KEY reads.
ACTING_KEY = "catalog-acting-key"
ACTING = {"X-API-Key": ACTING_KEY}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hashes() -> str:
    return ",".join(_digest(k) for k in (API_KEY, ACTING_KEY))


def catalog_env(settings: Settings, **catalog: Any) -> dict[str, str]:
    """The environment of a catalog process for these settings (catalog.* as keywords)."""
    env = {
        **settings_env(settings),
        "PIXELFLEET_CATALOG_API_KEY_HASHES": key_hashes(),
        "PIXELFLEET_CATALOG_ACTING_KEY_HASHES": _digest(ACTING_KEY),
    }
    for name, value in catalog.items():
        env[f"PIXELFLEET_CATALOG_{name.upper()}"] = str(value)
    return env


@dataclass
class CatalogProcess:
    """One replica, started by start() and stopped (SIGTERM) by stop()."""

    settings: Settings
    data_dir: Path
    app_id: str
    store: str = "rocksdb"
    extra: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CatalogProcess:
        env = {
            **os.environ,
            **catalog_env(
                self.settings,
                port=self.port,
                data_dir=self.data_dir,
                app_id=self.app_id,
                store=self.store,
                advertised_url=self.url,
                **self.extra,
            ),
        }
        log = (self.data_dir.parent / f"catalog-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "catalog"], env=env, stdout=log, stderr=log
        )
        return self

    def log_text(self) -> str:
        path = self.data_dir.parent / f"catalog-{self.port}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def get(
        self,
        path: str,
        *,
        auth: bool = True,
        timeout: float = 10,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """GET with the API key (or `headers` instead of it, or nothing with auth=False)."""
        sent = headers if headers is not None else HEADERS if auth else {}
        request = urllib.request.Request(self.url + path, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                body = answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def wait_ready(self, timeout: float = 120) -> float:
        """Seconds until /readyz said 200; fails with the process's log if it never does."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the catalog exited {self.proc.returncode}:\n{self.log_text()}"
                )
            try:
                status, _ = self.get("/readyz", auth=False, timeout=2)
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the catalog was not ready in {timeout} s:\n{self.log_text()}")

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics, 0 if absent."""
        _, text = self.get("/metrics", auth=False)
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def fake_record(image_id: str, rng: random.Random, *, status: str = "done") -> ImageRecord:
    """A record shaped like a finished image's, about 1.5 KB of JSON."""
    sha = hashlib.sha256(image_id.encode()).hexdigest()
    obj = ObjectRef(bucket="pixelfleet-images", key=f"rings/web/{image_id}.webp", size=48_000)
    state = StageState(outcome="ok", started_at="2026-12-02T08:00:00.000Z", seconds=0.05)
    return ImageRecord(
        image_id=image_id,
        status=status,  # type: ignore[arg-type]
        updated_at="2026-12-02T08:00:01.000Z",
        stages={s: state for s in ("validate", "categorize", "enhance", "compress")},
        route=["validate", "categorize", "enhance", "compress"],
        original={
            "sha256": sha,
            "phash": f"{rng.getrandbits(64):016x}",
            "width": 1600,
            "height": 1200,
            "format": "JPEG",
            "bytes": 420_000,
            "notes": [],
        },
        quality={"sharpness": 180.5, "noise": 2.1, "resolution_score": 0.8},
        category=Category(name=rng.choice(["rings", "necklaces", "other"]), score=0.9),
        variants=[
            Variant(variant="web", format="webp", width=1200, height=900, bytes=48_000, object=obj)
        ],
        fingerprint="0123456789abcdef",
    )


def publish(settings: FleetSettings, records: Iterable[ImageRecord | tuple[str, None]]) -> int:
    """Writes records (or (image_id, None) tombstones) to the metadata topic in transactions
    of 5,000, as the stages do; the number written."""
    producer: Producer = clients.transactional_producer(
        settings.kafka, f"catalog-kit-{os.getpid()}-{time.monotonic_ns()}", **{"linger.ms": 20}
    )
    producer.init_transactions(30)
    topic = Topics(settings.topic_prefix).metadata
    count = 0
    producer.begin_transaction()
    for item in records:
        if isinstance(item, ImageRecord):
            producer.produce(topic, key=item.image_id.encode(), value=encode(item))
        else:
            producer.produce(topic, key=item[0].encode(), value=None)
        count += 1
        producer.poll(0)
        if count % 5000 == 0:
            producer.commit_transaction(60)
            producer.begin_transaction()
    producer.commit_transaction(60)
    return count


def fresh_fleet(local: FleetSettings, name: str, partitions: int) -> Settings:
    """Settings on the given stack with topics and buckets of a new prefix, initialised."""
    from streams.app import admin

    settings = Settings(
        kafka=local.kafka,
        s3=local.s3,
        topic_prefix=f"{name}{uuid.uuid4().hex[:6]}",
        topics={"partitions": partitions},  # type: ignore[arg-type]
    )
    admin.init(settings, clients.admin(settings.kafka), clients.s3(settings.s3))
    return settings


def linked_to(settings: Settings, url: str) -> Settings:
    """The fleet's settings with its catalog client pointed at a running catalog, so the
    workers ask it about known content (work deduplication)."""
    catalog = settings.catalog.model_copy(update={"url": url, "api_key": SecretStr(API_KEY)})
    return settings.model_copy(update={"catalog": catalog})
