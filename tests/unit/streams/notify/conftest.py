"""Fixtures shared by the notify unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.notify.delivery import Endpoint


@pytest.fixture
def halted() -> Iterator[list[Endpoint]]:
    """Endpoints to stop when the test ends, whatever it asserted."""
    made: list[Endpoint] = []
    yield made
    for endpoint in made:
        endpoint.halt()
        endpoint.join(2)
