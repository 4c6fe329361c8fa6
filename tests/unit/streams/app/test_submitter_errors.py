"""Submitter's own bookkeeping: a failed delivery is reported by one flush, not by every
flush after it, and an upload's file name always leaves a usable object key."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import Producer

from streams.app.submit import Submitter, object_file_name, safe_image_id
from streams.config.settings import FleetSettings


class _Message:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        return self._key


class _Producer:
    """Keeps the delivery callbacks and fires them at flush, the first one failed."""

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, Any]] = []
        self.failures = 1

    def produce(self, topic: str, key: bytes, on_delivery: Any, **_: Any) -> None:
        self.pending.append((key, on_delivery))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for key, callback in self.pending:
            failed = self.failures > 0
            self.failures -= failed
            callback("broker said no" if failed else None, _Message(key))
        self.pending.clear()
        return 0


def test_a_failed_delivery_fails_one_flush_and_not_the_ones_after_it() -> None:
    producer = _Producer()
    submitter = Submitter(FleetSettings(), producer=cast(Producer, producer), s3=cast(Any, None))
    submitter.submit_url("https://images.example/a.jpg")
    with pytest.raises(RuntimeError, match="1 events failed"):
        submitter.flush(1)
    submitter.submit_url("https://images.example/b.jpg")
    submitter.flush(1)  # b was delivered: nothing to report
    assert submitter.errors == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cup.jpg", "cup.jpg"), ("..", "upload"), ("---", "upload"), ("a b/c.png", "a-b-c.png")],
)
def test_an_upload_name_always_gives_an_object_name(name: str, expected: str) -> None:
    assert object_file_name(name) == expected


def test_an_image_id_is_still_refused_when_nothing_of_the_name_is_left() -> None:
    with pytest.raises(ValueError, match="cannot make an image id"):
        safe_image_id("..")
