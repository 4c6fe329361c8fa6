"""The catalog's table against the metadata topic: the same latest records, tombstones,
restarts that resume, and replicas that split the partitions and pass lookups on."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from schemas.events import ImageRecord, encode
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import latest_records
from tests.integration.streams.catalog.conftest import Launch
from tests.support.catalog_kit import API_KEY, CatalogProcess, fake_record, publish

pytestmark = pytest.mark.integration


def _records(count: int, seed: int = 1) -> list[ImageRecord]:
    rng = random.Random(seed)
    return [fake_record(f"img-{i:05d}", rng) for i in range(count)]


def _wait_for_count(catalog: CatalogProcess, images: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, stats = catalog.get("/v1/stats")
        if status == 200 and stats["images"] == images:
            return
        time.sleep(0.2)
    raise AssertionError(f"the catalog holds {catalog.get('/v1/stats')}, not {images} images")


def _wait_for_record(catalog: CatalogProcess, image_id: str, status: str | int) -> dict:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + 60
    found: tuple[int, object] = (0, None)
    while time.monotonic() < deadline:
        found = catalog.get(f"/v1/images/{image_id}")
        code, body = found
        if (isinstance(status, int) and code == status) or (
            code == 200 and isinstance(body, dict) and body["status"] == status
        ):
            return body if isinstance(body, dict) else {}
        time.sleep(0.2)
    raise AssertionError(f"{image_id}: {found}")


def test_the_view_holds_each_images_latest_record_and_tombstones_remove_it(
    catalog_fleet: Settings, launch: Launch
) -> None:
    first = _records(300)
    publish(catalog_fleet, first)
    catalog = launch(catalog_fleet)
    _wait_for_count(catalog, 300)
    # Later states of some images, and tombstones for others, after the catalog is up.
    updated = [msgspec.structs.replace(r, status="rejected") for r in first[:40]]
    publish(catalog_fleet, [*updated, *((r.image_id, None) for r in first[40:60])])
    _wait_for_count(catalog, 280)
    _wait_for_record(catalog, first[0].image_id, "rejected")

    latest = latest_records(catalog_fleet)
    assert len(latest) == 280
    for image_id, record in latest.items():
        code, body = catalog.get(f"/v1/images/{image_id}")
        assert code == 200, (image_id, body)
        assert body == json.loads(msgspec.json.encode(record)), image_id
    for gone in first[40:60]:
        assert catalog.get(f"/v1/images/{gone.image_id}")[0] == 404
    _, stats = catalog.get("/v1/stats")
    assert stats["by_status"] == {"done": 240, "rejected": 40}
    assert stats["near_duplicate_index"]["hashes"] == 280
    assert catalog.get(f"/v1/images?sha256={first[50].original['sha256']}")[1]["images"] == []


def test_a_restart_resumes_from_its_store_instead_of_reading_everything_again(
    catalog_fleet: Settings, launch: Launch
) -> None:
    records = _records(3000)
    publish(catalog_fleet, records)
    app_id = f"{catalog_fleet.topic_prefix}-resume"
    catalog = launch(catalog_fleet, store="rocksdb", app_id=app_id)
    assert catalog.metric("pixelfleet_catalog_records_applied_total", 'view="table"') == 3000
    catalog.stop()
    assert catalog.proc is not None and catalog.proc.returncode == 0, catalog.log_text()

    publish(catalog_fleet, _records(3000, seed=2)[:100])  # 100 new states of known images
    again = launch(catalog_fleet, store="rocksdb", app_id=app_id)
    applied = again.metric("pixelfleet_catalog_records_applied_total", 'view="table"')
    # What it missed, plus at most what it had applied but not committed when it stopped
    # (faust commits every few seconds), never the whole topic.
    assert 100 <= applied < 1000, applied
    body = _wait_for_record(again, records[5].image_id, "done")
    assert body["original"]["phash"] != records[5].original["phash"]  # the new state


def test_two_replicas_split_the_partitions_and_route_lookups_to_the_owner(
    catalog_fleet: Settings, launch: Launch
) -> None:
    records = _records(400)
    publish(catalog_fleet, records)
    app_id = f"{catalog_fleet.topic_prefix}-pair"
    a = launch(catalog_fleet, app_id=app_id, data="a", wait=False)
    b = launch(catalog_fleet, app_id=app_id, data="b", wait=False)
    a.wait_ready(120)
    b.wait_ready(120)
    held = [set(r.get("/readyz", auth=False)[1]["partitions"]) for r in (a, b)]
    assert held[0] and held[1] and not held[0] & held[1], held
    assert held[0] | held[1] == set(range(catalog_fleet.topics.partitions)), held
    # Both answer for every image, whichever replica holds it.
    asked = records[::7]
    for record in asked:
        for replica in (a, b):
            code, body = replica.get(f"/v1/images/{record.image_id}")
            assert code == 200, (replica.port, record.image_id, body)
            assert body == json.loads(msgspec.json.encode(record))
    labels = 'code="200",route="/v1/images/{image_id}"'
    served = sum(r.metric("pixelfleet_catalog_requests_total", labels) for r in (a, b))
    # Each replica answered every lookup sent to it, and the owner answered once more for
    # each one passed on to it: about half of them.
    passed_on = served - 2 * len(asked)
    assert 0.2 * len(asked) < passed_on < 1.8 * len(asked), served
    # A Bearer key is passed on to the owner as well as an X-API-Key is.
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    for record in records[:20]:
        for replica in (a, b):
            code, body = replica.get(f"/v1/images/{record.image_id}", headers=bearer)
            assert code == 200 and body["image_id"] == record.image_id, (replica.port, body)
    # An id with an escaped "?" is that id, passed on still escaped: never another
    # image's record (the owner once got "/v1/images/<id>?x" and answered for <id>).
    for record in records[:20]:
        for replica in (a, b):
            code, body = replica.get(f"/v1/images/{record.image_id}%3Fx")
            assert code == 404, (replica.port, record.image_id, body)
    # Each replica numbers its own list: one's cursor is refused by the other.
    _, page = a.get("/v1/images?limit=5")
    code, body = b.get(f"/v1/images?limit=5&cursor={page['cursor']}")
    assert (code, body["error"]) == (409, "stale_cursor"), body
    assert a.get(f"/v1/images?limit=5&cursor={page['cursor']}")[0] == 200
    # faust's own views of the table and of the cluster are not served, key or none.
    some = records[0].image_id
    for path in (f"/table/images/{some}/", "/table/", "/router/", f"/router/images/{some}/"):
        for auth in (True, False):
            code, _ = a.get(path, auth=auth)
            assert code == 404, (path, auth, code)


def test_records_of_an_aborted_transaction_never_show(
    catalog_fleet: Settings, launch: Launch
) -> None:
    catalog = launch(catalog_fleet)
    producer = clients.transactional_producer(
        catalog_fleet.kafka, f"{catalog_fleet.topic_prefix}-t"
    )
    producer.init_transactions(30)
    topic = Topics(catalog_fleet.topic_prefix).metadata
    aborted, committed = _records(2, seed=9)
    producer.begin_transaction()
    producer.produce(topic, key=aborted.image_id.encode(), value=encode(aborted))
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=committed.image_id.encode(), value=encode(committed))
    producer.commit_transaction(30)
    _wait_for_record(catalog, committed.image_id, "done")
    assert catalog.get(f"/v1/images/{aborted.image_id}")[0] == 404
    _wait_for_count(catalog, 1)
    sha = (aborted.original or {})["sha256"]
    assert catalog.get(f"/v1/images?sha256={sha}")[1]["images"] == []
