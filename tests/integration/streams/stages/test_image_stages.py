"""validate -> categorize -> enhance -> compress on the real stack, with real photographs."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
from PIL import Image

from schemas.events import DeadLetter, Hints, Request, decoder
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    fleet_settings,
    init_fleet,
    latest_records,
    read_topic,
    run_until_done,
    topics,
)
from tests.support.photos import big_photo, encode, photo


def test_photos_go_through_every_image_stage(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: object
) -> None:
    fleet = fleet_settings(
        Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"), pool_workers=2
    )
    init_fleet(fleet)
    folder = __import__("pathlib").Path(str(tmp_path))
    ring = folder / "ring.jpg"
    ring.write_bytes(encode(big_photo("coffee", 2400), "JPEG", quality=92))
    logo = folder / "pendant.png"
    rgba = big_photo("chelsea", 2400).convert("RGBA")  # large enough to skip restore
    rgba.paste((0, 0, 0, 0), (0, 0, 200, 200))
    logo.write_bytes(encode(rgba, "PNG"))
    small = folder / "small.jpg"
    small.write_bytes(encode(photo("rocket"), "JPEG", quality=90))
    broken = folder / "broken.jpg"
    broken.write_bytes(encode(big_photo("astronaut", 1600), "JPEG", quality=90)[:60_000])

    submitter = Submitter(fleet)
    ids = {
        "ring": submitter.upload_and_submit(
            ring,
            image_id="ring-1",
            hints=Hints(title="18k gold solitaire engagement ring", file_name="ring.jpg"),
        ).image_id,
        "pendant": submitter.upload_and_submit(
            logo,
            image_id="pendant-1",
            hints=Hints(keywords=["heart pendant"], page_url="https://shop.example/pendants/heart"),
        ).image_id,
        "small": submitter.upload_and_submit(
            small, image_id="small-1", request=Request(restore="none", formats=["webp"])
        ).image_id,
        "broken": submitter.upload_and_submit(broken, image_id="broken-1").image_id,
    }
    submitter.flush()
    names = ("validate", "categorize", "enhance", "compress")
    done = run_until_done(fleet, [builtin(name, fleet) for name in names], 4, timeout=240)
    status = {r.key: json.loads(r.value)["status"] for r in done}
    assert status == {
        "ring-1": "done",
        "pendant-1": "done",
        "small-1": "done",
        "broken-1": "rejected",
    }

    records = latest_records(fleet)
    ring_record = records["ring-1"]
    assert ring_record.category is not None and ring_record.category.name == "rings"
    assert "title:engagement ring" in ring_record.category.evidence
    assert ring_record.original is not None and ring_record.original["format"] == "JPEG"
    assert ring_record.quality is not None and ring_record.quality["resolution_score"] > 0.25
    assert ring_record.route == ["validate", "categorize", "enhance", "compress"]
    assert ring_record.enhancement is not None and ring_record.enhancement["profile"] == "product"
    assert {(v.variant, v.format) for v in ring_record.variants} == {
        (v, f) for v in ("thumbnail", "preview", "full") for f in ("avif", "webp", "jpeg")
    }
    s3 = clients.s3(fleet.s3)
    keys = {o.object_name for o in s3.list_objects(fleet.buckets.images, recursive=True)}
    for variant in ring_record.variants:
        extension = "jpg" if variant.format == "jpeg" else variant.format
        assert variant.object.key == f"rings/{variant.variant}/ring-1.{extension}"
        assert variant.object.key in keys
    full = Image.open(
        io.BytesIO(s3.get_object(fleet.buckets.images, "rings/full/ring-1.jpg").read())
    )
    assert full.size == (2048, 1365)

    pendant = records["pendant-1"]
    assert pendant.category is not None and pendant.category.name == "pendants"
    webp = Image.open(
        io.BytesIO(s3.get_object(fleet.buckets.images, "pendants/preview/pendant-1.webp").read())
    )
    assert webp.mode == "RGBA" and np.asarray(webp)[5, 5, 3] == 0

    small_record = records["small-1"]
    assert {v.format for v in small_record.variants} == {"webp"}
    assert small_record.category is not None and small_record.category.name == "other"

    letters = [decoder(DeadLetter).decode(r.value) for r in read_topic(fleet, topics(fleet).dlq)]
    assert [(d.image_id, d.reason_class) for d in letters] == [("broken-1", "truncated")]
    assert letters[0].reason.startswith("truncated JPEG: ")
    assert records["broken-1"].status == "rejected"
    quarantined = [o.object_name for o in s3.list_objects(fleet.buckets.quarantine, recursive=True)]
    assert quarantined == ["validate/broken-1/broken.jpg"]
    assert ids["broken"] == "broken-1"
