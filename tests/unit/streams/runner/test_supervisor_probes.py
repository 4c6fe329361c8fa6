"""The probe server starts before the workers exist; until they do, it is not ready."""

from __future__ import annotations

from typing import cast

from streams.runner import supervisor
from streams.runner.worker import StageWorker


class _Worker:
    def __init__(self, ready: bool, why: str) -> None:
        self.answer = (ready, why)

    def ready(self) -> tuple[bool, str]:
        return self.answer


def test_no_worker_yet_is_not_ready() -> None:
    assert supervisor._ready([]) == (False, "starting: no worker made yet")


def test_ready_only_when_every_worker_is() -> None:
    up, loading = _Worker(True, "validate: running"), _Worker(False, "restore: loading models")
    both = cast(list[StageWorker], [up, loading])
    assert supervisor._ready(both) == (False, "validate: running\nrestore: loading models")
    loading.answer = (True, "restore: running")
    assert supervisor._ready(both)[0] is True
