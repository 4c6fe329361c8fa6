"""The catalog's HTTP API against a real replica, broker and MinIO: keys, limits, errors,
submissions and presigned downloads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest

from schemas.events import ImageSubmitted, ObjectRef, Request, Variant, decoder
from streams.app.settings import Settings
from streams.app.submit import content_image_id
from streams.config.topics import Topics
from streams.io import clients
from streams.stages.fingerprint import fingerprint
from tests.integration.streams.catalog.conftest import Launch
from tests.integration.streams.runner.fleet import read_topic, settings_env
from tests.support.catalog_kit import ACTING, HEADERS, fake_record, publish
from tests.support.photos import encode, photo

pytestmark = pytest.mark.integration
LIMIT = 300_000


def test_keys_limits_and_errors_are_answered_clearly(
    catalog_fleet: Settings, launch: Launch
) -> None:
    catalog = launch(catalog_fleet, max_body_bytes=LIMIT)
    with httpx.Client(base_url=catalog.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
        assert http.get("/v1/openapi.json").json()["openapi"].startswith("3.1")
        assert "/v1/images/{image_id}/variants" in http.get("/v1/docs").text
        missing = http.get("/v1/stats")
        assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized")
        wrong = http.get("/v1/stats", headers={"X-API-Key": "not-it"})
        assert (wrong.status_code, wrong.json()["error"]) == (403, "forbidden")
        bearer = {"Authorization": f"Bearer {HEADERS['X-API-Key']}"}
        assert http.get("/v1/stats", headers=bearer).status_code == 200

        unknown = http.get("/v1/images/no-such-image", headers=HEADERS)
        assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
        big = http.post(
            "/v1/images", headers=HEADERS, files={"file": ("big.jpg", b"\xff\xd8" * LIMIT)}
        )
        assert (big.status_code, big.json()["error"]) == (413, "too_large")
        text = http.post("/v1/images", headers=HEADERS, content=b"hello")
        assert text.status_code == 415
        not_image = http.post(
            "/v1/images", headers=HEADERS, files={"file": ("notes.txt", b"just some text")}
        )
        assert (not_image.status_code, not_image.json()["error"]) == (415, "not_an_image")
        no_url = http.post("/v1/images", headers=HEADERS, json={"link": "x"})
        assert (no_url.status_code, no_url.json()["error"]) == (400, "missing_url")
        bad_url = http.post("/v1/images", headers=HEADERS, json={"url": "ftp://x/y.jpg"})
        assert bad_url.status_code == 422
        bad_query = http.get("/v1/images?sha256=xyz", headers=HEADERS)
        assert bad_query.status_code == 400
        too_far = http.get("/v1/lookup?phash=0000000000000000&max_distance=99", headers=HEADERS)
        assert too_far.status_code == 400
        # Hostile or mistyped bodies and flags: a clear 400 each, never a 500.
        deep = b"[" * 5000 + b"]" * 5000
        for path in ("/v1/images", "/v1/images/x/replay"):
            nested = http.post(path, headers={**ACTING, "Content-Type": "application/json"},
                               content=deep)  # fmt: skip
            assert (nested.status_code, nested.json()["error"]) == (400, "bad_json"), path
        no_boundary = http.post(
            "/v1/images",
            headers={**HEADERS, "Content-Type": "multipart/form-data"},
            content=b"--x\r\n\r\n",
        )
        assert (no_boundary.status_code, no_boundary.json()["error"]) == (400, "bad_multipart")
        maybe = http.post("/v1/images?force=maybe", headers=HEADERS, json={"url": "https://a/b"})
        _misspelt_fields_are_refused(http)
        assert (maybe.status_code, maybe.json()["error"]) == (400, "bad_flag")
        # A mistyped dry run is refused before anything is looked up, never run for real.
        for answer in (
            http.delete("/v1/images/x?dry_run=on", headers=ACTING),
            http.post("/v1/images/x/replay", headers=ACTING, json={"dry_run": "on"}),
        ):
            assert (answer.status_code, answer.json()["error"]) == (400, "bad_flag")
        typo = http.post("/v1/images/x/replay", headers=ACTING, json={"dryRun": True})
        assert (typo.status_code, typo.json()["error"]) == (400, "bad_field")
        letter = http.post("/v1/dlq/0:42%0A/redrive", headers=ACTING)
        assert (letter.status_code, letter.json()["error"]) == (400, "bad_letter")
        # Filters with a closed set of values, times, and ranges: 400 bad_query, each named.
        for query, named in (
            ("status=DONE", "status"),
            ("duplicate=bogus", "duplicate"),
            ("since=yesterday", "since"),
            ("ids=" + ",".join(f"i{n}" for n in range(101)), "ids"),
            ("colour=red", "colour"),  # a misspelt filter would list everything
        ):
            listed = http.get(f"/v1/images?{query}", headers=HEADERS)
            assert (listed.status_code, listed.json()["error"]) == (400, "bad_query"), query
            assert named in listed.json()["message"], listed.json()
        # Nothing to look up, or a sha256 without the settings it was done under, used to
        # answer "no duplicate".
        for query in (
            "sha256=abc&fingerprint=f",
            "phash=0000000000000000&limit=x",
            "",
            "sha256=" + "0" * 64,
            "fingerprint=f",
        ):
            looked = http.get(f"/v1/lookup?{query}", headers=HEADERS)
            assert (looked.status_code, looked.json()["error"]) == (400, "bad_query"), query
        wrong_method = http.put("/v1/images", headers=HEADERS)
        assert wrong_method.status_code == 405
        assert set(wrong_method.headers["Allow"].split(",")) >= {"GET", "POST"}
    # Nothing of the refused requests reached the fleet.
    assert read_topic(catalog_fleet, Topics(catalog_fleet.topic_prefix).ingest) == []


def _misspelt_fields_are_refused(http: httpx.Client) -> None:
    """A misspelt field would be dropped and the image processed as nobody asked."""
    for body, named in (
        ({"url": "https://a/b", "request": {"restor": "none"}}, "request.restor"),
        ({"url": "https://a/b", "hint": {"title": "t"}}, "hint"),
        ({"url": "https://a/b", "hints": {"titel": "t"}}, "hints.titel"),
    ):
        misspelt = http.post("/v1/images", headers=HEADERS, json=body)
        assert (misspelt.status_code, misspelt.json()["error"]) == (400, "bad_field"), body
        assert repr(named) in misspelt.json()["message"], misspelt.json()
        if named == "request.restor":  # the names known where the misspelt one stands
            assert "restore" in misspelt.json()["message"].split("known:")[1]
    tiny = encode(photo("coffee").resize((8, 8)), "PNG")
    meta = json.dumps({"request": {"restor": "none"}})
    misspelt = http.post(
        "/v1/images", headers=HEADERS, files={"file": ("a.png", tiny), "meta": (None, meta)}
    )
    assert (misspelt.status_code, misspelt.json()["error"]) == (400, "bad_field")


def test_bulky_hints_and_odd_inputs_are_refused_before_anything_is_stored(
    catalog_fleet: Settings, launch: Launch
) -> None:
    catalog = launch(catalog_fleet)
    with httpx.Client(base_url=catalog.url, timeout=10) as http:
        # Hints too large for the fleet's messages: refused before anything is stored.
        bulky = {"hints": {"keywords": ["k" * 1000] * 70}}
        for answer in (
            http.post("/v1/images", headers=HEADERS, json={"url": "https://a/b.jpg", **bulky}),
            http.post(
                "/v1/images",
                headers=HEADERS,
                files={
                    "file": ("bulky.png", encode(photo("coffee"), "PNG")),
                    "meta": (None, json.dumps(bulky), "application/json"),
                },
            ),
        ):
            assert (answer.status_code, answer.json()["error"]) == (413, "too_large"), answer.text
            assert "65,536 bytes" in answer.json()["message"]
        glow = {"url": "https://a/c.jpg", "request": {"profile": "glow"}}
        mistyped = http.post("/v1/images", headers=HEADERS, json=glow)
        assert (mistyped.status_code, mistyped.json()["error"]) == (422, "bad_request")
        assert "no enhancement profile 'glow'" in mistyped.json()["message"]
        unknown_charset = http.post(
            "/v1/images",
            headers=HEADERS,
            files={
                "file": ("a.png", encode(photo("coffee"), "PNG")),
                "meta": (None, b"{}", "application/json; charset=nope"),
            },
        )
        assert (unknown_charset.status_code, unknown_charset.json()["error"]) == (400, "bad_json")
        for since in ("0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"):
            far = http.get(f"/v1/images?since={since}", headers=HEADERS)
            assert (far.status_code, far.json()["error"]) == (400, "bad_query"), since
    assert read_topic(catalog_fleet, Topics(catalog_fleet.topic_prefix).ingest) == []
    s3 = clients.s3(catalog_fleet.s3)
    stored = list(s3.list_objects(catalog_fleet.buckets.incoming, recursive=True))
    assert stored == [], [o.object_name for o in stored]


def test_an_upload_is_stored_and_published_once_per_idempotency_key(
    catalog_fleet: Settings, launch: Launch
) -> None:
    catalog = launch(catalog_fleet)
    data = encode(photo("coffee"), "JPEG", quality=90)
    meta = {"hints": {"title": "espresso cup"}, "request": {"formats": ["webp"]}}
    form = {"meta": (None, json.dumps(meta), "application/json")}
    with httpx.Client(base_url=catalog.url, timeout=30, headers=HEADERS) as http:
        answers = [
            http.post(
                "/v1/images",
                files={"file": ("cup.jpg", data, "image/jpeg"), **form},
                headers={"Idempotency-Key": "order-17"},
            )
            for _ in range(2)
        ]
        reused = http.post(
            "/v1/images",
            files={"file": ("cup.jpg", data + b"\x00", "image/jpeg")},
            headers={"Idempotency-Key": "order-17"},
        )
        # Another caller's "order-17" is another request.
        other_caller = http.post(
            "/v1/images",
            json={"url": "https://images.example/b/plate.jpg"},
            headers={**ACTING, "Idempotency-Key": "order-17"},
        )
        by_url = http.post(
            "/v1/images", json={"url": "https://images.example/a/cup.jpg", "hints": {"title": "c"}}
        )
        # ?force=true reaches the event, so that validate does the work again even when the
        # same content is done under another id.
        forced_url = http.post("/v1/images?force=true", json={"url": "https://images.example/f"})
        forced_upload = http.post(
            "/v1/images?force=1", files={"file": ("f.png", encode(photo("rocket"), "PNG"))}
        )
        # A file name that cleans down to nothing still names an image.
        nameless = http.post("/v1/images", files={"file": ("..", encode(photo("coffee"), "PNG"))})
        # A GIF carrying markup, named .html: stored as the GIF it is, never as a page.
        markup = b"GIF89a<script>alert(1)</script>"
        posing = http.post("/v1/images", files={"file": ("x.html", markup, "text/html")})
    image_id = content_image_id(data)
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["image_id"] == image_id
    assert answers[0].headers["Location"] == f"/v1/images/{image_id}"
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    assert other_caller.status_code == 202, other_caller.text
    assert by_url.status_code == 202 and by_url.json()["image_id"].startswith("url-")
    assert nameless.status_code == 202, nameless.text

    events = read_topic(catalog_fleet, Topics(catalog_fleet.topic_prefix).ingest)
    assert Counter(e.key for e in events) == {
        image_id: 1,
        by_url.json()["image_id"]: 1,
        nameless.json()["image_id"]: 1,
        other_caller.json()["image_id"]: 1,
        posing.json()["image_id"]: 1,
        forced_url.json()["image_id"]: 1,
        forced_upload.json()["image_id"]: 1,
    }
    submitted_as = {e.key: decoder(ImageSubmitted).decode(e.value).request for e in events}
    forced = {forced_url.json()["image_id"], forced_upload.json()["image_id"]}
    assert {key for key, request in submitted_as.items() if request.force} == forced
    submitted = decoder(ImageSubmitted).decode(next(e.value for e in events if e.key == image_id))
    assert submitted.hints.title == "espresso cup" and submitted.request.formats == ["webp"]
    source = submitted.source.object
    assert source is not None
    stored = clients.read_object(clients.s3(catalog_fleet.s3), source.bucket, source.key)
    assert stored == data
    s3 = clients.s3(catalog_fleet.s3)
    assert s3.stat_object(source.bucket, source.key).content_type == "image/jpeg"
    assert posing.status_code == 202, posing.text
    posed = decoder(ImageSubmitted).decode(
        next(e.value for e in events if e.key == posing.json()["image_id"])
    )
    assert posed.source.object is not None
    assert s3.stat_object(posed.source.object.bucket, posed.source.object.key).content_type == (
        "image/gif"
    )


def test_variants_come_with_fresh_presigned_urls_that_download_the_bytes(
    catalog_fleet: Settings, launch: Launch
) -> None:
    s3 = clients.s3(catalog_fleet.s3)
    bucket = catalog_fleet.buckets.images
    body = encode(photo("rocket"), "WEBP", quality=80)
    key = "rings/web/pic-1.webp"
    s3.put_object(bucket, key, io.BytesIO(body), len(body), content_type="image/webp")
    rng = random.Random(3)
    record = fake_record("pic-1", rng)
    variant = Variant(
        variant="web", format="webp", width=512, height=512, bytes=len(body),
        object=ObjectRef(bucket=bucket, key=key, size=len(body)),
    )  # fmt: skip
    near = msgspec.structs.replace(
        fake_record("pic-2", rng),
        original={
            **(record.original or {}),
            "phash": _flip(record.original, 3),
            "sha256": "0" * 64,
        },
    )
    far = msgspec.structs.replace(
        fake_record("pic-3", rng),
        original={**(record.original or {}), "phash": _flip(record.original, 30)},
    )
    publish(catalog_fleet, [msgspec.structs.replace(record, variants=[variant]), near, far])
    catalog = launch(catalog_fleet, presign_expiry_s=120)
    with httpx.Client(base_url=catalog.url, timeout=10, headers=HEADERS) as http:
        listed = http.get("/v1/images/pic-1/variants").json()
        similar = http.get("/v1/images/pic-1/similar?max_distance=8").json()
        stats = http.get("/v1/stats").json()
    (only,) = listed["variants"]
    assert (only["variant"], only["expires_in_s"]) == ("web", 120)
    assert "X-Amz-Signature" in only["url"]
    assert httpx.get(only["url"], timeout=10).content == body  # no key: the URL is the grant
    assert similar["similar"] == [{"image_id": "pic-2", "distance": 3}]
    assert stats["images"] == 3 and stats["by_status"] == {"done": 3}


def _flip(original: dict | None, bits: int) -> str:  # type: ignore[type-arg]
    value = int((original or {})["phash"], 16)
    for bit in range(bits):
        value ^= 1 << (bit * 2)
    return f"{value:016x}"


def test_the_cli_asks_the_catalog_before_submitting_and_for_status(
    catalog_fleet: Settings, launch: Launch, tmp_path: Path
) -> None:
    data = encode(photo("coffee"), "JPEG", quality=85)
    upload = tmp_path / "cup.jpg"
    upload.write_bytes(data)
    finished = msgspec.structs.replace(
        fake_record("cup-done", random.Random(5)),
        original={"sha256": hashlib.sha256(data).hexdigest(), "phash": "00ff00ff00ff00ff"},
        fingerprint=fingerprint(catalog_fleet.stages, Request()),
    )
    publish(catalog_fleet, [finished])
    catalog = launch(catalog_fleet)
    env = {
        **os.environ,
        **settings_env(catalog_fleet),
        "PIXELFLEET_CATALOG_URL": catalog.url,
        "PIXELFLEET_CATALOG_API_KEY": HEADERS["X-API-Key"],
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "streams.cli", *args]
        return subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=120
        )

    # The known file and a copy of it under another name: one lookup, both reported.
    copy = tmp_path / "cup-copy.jpg"
    copy.write_bytes(data)
    known = cli("submit", str(upload), str(copy))
    assert known.returncode == 0, known.stderr
    assert known.stdout.split() == ["cup-done"]
    assert "already done as cup-done" in known.stderr
    assert f"{copy} is {upload}" in known.stderr  # it raised KeyError, the known file gone
    copy.unlink()
    ingest = Topics(catalog_fleet.topic_prefix).ingest
    assert read_topic(catalog_fleet, ingest) == []
    forced = cli("submit", "--force", str(upload))
    assert forced.returncode == 0, forced.stderr
    assert [r.key for r in read_topic(catalog_fleet, ingest)] == [content_image_id(data)]

    status = cli("status", "cup-done")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["fingerprint"] == finished.fingerprint
    missing = cli("status", "no-such-image")
    assert missing.returncode == 1
    # The catalog's not_found is checked against the topic before it is believed.
    assert "the catalog has no record of no-such-image; reading the metadata topic" in (
        missing.stderr
    )
    assert "error: no record for no-such-image under the topic prefix" in missing.stderr
