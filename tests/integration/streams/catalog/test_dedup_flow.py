"""Work never done twice, through the real fleet: the catalog answers for content already
done, validate stops a URL whose bytes are known, new settings redo the work, and
near-duplicates are recorded."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
from PIL import Image

from schemas.events import Request
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.config.topics import Topics
from tests.conftest import Stack
from tests.integration.streams.catalog.conftest import Launch
from tests.integration.streams.fetch.test_fetch_stage import fetch_fleet
from tests.integration.streams.runner.fleet import init_fleet, read_topic, start_thread
from tests.support.catalog_kit import HEADERS, linked_to
from tests.support.http_servers import LoopbackServer
from tests.support.photos import big_photo, encode

pytestmark = pytest.mark.integration
FAST = {"restore": "none", "formats": ["webp"], "variants": ["preview"]}
STAGES = ("fetch", "validate", "categorize", "enhance", "compress")


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


def _done(settings: Settings, count: Counter[str], timeout: float = 180) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """The done events by image once there are at least `count` of each."""
    deadline = time.monotonic() + timeout
    seen: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        seen = {}
        for record in read_topic(settings, Topics(settings.topic_prefix).done):
            seen.setdefault(record.key, []).append(json.loads(record.value))
        if all(len(seen.get(k, [])) >= n for k, n in count.items()):
            return seen
        time.sleep(0.5)
    raise AssertionError(
        f"done events {Counter({k: len(v) for k, v in seen.items()})}, wanted {count}"
    )


def _catalog_record(http: httpx.Client, image_id: str, field: str, want: object) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    body: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        answer = http.get(f"/v1/images/{image_id}")
        body = answer.json()
        if answer.status_code == 200 and body.get(field) == want:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{image_id}: {field} is not {want!r} in {body}")


def _wait_known(http: httpx.Client, record: dict, image_id: str) -> None:  # type: ignore[type-arg]
    query = {"sha256": record["original"]["sha256"], "fingerprint": record["fingerprint"]}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if http.get("/v1/lookup", params=query).json()["duplicate_of"] == image_id:
            return
        time.sleep(0.3)
    raise AssertionError(f"the index never answered {image_id} for its content")


def _upload(http: httpx.Client, name: str, data: bytes, request: dict) -> httpx.Response:  # type: ignore[type-arg]
    meta = json.dumps({"request": request})
    return http.post(
        "/v1/images",
        files={"file": (name, data, "image/jpeg"), "meta": (None, meta, "application/json")},
    )


def test_known_content_is_not_processed_again_and_near_duplicates_are_recorded(
    stack: Stack,
    unique_name: Callable[[str], str],
    server: LoopbackServer,
    launch: Launch,
) -> None:
    fleet = fetch_fleet(stack, unique_name("dd"), server.port)
    init_fleet(fleet)
    catalog = launch(fleet)
    linked = linked_to(fleet, catalog.url)
    original = big_photo("coffee", 1400)
    data = encode(original, "JPEG", quality=90)
    server.serve_bytes("/shop/cup.jpg", data, content_type="image/jpeg")
    # The same scene smaller and recompressed (a near-duplicate), and another photo.
    smaller = encode(original.resize((840, 600), Image.Resampling.LANCZOS), "JPEG", quality=70)
    other = encode(big_photo("astronaut", 1400), "JPEG", quality=90)

    workers = [start_thread(linked, builtin(name, linked)) for name in STAGES]
    try:
        with httpx.Client(base_url=catalog.url, timeout=30, headers=HEADERS) as http:
            first = _upload(http, "cup.jpg", data, FAST)
            assert first.status_code == 202, first.text
            image_id = first.json()["image_id"]
            _done(linked, Counter({image_id: 1}))
            done_record = _catalog_record(http, image_id, "status", "done")
            # The index that answers for content is fed apart from the table: wait for it.
            _wait_known(http, done_record, image_id)

            # The same bytes again: answered with the finished image, nothing published.
            again = _upload(http, "cup-copy.jpg", data, FAST)
            assert (again.status_code, again.json()["duplicate_of"]) == (200, image_id)
            ingest = read_topic(linked, Topics(linked.topic_prefix).ingest)
            assert Counter(r.key for r in ingest)[image_id] == 1

            # The same bytes behind a URL: fetched and validated, then stopped.
            by_url = http.post(
                "/v1/images", json={"url": server.url("/shop/cup.jpg"), "request": FAST}
            )
            url_id = by_url.json()["image_id"]
            (url_done,) = _done(linked, Counter({url_id: 1}))[url_id]
            assert url_done["duplicate_of"] == image_id
            assert url_done["variants"] == done_record["variants"]
            url_record = _catalog_record(http, url_id, "status", "done")
            assert set(url_record["stages"]) == {"fetch", "validate"}
            assert url_record["duplicate_of"] == image_id

            # The same bytes under other settings: the work is done again.
            redo = _upload(http, "cup.jpg", data, {**FAST, "formats": ["jpeg"]})
            assert redo.status_code == 202 and redo.json()["image_id"] == image_id
            redone = _done(linked, Counter({image_id: 2}))[image_id][-1]
            assert {v["format"] for v in redone["variants"]} == {"jpeg"}

            near = _upload(http, "cup-small.jpg", smaller, FAST).json()["image_id"]
            unrelated = _upload(http, "moon.jpg", other, FAST).json()["image_id"]
            _done(linked, Counter({near: 1, unrelated: 1}))
            near_record = _catalog_record(http, near, "status", "done")
            unrelated_record = _catalog_record(http, unrelated, "status", "done")
    finally:
        for worker in workers:
            worker.stop()
    assert all(w.error is None for w in workers), [w.error for w in workers]
    matches = {m["image_id"]: m["distance"] for m in near_record["near_duplicates"]}
    assert image_id in matches and matches[image_id] <= linked.catalog.near_dup_distance
    assert near_record["duplicate_of"] is None  # recorded only: the default policy
    assert image_id not in {m["image_id"] for m in unrelated_record["near_duplicates"]}
    # What compress wrote: one set of variants per processing, none for the duplicates.
    assert len(_done(linked, Counter())[image_id]) == 2
    assert Request(**FAST).formats == ["webp"]
