"""What validate decides from the catalog's answers: a local HTTP server plays the catalog
with fixed answers, so each decision is checked without a broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlparse

import pytest

from schemas.events import (
    Envelope,
    ImageRecord,
    ImageSubmitted,
    ObjectRef,
    Request,
    Source,
    Variant,
    encode,
)
from streams.stages import dedup
from streams.stages.dedup import CatalogLink

DONE = ImageRecord(
    image_id="first",
    status="done",
    updated_at="2026-12-02T08:00:00Z",
    fingerprint="f" * 16,  # the settings of the image asking, in _envelope
    variants=[
        Variant(
            variant="web", format="webp", width=10, height=10, bytes=5,
            object=ObjectRef(bucket="pixelfleet-images", key="other/web/first.webp"),
        )
    ],
)  # fmt: skip


class _Catalog(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, Any]] = {}
    asked: ClassVar[list[dict[str, list[str]]]] = []
    records_read: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/v1/lookup":
            type(self).asked.append(parse_qs(url.query))
            lookup = self.answers["lookup"]
            body = lookup if isinstance(lookup, bytes) else json.dumps(lookup).encode()
            status = 200
        else:
            image_id = url.path.rsplit("/", 1)[-1]
            type(self).records_read.append(image_id)
            found = self.answers["records"].get(image_id)
            raw = found if isinstance(found, bytes) else encode(found) if found else None
            missing = b'{"error": "not_found"}'  # the catalog's own 404
            body, status = (raw, 200) if raw is not None else (missing, 404)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def catalog() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catalog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Catalog.asked = []
    _Catalog.records_read = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _link(url: str, policy: Literal["record", "skip"] = "record") -> CatalogLink:
    return CatalogLink(url, "key", 2.0, near_dup_distance=8, near_dup_policy=policy)


def _envelope(force: bool = False) -> Envelope:
    submitted = ImageSubmitted(
        image_id="second", source=Source(url="https://example.org/a.jpg"),
        submitted_at="2026-12-02T09:00:00Z", request=Request(force=force),
    )  # fmt: skip
    record = ImageRecord(
        image_id="second", status="processing", updated_at="2026-12-02T09:00:00Z",
        fingerprint="f" * 16,
    )  # fmt: skip
    return Envelope(submitted=submitted, route=["fetch", "validate", "compress"], record=record)


def _answers(duplicate_of: str | None, near: list[tuple[str, int]]) -> None:
    _Catalog.answers = {
        "lookup": {
            "duplicate_of": duplicate_of,
            "near_duplicates": [{"image_id": i, "distance": d} for i, d in near],
        },
        "records": {"first": DONE},
    }


def test_finished_content_makes_a_duplicate_that_stops_after_validate(catalog: str) -> None:
    _answers("first", [("first", 0)])
    envelope = _envelope()
    verdict = dedup.ask(_link(catalog), envelope, "ab" * 32, "00ff00ff00ff00ff")
    assert verdict.duplicate_of is not None and verdict.duplicate_of.image_id == "first"
    dedup.mark_duplicate(envelope, verdict.duplicate_of)
    assert envelope.record.duplicate_of == "first"
    assert envelope.record.variants == DONE.variants
    assert envelope.route == ["fetch", "validate"]
    (asked,) = _Catalog.asked
    assert asked["sha256"] == ["ab" * 32] and asked["fingerprint"] == ["f" * 16]
    assert asked["exclude"] == ["second"] and asked["max_distance"] == ["8"]


def test_near_duplicates_are_only_recorded_unless_the_policy_skips(catalog: str) -> None:
    _answers(None, [("first", 5)])
    recorded = dedup.ask(_link(catalog), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert recorded.duplicate_of is None
    assert [(n.image_id, n.distance) for n in recorded.near] == [("first", 5)]
    skipped = dedup.ask(_link(catalog, "skip"), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert skipped.duplicate_of is not None and skipped.duplicate_of.image_id == "first"


def test_force_the_image_itself_and_unfinished_work_are_never_duplicates(catalog: str) -> None:
    _answers("first", [])
    assert dedup.ask(_link(catalog), _envelope(force=True), "ab" * 32, None).duplicate_of is None
    _answers("second", [])  # this very image, done before: done again
    assert dedup.ask(_link(catalog), _envelope(), "ab" * 32, None).duplicate_of is None
    _answers("first", [])
    _Catalog.answers["records"] = {"first": ImageRecord(
        image_id="first", status="processing", updated_at="2026-12-02T08:00:00Z"
    )}  # fmt: skip
    assert dedup.ask(_link(catalog), _envelope(), "ab" * 32, None).duplicate_of is None


def test_an_unreachable_catalog_means_the_image_is_processed_as_new() -> None:
    verdict = dedup.ask(_link("http://127.0.0.1:9"), _envelope(), "ab" * 32, None)
    assert verdict.duplicate_of is None and verdict.near == []
    assert verdict.note is not None and verdict.note.startswith("catalog unavailable")


def test_a_client_that_cannot_be_built_means_the_image_is_processed_as_new() -> None:
    # A key no HTTP header can carry fails when the client is built, before any request.
    link = CatalogLink(
        "http://127.0.0.1:9", "clé", 2.0, near_dup_distance=8, near_dup_policy="skip"
    )
    verdict = dedup.ask(link, _envelope(), "ab" * 32, None)
    assert verdict.duplicate_of is None and verdict.near == []
    assert verdict.note is not None and verdict.note.startswith("catalog unavailable")


def _done(image_id: str, fingerprint: str = "f" * 16, **fields: Any) -> ImageRecord:
    return ImageRecord(
        image_id=image_id, status=fields.pop("status", "done"),
        updated_at="2026-12-02T08:00:00Z", fingerprint=fingerprint,
        variants=DONE.variants, **fields,
    )  # fmt: skip


def test_skip_walks_the_near_duplicates_to_the_first_that_can_stand_in(catalog: str) -> None:
    _answers(None, [("busy", 1), ("other-settings", 2), ("copy", 3), ("good", 4), ("far", 5)])
    _Catalog.answers["records"] = {
        "busy": _done("busy", status="processing"),  # still under way: passed over
        "other-settings": _done("other-settings", fingerprint="0" * 16),  # not what was asked
        "copy": _done("copy", duplicate_of="first"),  # a stand-in itself
        "good": _done("good"),
        "far": _done("far"),
    }
    verdict = dedup.ask(_link(catalog, "skip"), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert verdict.duplicate_of is not None and verdict.duplicate_of.image_id == "good"
    assert _Catalog.records_read == ["busy", "other-settings", "copy", "good"]  # not "far"
    # None of them fits: the image is processed as new, every near one still recorded.
    _Catalog.answers["records"] = {"busy": _done("busy", status="processing")}
    verdict = dedup.ask(_link(catalog, "skip"), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert verdict.duplicate_of is None and len(verdict.near) == 5


def test_a_near_duplicate_under_other_settings_never_stands_in_for_an_exact_one(
    catalog: str,
) -> None:
    # The exact duplicate is still under way: no near one is taken in its place.
    _answers("first", [("near", 1)])
    _Catalog.answers["records"] = {
        "first": _done("first", status="processing"),
        "near": _done("near"),
    }
    verdict = dedup.ask(_link(catalog, "skip"), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert verdict.duplicate_of is None and _Catalog.records_read == ["first"]


@pytest.mark.parametrize(
    ("lookup", "record"),
    [
        (b"<html>proxy login</html>", None),  # a 200 that is not the catalog's JSON
        (b'["not", "an", "object"]', None),
        ({"duplicate_of": "first", "near_duplicates": []}, b'{"image_id": 7}'),  # no record
        ({"duplicate_of": "first", "near_duplicates": []}, b"not json"),
        ({"duplicate_of": "first", "near_duplicates": []}, b'{"image_id": "first"}'),
    ],
)
def test_an_unreadable_catalog_answer_means_the_image_is_processed_as_new(
    catalog: str, lookup: Any, record: bytes | None
) -> None:
    _Catalog.answers = {"lookup": lookup, "records": {"first": record} if record else {}}
    verdict = dedup.ask(_link(catalog, "skip"), _envelope(), "ab" * 32, "00ff00ff00ff00ff")
    assert verdict.duplicate_of is None and verdict.near == []
    assert verdict.note is not None
    assert verdict.note.startswith(("catalog unavailable", "catalog answer unreadable"))
