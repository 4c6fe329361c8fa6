"""The `dev` section of the settings: where `pixelfleet dev up` installs and runs the stack."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from streams.config.settings import FleetSettings, SettingsGroup


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixelfleet"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pixelfleet" / "dev"


class DevStackSettings(SettingsGroup):
    """Where and how `pixelfleet dev up` installs and runs the local stack."""

    cache_dir: Path = Field(default_factory=default_cache_dir)
    data_dir: Path = Field(default_factory=default_data_dir)
    kafka_version: str = "4.1.1"
    log4j_version: str = "2.24.3"
    minio_module_version: str = "v0.0.0-20260212201848-7aac2a2c5b7c"
    kafka_port: int = 0  # 0: a free port, reused across restarts of the same data dir
    minio_port: int = 0
    # Used the first time a data dir is created; otherwise a random secret is generated.
    minio_root_user: str | None = None
    minio_root_password: SecretStr | None = None
    kafka_heap_mb: int = 512
    start_timeout_s: float = 90.0

    @model_validator(mode="after")
    def _root_credentials_in_pairs(self) -> DevStackSettings:
        # One of the two alone used to be dropped without a word, and the stack came up
        # with generated credentials that the person did not expect.
        # Truthiness: an empty variable (`PIXELFLEET_DEV_MINIO_ROOT_PASSWORD=`) is unset too.
        password = self.minio_root_password.get_secret_value() if self.minio_root_password else ""
        if bool(self.minio_root_user) != bool(password):
            raise ValueError(
                "set both PIXELFLEET_DEV_MINIO_ROOT_USER and PIXELFLEET_DEV_MINIO_ROOT_PASSWORD,"
                " or neither (a generated secret is used then)"
            )
        return self


class LocalSettings(FleetSettings):
    """What a tool on a developer's machine reads: the fleet's settings plus where the
    local stack lives (`PIXELFLEET_DEV_*`). The application's Settings extends it."""

    dev: DevStackSettings = Field(default_factory=DevStackSettings)
