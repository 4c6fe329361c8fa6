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
    reported = records["resolution-as-text"]
    assert reported.original is not None
    assert reported.original["exif_dropped"] == ["IFD0 XResolution"]
    assert all(len(r.variants) == 1 for r in records.values())
