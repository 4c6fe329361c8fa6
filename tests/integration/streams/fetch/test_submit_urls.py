"""`pixelfleet submit --urls FILE` drives the demo's images from a local HTTP server through
the whole fleet: every image exactly once on the done topic, with the outcome the demo set
expects, the crawler's hints in the records and the variants in the images bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas.events import ImageProcessed, decoder
from streams.app.registry import builtin
from streams.app.url_list import url_image_id
from streams.demo.samples import write_samples
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.fetch.test_fetch_stage import STAGES, fetch_fleet
from tests.integration.streams.runner.fleet import (
    ROOT,
    init_fleet,
    latest_records,
    read_topic,
    settings_env,
    start_thread,
    topics,
)
from tests.support.http_servers import LoopbackServer

TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


def test_submit_urls_runs_the_demo_set_through_the_fleet(
    stack: Stack, unique_name: Callable[[str], str], server: LoopbackServer, tmp_path: Path
) -> None:
    fleet = fetch_fleet(stack, unique_name("pf"), server.port)
    init_fleet(fleet)
    samples = write_samples(tmp_path / "samples")
    lines = []
    for sample in samples:
        body = (tmp_path / "samples" / sample.file).read_bytes()
        server.serve_bytes(f"/catalog/{sample.file}", body, TYPES[Path(sample.file).suffix])
        title = sample.file.rsplit(".", 1)[0].replace("-", " ")
        lines.append(
            json.dumps(
                {
                    "url": server.url(f"/catalog/{sample.file}"),
                    "page_url": f"https://shop.example/p/{sample.file}",
                    "title": title,
                    "keywords": ["demo"],
                }
            )
        )
    lines.insert(3, "{this line is broken")  # a bad line is named and the rest go on
    export = tmp_path / "crawl.jsonl"
    export.write_text("\n".join(lines) + "\n")

    # Every stage but restore, on threads; --restore none keeps the CPU models out of it.
    workers = [start_thread(fleet, builtin(name, fleet)) for name in STAGES]
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "streams.cli", "submit", "--urls", str(export)),
                *("--restore", "none", "--wait", "--timeout", "240"),
            ],
            cwd=ROOT,
            env={**os.environ, **settings_env(fleet)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        for worker in workers:
            worker.stop()
    assert all(w.error is None for w in workers), [w.error for w in workers]
    # The broken line makes the call exit 1, after the other twelve went through.
    assert done.returncode == 1, done.stderr
    assert "crawl.jsonl: line 4: not JSON" in done.stderr
    expected = {url_image_id(server.url(f"/catalog/{s.file}")): s.expect for s in samples}
    assert sorted(done.stdout.split()) == sorted(expected)

    events = [
        decoder(ImageProcessed).decode(r.value) for r in read_topic(fleet, topics(fleet).done)
    ]
    assert Counter(e.image_id for e in events) == Counter(list(expected)), "each exactly once"
    assert {e.image_id: e.status for e in events} == expected
    records = latest_records(fleet)
    ring = records[url_image_id(server.url("/catalog/gold-ring-coffee.jpg"))]
    assert ring.category is not None and ring.category.name == "rings"
    assert "title:ring" in ring.category.evidence  # the crawler's title was a hint
    assert ring.fetch is not None and ring.fetch.status == 200
    assert {v.format for v in ring.variants} == {"avif", "webp", "jpeg"}
    s3 = clients.s3(fleet.s3)
    s3_keys = {o.object_name for o in s3.list_objects(fleet.buckets.images, recursive=True)}
    for variant in ring.variants:
        assert variant.object.key in s3_keys
    # Each URL was requested once: nothing fetched twice.
    assert Counter(server.paths()) == Counter(f"/catalog/{s.file}" for s in samples)
