"""Real photographs with malformed metadata, and formats people actually have, through the
image stages on the real stack: every one comes out `done`, none `failed`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from schemas.events import Hints, Request
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.app.submit import Submitter
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    fleet_settings,
    init_fleet,
    latest_records,
    run_until_done,
)
from tests.support.exif_damage import cases
from tests.support.photos import encode, photo

STAGES = ("validate", "categorize", "enhance", "compress")


def test_every_photo_with_malformed_exif_comes_out_done(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(
        Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"), pool_workers=2
    )
    # The outputs carry the EXIF too, so the writer is exercised at both ends.
    stages_settings = fleet.stages.model_copy(
        update={"compress": fleet.stages.compress.model_copy(update={"keep_exif": True})}
    )
    fleet = fleet.model_copy(update={"stages": stages_settings})
    init_fleet(fleet)
    submitter = Submitter(fleet)
    malformed = cases()
    for name, block in malformed.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(encode(photo("coffee"), "JPEG", exif=block, quality=90))
        submitter.upload_and_submit(
            path,
            image_id=name.replace("_", "-"),
            hints=Hints(file_name=path.name),
            request=Request(restore="none", formats=["jpeg"], variants=["thumbnail"]),
        )
    submitter.flush()
    specs = [builtin(name, fleet) for name in STAGES]
    done = run_until_done(fleet, specs, len(malformed), timeout=300)
    status = {r.key: json.loads(r.value)["status"] for r in done}
    assert status == {name.replace("_", "-"): "done" for name in malformed}
    records = latest_records(fleet)
    assert all(r.status == "done" for r in records.values())
    reported = records["resolution-as-text"]
    assert reported.original is not None
    assert reported.original["exif_dropped"] == ["IFD0 XResolution"]
    assert all(len(r.variants) == 1 for r in records.values())


def test_heic_jpeg_xl_and_an_animation_come_out_done(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(
        Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"), pool_workers=2
    )
    init_fleet(fleet)
    frames = [photo("chelsea").rotate(angle) for angle in (0, 10, 20, 30)]
    animated = tmp_path / "spin.webp"
    frames[0].save(animated, "WEBP", save_all=True, append_images=frames[1:], duration=90)
    files = {
        "iphone": ("IMG_0042.HEIC", encode(photo("coffee"), "HEIF", quality=85)),
        "jxl": ("ring.jxl", encode(photo("astronaut"), "JXL", quality=85)),
        "spin": ("spin.webp", animated.read_bytes()),
    }
    submitter = Submitter(fleet)
    for image_id, (name, data) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        submitter.upload_and_submit(
            path,
            image_id=image_id,
            hints=Hints(file_name=name),
            request=Request(restore="none", formats=["webp", "jxl"], variants=["preview"]),
        )
    submitter.flush()
    done = run_until_done(fleet, [builtin(name, fleet) for name in STAGES], 3, timeout=240)
    assert {r.key: json.loads(r.value)["status"] for r in done} == dict.fromkeys(files, "done")
    records = latest_records(fleet)
    formats = {i: (records[i].original or {}).get("format") for i in files}
    assert formats == {"iphone": "HEIF", "jxl": "JXL", "spin": "WEBP"}
    assert (records["spin"].original or {})["normalized"]["frames"] == 4
    for record in records.values():
        assert sorted(v.format for v in record.variants) == ["jxl", "webp"]
