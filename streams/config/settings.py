"""The settings every fleet process needs: Kafka, S3, buckets, topics and the runner.

`FleetSettings` is all a stage worker reads. The application's whole model
(`streams.app.settings.Settings`) extends it with the stages' parameters and the dev stack;
that lives above the runner so a worker never loads stage code just to read its config.

Values come, strongest first, from constructor arguments, `PIXELFLEET_*`
environment variables (the Kubernetes way), and an optional TOML or YAML file
named by `PIXELFLEET_CONFIG`. Nested groups use one underscore after the group
name, so `PIXELFLEET_KAFKA_BOOTSTRAP` sets `kafka.bootstrap`.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streams.config.notify import NotifySettings
from streams.config.urls import http_url_problem, redact_url

CONFIG_ENV = "PIXELFLEET_CONFIG"


class SettingsGroup(BaseModel):
    """A section of the settings: immutable, and a misspelt key is an error, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(SettingsGroup):
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    client_id: str = "pixelfleet"

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka keys shared by every producer, consumer and admin client."""
        conf = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class S3Settings(SettingsGroup):
    endpoint: str = "http://127.0.0.1:9000"
    access_key: str = "minioadmin"
    secret_key: SecretStr = SecretStr("minioadmin")
    region: str = "us-east-1"

    @property
    def secure(self) -> bool:
        # Schemes are case-insensitive (RFC 3986): HTTPS:// must not mean plain HTTP.
        return self.endpoint[:8].lower() == "https://"

    @property
    def host(self) -> str:
        """The endpoint as the minio client wants it: host:port, no scheme."""
        return self.endpoint.split("://", 1)[-1].rstrip("/")


class BucketSettings(SettingsGroup):
    incoming: str = "pixelfleet-incoming"
    work: str = "pixelfleet-work"
    images: str = "pixelfleet-images"
    quarantine: str = "pixelfleet-quarantine"
    work_expiry_days: int = Field(default=1, ge=1)


class RunnerSettings(SettingsGroup):
    """How a stage worker consumes, batches, retries and stops."""

    # Stable per replica: a restarted replica fences and aborts its predecessor's open
    # transaction at once. Default: the host name (the pod name on Kubernetes).
    replica_id: str = Field(default_factory=socket.gethostname)
    # An upper bound; the time budget shrinks batches of slow stages well below it. Large
    # batches spread the cost of a transaction commit (tens of ms) over many messages.
    batch_max: int = Field(default=5000, ge=1)
    # The input blobs one batch holds in memory at most, by their recorded sizes (a batch
    # always takes its first message, however large). Blobs are up to tens of MB each.
    batch_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    # The time one batch may take, processing through commit. Kept well under the poll
    # interval; the batch size adapts to it.
    batch_budget_s: float = Field(default=20.0, gt=0)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    # CPU work runs in a process pool of this many workers (0: one per CPU the container
    # may use, from its affinity and cgroup quota; see streams.runner.cpus).
    pool_workers: int = Field(default=0, ge=0)
    # A message that kills a pool process this many times is dead-lettered.
    crash_attempts: int = Field(default=3, ge=1)
    # Per message: a stage function running longer than this counts as a crash.
    message_timeout_s: float = Field(default=120.0, gt=0)
    # Address-space limit of each pool process, so no input can exhaust the node (0: none).
    memory_limit_mb: int = Field(default=4096, ge=0)
    # This many permanent failures in a row halt the stage instead of draining into the DLQ.
    halt_after_failures: int = Field(default=50, ge=1)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # SIGTERM: stop fetching, finish or abort the batch, commit, leave the group within this.
    grace_s: float = Field(default=30.0, gt=0)
    metrics_port: int = Field(default=9400, ge=0, le=65535)  # 0: no HTTP server
    io_threads: int = Field(default=8, ge=1)


class TopicSettings(SettingsGroup):
    partitions: int = Field(default=12, ge=1)
    retention_days: int = Field(default=7, ge=1)


class CatalogSettings(SettingsGroup):
    """The catalog service (`pixelfleet catalog`) and how its clients reach it."""

    # Where the CLI and the stages find the catalog; unset: nobody asks it (no
    # deduplication, `status` reads the topic itself).
    url: str | None = None
    # The key clients send as X-API-Key.
    api_key: SecretStr | None = None
    # The server's side: sha256 hex digests of the accepted keys, comma-separated, so the
    # secret that holds them never holds a usable key. Empty: every /v1 request is refused.
    api_key_hashes: str = ""
    # Of those, the keys that may also act from the API and the console (redrive a dead
    # letter, replay or delete an image): sha256 hex digests, comma-separated. A key listed
    # here and not in api_key_hashes is refused like any unknown key. Empty: nobody acts.
    acting_key_hashes: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=6066, ge=1, le=65535)
    # The URL other replicas reach this one at (default: http://host:port).
    advertised_url: str | None = None
    data_dir: Path = Path(".pixelfleet/catalog")
    store: Literal["rocksdb", "memory"] = "rocksdb"
    # The faust app id: the consumer group replicas share and the changelog topic's prefix.
    # Default: "<topic_prefix>-catalog", so two fleets on one broker never share it.
    app_id: str | None = None
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    presign_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Where clients reach S3, when by another name than the fleet: host:port (the fleet's
    # scheme), or a URL whose scheme wins (https://images.shop behind TLS while the fleet
    # talks plain http inside). Presigned URLs and the console's image policy use it.
    public_s3_endpoint: str | None = None
    # Near-duplicates: perceptual hashes this many bits apart or closer; `skip` treats a
    # near-duplicate like an exact one (not processed again), `record` only notes it.
    near_dup_distance: int = Field(default=8, ge=0, le=32)
    near_dup_policy: Literal["record", "skip"] = "record"

    @field_validator("url")
    @classmethod
    def _url_is_usable(cls, value: str | None) -> str | None:
        # Checked here, not at the first request: a URL the HTTP client cannot parse (a raw
        # "/" in the password) would otherwise turn deduplication off with a warning at
        # best, and the parser's message quotes part of the password.
        if not value:
            return None
        problem = http_url_problem(value)
        if problem is not None:
            raise ValueError(f"PIXELFLEET_CATALOG_URL {redact_url(value)}: {problem}")
        return value

    @field_validator("public_s3_endpoint")
    @classmethod
    def _endpoint_is_a_host(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme, sep, rest = value.partition("://")
        host = rest if sep else value
        if sep and scheme not in ("http", "https"):
            raise ValueError(f"the scheme is http or https, not {scheme!r}")
        if not host.rstrip("/") or "/" in host.rstrip("/"):
            raise ValueError(f"{value!r} is host:port or a scheme and host:port, with no path")
        return value.rstrip("/")

    def public_s3(self, s3: S3Settings) -> tuple[str, bool]:
        """The host:port and https-or-not that clients use to reach S3."""
        given = self.public_s3_endpoint
        if not given:
            return s3.host, s3.secure
        scheme, sep, host = given.partition("://")
        return (host, scheme == "https") if sep else (given, s3.secure)

    # How long a client (CLI, validate) waits for an answer before going on without one.
    client_timeout_s: float = Field(default=2.0, gt=0)
    # The Prometheus that scrapes the fleet (the one Grafana reads), e.g.
    # http://prometheus:9090. The console's Fleet page shows its throughput, in-flight,
    # latency and replica figures; unset, those figures are left blank.
    prometheus_url: str | None = None

    def app_name(self, topic_prefix: str) -> str:
        return self.app_id or f"{topic_prefix}-catalog"

    def accepted_key_hashes(self) -> frozenset[str]:
        return _hashes(self.api_key_hashes)

    def acting_hashes(self) -> frozenset[str]:
        return _hashes(self.acting_key_hashes) & self.accepted_key_hashes()


def _hashes(text: str) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in text.split(",") if h.strip())


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML or YAML file named by PIXELFLEET_CONFIG, if any."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_ENV)
        self._data = load_config_file(Path(path)) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV} points at {path}, which is not a file")
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level of a config file must be a mapping")
    return data


class FleetSettings(BaseSettings):
    """What the runner, the clients and the topic reader need; nothing stage-specific."""

    model_config = SettingsConfigDict(
        env_prefix="PIXELFLEET_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        frozen=True,
        extra="ignore",
    )

    topic_prefix: str = "pixelfleet"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    buckets: BucketSettings = Field(default_factory=BucketSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))
