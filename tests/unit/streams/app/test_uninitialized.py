"""Which missing topics stop a day-two command: absent ones, not ones ACLs hide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streams.app import preflight
from streams.config.settings import FleetSettings


@dataclass
class _Topic:
    error: KafkaError | None = None


@dataclass
class _Metadata:
    topics: dict[str, _Topic] = field(default_factory=dict)


class _Admin:
    """A cluster whose full listing shows `visible`; asked by name, a topic in `denied`
    answers TOPIC_AUTHORIZATION_FAILED, any other UNKNOWN_TOPIC_OR_PART."""

    def __init__(self, visible: set[str], denied: set[str]) -> None:
        self.visible, self.denied = visible, denied
        self.config: dict[str, Any] = {}

    def list_topics(self, topic: str | None = None, timeout: float = 0) -> _Metadata:
        if topic is None:
            return _Metadata({name: _Topic() for name in self.visible})
        code = (
            KafkaError.TOPIC_AUTHORIZATION_FAILED
            if topic in self.denied
            else KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        return _Metadata({topic: _Topic(KafkaError(code))})


def _with(monkeypatch: pytest.MonkeyPatch, admin: _Admin) -> None:
    def make(_kafka: object, **extra: Any) -> _Admin:
        admin.config = extra
        return admin

    monkeypatch.setattr(preflight.clients, "admin", make)


def test_a_topic_the_listing_hides_from_this_principal_is_not_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = FleetSettings(topic_prefix="px")
    admin = _Admin(visible={"px.ingest"}, denied={"px.metadata", "px.dlq"})
    _with(monkeypatch, admin)
    assert preflight.uninitialized(settings) is None
    assert admin.config == {"allow.auto.create.topics": False}  # asking creates nothing


def test_an_absent_topic_names_itself_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FleetSettings(topic_prefix="px")
    _with(monkeypatch, _Admin(visible={"px.ingest", "px.dlq"}, denied=set()))
    why = preflight.uninitialized(settings)
    assert why is not None and why.startswith("no topic px.metadata on ")
    assert "run `pixelfleet init`, or check PIXELFLEET_TOPIC_PREFIX (now 'px')" in why
    assert preflight.uninitialized(settings, ["px.dlq"]) is None  # only what a command reads
