from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.app.settings import Settings
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import fleet_settings, init_fleet
from tests.support.catalog_kit import CatalogProcess

Launch = Callable[..., Any]


@pytest.fixture
def catalog_fleet(stack: Stack, unique_name: Callable[[str], str]) -> Settings:
    settings = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("cat"))
    init_fleet(settings)
    return settings


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Starts catalog replicas for a fleet (waiting until ready); stops them all at the end."""
    started: list[CatalogProcess] = []

    def make(
        settings: Settings,
        *,
        store: str = "memory",
        data: str = "data",
        app_id: str | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> CatalogProcess:
        process = CatalogProcess(
            settings,
            tmp_path / data,
            app_id=app_id or f"{settings.topic_prefix}-catalog-{uuid.uuid4().hex[:4]}",
            store=store,
            extra=extra,
        )
        started.append(process.start())
        if wait:
            process.wait_ready(timeout=120)
        return process

    yield make
    for process in started:
        process.stop()
