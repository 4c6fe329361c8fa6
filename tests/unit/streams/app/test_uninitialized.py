"""Which topics stop a day-two command: those it reads that the cluster does not list."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from streams.app import preflight
from streams.config.settings import FleetSettings


@dataclass
class _Metadata:
    topics: dict[str, object] = field(default_factory=dict)


class _Admin:
    """A cluster whose listing shows `visible` (to a principal with Read or Write on a
    topic, Kafka shows it: those imply Describe)."""

    def __init__(self, visible: set[str]) -> None:
        self.visible = visible
        self.asked: list[str | None] = []

    def list_topics(self, topic: str | None = None, timeout: float = 0) -> _Metadata:
        self.asked.append(topic)
        return _Metadata({name: object() for name in self.visible})


def _with(monkeypatch: pytest.MonkeyPatch, admin: _Admin) -> None:
    def make(_kafka: object) -> _Admin:
        return admin

    monkeypatch.setattr(preflight.clients, "admin", make)


def test_an_absent_topic_names_itself_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FleetSettings(topic_prefix="px")
    admin = _Admin({"px.ingest", "px.dlq"})
    _with(monkeypatch, admin)
    why = preflight.uninitialized(settings)
    assert why is not None and why.startswith("no topic px.metadata on ")
    assert "run `pixelfleet init`, or check PIXELFLEET_TOPIC_PREFIX (now 'px')" in why
    assert preflight.uninitialized(settings, ["px.dlq"]) is None  # only what a command reads
    assert admin.asked == [None, None]  # the whole listing: never a topic by name


def test_every_topic_listed_is_a_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    _with(monkeypatch, _Admin({"px.ingest", "px.metadata", "px.dlq"}))
    assert preflight.uninitialized(FleetSettings(topic_prefix="px")) is None
