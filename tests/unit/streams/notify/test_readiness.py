"""The notify worker's readiness probe: not ready until its consumer has subscribed, ready
while it consumes, not ready again once it drains on the way out."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streams.config.notify import NotifySettings
from streams.config.settings import FleetSettings
from streams.io import clients
from streams.notify.worker import NotifyWorker

WAIT_S = 5.0  # bounded: a broken fix fails the test, never hangs it


class _Producer:
    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


class _Consumer:
    """Records what the probe said at subscribe and at close; tells the test it polls."""

    def __init__(self, worker: list[NotifyWorker]) -> None:
        self._worker = worker
        self.ready_at_subscribe: bool | None = None
        self.ready_at_close: tuple[bool, str] | None = None
        self.polled = threading.Event()

    def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
        self.ready_at_subscribe = self._worker[0].ready()[0]

    def consume(self, _n: int, timeout: float) -> list[Any]:
        self.polled.set()
        threading.Event().wait(min(timeout, 0.01))
        return []

    def close(self) -> None:
        self.ready_at_close = self._worker[0].ready()


def test_ready_only_between_subscribe_and_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = NotifyWorker(FleetSettings(notify=NotifySettings()))
    consumer = _Consumer([worker])
    monkeypatch.setattr(clients, "producer", lambda *_a, **_k: _Producer())
    monkeypatch.setattr(clients, "consumer", lambda *_a, **_k: consumer)
    monkeypatch.setattr(NotifyWorker, "ensure_dlq_topic", lambda _self: None)
    assert worker.ready() == (False, "starting")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert consumer.polled.wait(WAIT_S)
    assert consumer.ready_at_subscribe is False  # set only once subscribed
    assert worker.ready()[0] is True
    worker.stop()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    # Cleared as the drain began, before the group was left.
    assert consumer.ready_at_close == (False, "stopping")
    assert worker.ready() == (False, "stopping")
