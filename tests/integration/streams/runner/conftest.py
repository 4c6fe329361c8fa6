from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.app.settings import Settings
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import fleet_settings, init_fleet


@pytest.fixture
def make_fleet(stack: Stack, unique_name: Callable[[str], str]) -> Callable[..., Settings]:
    """A fleet on its own topics and buckets, initialised with `pixelfleet init`."""

    def make(**runner: object) -> Settings:
        base = Settings(kafka=stack.kafka, s3=stack.s3)
        settings = fleet_settings(base, unique_name("pf"), **runner)
        init_fleet(settings)
        return settings

    return make
