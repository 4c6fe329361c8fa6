"""restore inside the runner on the real stack, with the shipped models on the CPU."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from processors import intermediate
from schemas.events import ImageRecord, decoder
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
from tests.support.photos import big_photo, encode, noisy, photo


def test_small_and_noisy_photos_are_restored_on_their_way_through(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(
        Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"), pool_workers=2
    )
    init_fleet(fleet)
    small = tmp_path / "rocket.jpg"
    small.write_bytes(encode(photo("rocket"), "JPEG", quality=92))  # 640x427: upscale
    grainy = tmp_path / "coffee.png"
    grainy.write_bytes(encode(noisy(big_photo("coffee", 1800), 20), "PNG"))  # 1800x1200
    submitter = Submitter(fleet)
    submitter.upload_and_submit(small, image_id="small-1")
    submitter.upload_and_submit(grainy, image_id="grainy-1")
    submitter.flush()
    names = ("validate", "categorize", "enhance", "restore", "compress")
    done = run_until_done(fleet, [builtin(name, fleet) for name in names], 2, timeout=300)
    assert {r.key: json.loads(r.value)["status"] for r in done} == {
        "small-1": "done",
        "grainy-1": "done",
    }

    records = latest_records(fleet)
    upscaled = records["small-1"].restore
    assert upscaled is not None
    assert (upscaled["planned"], upscaled["outcome"], upscaled["model"]) == (
        "upscale",
        "upscaled",
        "compact-x4",
    )
    assert (upscaled["after"]["width"], upscaled["after"]["height"]) == (2560, 1708)
    assert {"noise"} <= upscaled["before"].keys() & upscaled["after"].keys()
    assert upscaled["device"] == "cpu" and upscaled["tiles"] > 1
    denoised = records["grainy-1"].restore
    assert denoised is not None and denoised["outcome"] == "denoised"
    assert denoised["after"]["noise"] < denoised["before"]["noise"] / 2

    # The restored image itself, as the restore stage left it for compress.
    s3 = clients.s3(fleet.s3)
    history = [
        decoder(ImageRecord).decode(r.value) for r in read_topic(fleet, topics(fleet).metadata)
    ]
    restored = {
        r.image_id: r.current
        for r in history
        if r.restore and r.restore.get("outcome") in ("upscaled", "denoised") and r.current
    }
    assert set(restored) == {"small-1", "grainy-1"}
    small_ref = restored["small-1"]
    assert small_ref is not None and small_ref.key.startswith("restore/small-1/")
    body = s3.get_object(small_ref.bucket, small_ref.key).read()
    assert intermediate.decode(body).size == (2560, 1708)
    # compress made its variants from the upscaled image: full is 2048 on the long side.
    full = s3.get_object(fleet.buckets.images, "other/full/small-1.jpg").read()
    assert Image.open(io.BytesIO(full)).size == (2048, 1366)
