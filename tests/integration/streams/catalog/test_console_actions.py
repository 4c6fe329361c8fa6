"""The catalog's actions against a real replica, broker and MinIO: a key that may only read
is refused with 403 and nothing changes; the acting key redrives a dead letter (re-sent
once), replays an image (one more message on the inbox it starts from) and deletes an image
(every object gone from MinIO, tombstones on the metadata topic)."""

from __future__ import annotations

import io
import time
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest

from schemas.events import DeadLetter, ImageSubmitted, Source, encode
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients
from streams.runner.records import SCHEMA_HEADER
from tests.integration.streams.catalog.conftest import Launch
from tests.integration.streams.ops import seed
from tests.integration.streams.runner.fleet import read_topic
from tests.support.catalog_kit import ACTING, HEADERS, CatalogProcess, publish

pytestmark = pytest.mark.integration


def _counts(settings: Settings, topic: str) -> Counter[str]:
    return Counter(r.key for r in read_topic(settings, topic))


def _produce(settings: Settings, topic: str, key: str, value: bytes, kind: str) -> None:
    producer = clients.producer(settings.kafka)
    producer.produce(topic, key=key.encode(), value=value, headers=[(SCHEMA_HEADER, kind)])
    assert producer.flush(30) == 0


def _until_known(catalog: CatalogProcess, image_id: str, known: bool = True) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _ = catalog.get(f"/v1/images/{image_id}")
        if (status == 200) == known:
            return
        time.sleep(0.3)
    raise AssertionError(f"{image_id} {'never appeared' if known else 'never went'}")


def _submission(settings: Settings, image_id: str) -> ImageSubmitted:
    s3 = clients.s3(settings.s3)
    ref = seed.put(s3, settings.buckets.incoming, f"{image_id}/photo.jpg", 500)
    return ImageSubmitted(
        image_id=image_id, source=Source(object=ref), submitted_at="2026-12-02T08:00:00Z"
    )


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "not_allowed_to_act"
    assert "ACTING_KEY_HASHES" in body["message"]


def test_the_acting_key_deletes_an_image_and_its_duplicate(
    catalog_fleet: Settings, launch: Launch
) -> None:
    s3 = clients.s3(catalog_fleet.s3)
    b = catalog_fleet.buckets
    first = seed.image(catalog_fleet, s3, "act-del-1")
    first.original = {"sha256": "ab" * 32, "format": "JPEG"}
    copy = seed.image(catalog_fleet, s3, "act-del-2", duplicate_of="act-del-1")
    copy.original = {"sha256": "ab" * 32}
    keep = seed.image(catalog_fleet, s3, "act-keep")
    publish(catalog_fleet, [first, copy, keep])
    catalog = launch(catalog_fleet)
    _until_known(catalog, "act-del-2")
    before = {bucket: _keys(s3, bucket) for bucket in (b.incoming, b.work, b.images)}
    with httpx.Client(base_url=catalog.url, timeout=120) as http:
        assert http.get("/v1/access", headers=HEADERS).json() == {"read": True, "act": False}
        assert http.get("/v1/access", headers=ACTING).json() == {"read": True, "act": True}
        original = http.get("/v1/images/act-del-1/original", headers=HEADERS).json()
        assert "act-del-1/photo.jpg" in original["url"] and "X-Amz-Signature=" in original["url"]
        # Served as the JPEG validate found, even if stored under another type.
        stored = clients.read_object(s3, b.incoming, "act-del-1/photo.jpg")
        s3.put_object(b.incoming, "act-del-1/photo.jpg", io.BytesIO(stored), len(stored),
                      content_type="text/html")  # fmt: skip
        served = httpx.get(original["url"], timeout=10)
        assert (served.status_code, served.content) == (200, stored)
        assert served.headers["Content-Type"] == "image/jpeg"
        kept = http.get("/v1/images/act-del-2/original", headers=HEADERS).json()
        assert kept["url"] is None and "not stored" in kept["why"]  # a duplicate keeps none
        _refused(http.delete("/v1/images/act-del-1", headers=HEADERS))
        assert {bucket: _keys(s3, bucket) for bucket in before} == before

        plan = http.delete("/v1/images/act-del-1?dry_run=1", headers=ACTING)
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert body["deleted"] is False
        assert [i["image_id"] for i in body["images"]] == ["act-del-1", "act-del-2"]
        assert body["objects"] == seed.OBJECTS_PER_IMAGE
        assert body["bytes"] == seed.BYTES_PER_IMAGE
        assert "duplicate of act-del-1" in body["images"][1]["note"]
        assert _keys(s3, b.images) == before[b.images]

        done = http.delete("/v1/images/act-del-1", headers=ACTING)
        assert done.status_code == 200, done.text
        assert done.json()["deleted"] is True
    every = [
        o for bucket in (b.incoming, b.work, b.quarantine, b.images) for o in _keys(s3, bucket)
    ]
    assert not [k for k in every if "act-del-" in k], every
    assert [k for k in every if "act-keep" in k]  # another image's objects stay
    metadata = read_topic(catalog_fleet, Topics(catalog_fleet.topic_prefix).metadata)
    tombstones = Counter(r.key for r in metadata if not r.value)
    assert tombstones == Counter({"act-del-1": 1, "act-del-2": 1})
    _until_known(catalog, "act-del-1", known=False)
    assert catalog.get("/v1/images/act-del-1/original")[0] == 404
    assert catalog.get("/v1/images/act-keep")[0] == 200


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))


def test_the_acting_key_replays_an_image_from_the_stage_it_can(
    catalog_fleet: Settings, launch: Launch
) -> None:
    topics = Topics(catalog_fleet.topic_prefix)
    submitted = _submission(catalog_fleet, "act-replay")
    _produce(catalog_fleet, topics.ingest, "act-replay", encode(submitted), "image_submitted/1")
    s3 = clients.s3(catalog_fleet.s3)
    record = seed.image(catalog_fleet, s3, "act-replay")
    busy = seed.image(catalog_fleet, s3, "act-busy", status="processing")
    publish(catalog_fleet, [record, busy])
    catalog = launch(catalog_fleet)
    _until_known(catalog, "act-busy")
    with httpx.Client(base_url=catalog.url, timeout=120) as http:
        _refused(http.post("/v1/images/act-replay/replay", headers=HEADERS, json={}))
        # Nothing of it on enhance's inbox: the plan says it starts over at validate.
        plan = http.post(
            "/v1/images/act-replay/replay",
            headers=ACTING,
            json={"stage": "enhance", "dry_run": True},
        )
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert (body["asked_stage"], body["stage"], body["sent"]) == ("enhance", "validate", False)
        assert "from validate" in body["note"]
        assert _counts(catalog_fleet, topics.ingest)["act-replay"] == 1

        sent = http.post("/v1/images/act-replay/replay", headers=ACTING, json={"stage": "validate"})
        assert sent.status_code == 202, sent.text
        assert sent.json()["sent"] is True and sent.json()["replay_id"].startswith("p-")
        busy_answer = http.post("/v1/images/act-busy/replay", headers=ACTING, json={})
        assert (busy_answer.status_code, busy_answer.json()["error"]) == (409, "still_processing")
        wrong = http.post("/v1/images/act-replay/replay", headers=ACTING, json={"stage": "paint"})
        assert wrong.status_code == 400
    assert _counts(catalog_fleet, topics.ingest) == Counter({"act-replay": 2})
    replayed = msgspec.json.decode(read_topic(catalog_fleet, topics.ingest)[-1].value)
    assert replayed["request"]["force"] is True


def test_the_acting_key_redrives_a_dead_letter_once(
    catalog_fleet: Settings, launch: Launch
) -> None:
    topics = Topics(catalog_fleet.topic_prefix)
    submitted = _submission(catalog_fleet, "act-dead")
    letter = DeadLetter(
        image_id="act-dead",
        stage="validate",
        reason_class="too_small",
        reason="the test's refusal",
        topic=topics.ingest,
        partition=0,
        offset=0,
        attempts=1,
        at="2026-12-02T08:00:00Z",
        original=encode(submitted).decode(),
    )
    _produce(catalog_fleet, topics.dlq, "act-dead", encode(letter), "dead_letter/1")
    catalog = launch(catalog_fleet)
    with httpx.Client(base_url=catalog.url, timeout=120) as http:
        listed = http.get("/v1/dlq?stage=validate&reason=too_small", headers=HEADERS).json()
        assert listed["count"] == 1
        [shown] = listed["letters"]
        assert (shown["image_id"], shown["redriven_by"]) == ("act-dead", None)
        position = shown["letter"]
        _refused(http.post(f"/v1/dlq/{position}/redrive", headers=HEADERS))
        assert _counts(catalog_fleet, topics.ingest)["act-dead"] == 0

        first = http.post(f"/v1/dlq/{position}/redrive", headers=ACTING)
        assert first.status_code == 200, first.text
        assert first.json()["to_topic"] == topics.ingest
        again = http.post(f"/v1/dlq/{position}/redrive", headers=ACTING)
        assert (again.status_code, again.json()["error"]) == (409, "already_redriven")
        missing = http.post("/v1/dlq/0:999999/redrive", headers=ACTING)
        assert missing.status_code == 404
        listed = http.get("/v1/dlq", headers=HEADERS).json()
        assert listed["letters"][0]["redriven_by"] == first.json()["redrive_id"]
    assert _counts(catalog_fleet, topics.ingest) == Counter({"act-dead": 1})
