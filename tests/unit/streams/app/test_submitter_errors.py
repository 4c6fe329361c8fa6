"""Submitter's own bookkeeping: a failed delivery is reported by one flush, not by every
flush after it, and an upload's file name always leaves a usable object key."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import Producer

from schemas.events import Hints, ImageRecord, Request, decoder, encode
from streams.app.submit import Submitter, object_file_name
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


class _Store:
    """Notes what was put, and its type."""

    def __init__(self) -> None:
        self.put: list[tuple[str, str]] = []

    def put_object(self, _bucket: str, key: str, *_: Any, content_type: str) -> None:
        self.put.append((key, content_type))


def test_bulky_hints_are_refused_before_the_upload_and_the_type_is_sniffed() -> None:
    store = _Store()
    producer = _Producer()
    submitter = Submitter(FleetSettings(), producer=cast(Producer, producer), s3=cast(Any, store))
    bulky = Hints(keywords=["k" * 1000] * 70)
    with pytest.raises(ValueError, match="hints and request may take 65,536 bytes"):
        submitter.upload_bytes_and_submit(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "a.png", hints=bulky)
    with pytest.raises(ValueError, match="65,536"):
        submitter.submit_url("https://images.example/c.jpg", hints=bulky)
    assert (store.put, producer.pending) == ([], [])
    # Stored as what the bytes are, whatever the name says.
    submitter.upload_bytes_and_submit(b"GIF89a<script>", "page.html")
    assert store.put == [(store.put[0][0], "image/gif")]
    assert len(producer.pending) == 1


def test_an_event_the_fleet_could_not_read_is_refused_before_anything_is_stored() -> None:
    store = _Store()
    producer = _Producer()
    submitter = Submitter(FleetSettings(), producer=cast(Producer, producer), s3=cast(Any, store))
    with pytest.raises(ValueError, match=r"image id 'my photo/1' may hold only letters, digits"):
        submitter.upload_bytes_and_submit(b"GIF89a" + b"\0" * 64, "a.gif", image_id="my photo/1")
    with pytest.raises(ValueError, match="could not read this event"):
        submitter.submit_url("HTTPS://images.example/d.jpg")  # the schema wants http(s)://
    assert (store.put, producer.pending) == ([], [])


def test_an_unknown_profile_is_refused_but_a_stored_record_with_one_still_decodes() -> None:
    producer = _Producer()
    submitter = Submitter(FleetSettings(), producer=cast(Producer, producer), s3=cast(Any, None))
    with pytest.raises(ValueError, match="no enhancement profile 'Product'"):
        submitter.submit_url("https://images.example/e.jpg", request=Request(profile="Product"))
    assert producer.pending == []
    # A record written before the check (its image rejected at enhance) must still read.
    old = ImageRecord(
        image_id="img-old", status="rejected", updated_at="2026-01-01T00:00:00.000Z",
        request=Request(profile="Product"),
    )  # fmt: skip
    assert decoder(ImageRecord).decode(encode(old)).request == Request(profile="Product")
