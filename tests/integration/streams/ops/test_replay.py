"""`pixelfleet replay` against a real broker and MinIO, with real stage workers: new
"compress settings" replace each image's variants, an expired intermediate starts the image
from its original, and a second replay changes nothing."""

from __future__ import annotations

import time
from collections import Counter

import msgspec
from confluent_kafka import TopicPartition

from schemas.events import ImageSubmitted, Request, encode
from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.cli.replay import replay
from streams.io import clients
from streams.io.topic_reader import latest_records, topic_end_offsets, topic_messages
from streams.ops.replay import REPLAY_HEADER
from tests.integration.streams.ops.kit import FINISH, FORMAT, PREPARE, counts, invoke, keys, s3_of
from tests.integration.streams.runner.fleet import run_until_done, start_thread, topics

IDS = ["img-1", "img-2", "img-3"]


def _variant_keys(settings: Settings) -> dict[str, list[str]]:
    return {
        image_id: [v.object.key for v in record.variants]
        for image_id, record in latest_records(settings).items()
    }


def test_replay_from_compress_replaces_variants_and_starts_expired_ones_over(
    fleet: Settings,
) -> None:
    t = topics(fleet)
    s3 = s3_of(fleet)
    FORMAT["ext"] = "webp"
    submitter = Submitter(fleet)
    for image_id in IDS:
        submitter.upload_bytes_and_submit(image_id.encode(), "photo.jpg", image_id=image_id)
    submitter.flush()
    run_until_done(fleet, [PREPARE, FINISH], count=len(IDS))
    assert keys(s3, fleet.buckets.images) == [f"rings/web/{i}.webp" for i in IDS]

    # New compress settings; img-3's intermediate has expired meanwhile.
    FORMAT["ext"] = "avif"
    (img3_work,) = [k for k in keys(s3, fleet.buckets.work) if k.startswith("validate/img-3/")]
    s3.remove_object(fleet.buckets.work, img3_work)

    dry = invoke(fleet, replay, "--stage", "compress", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        f"would replay img-3: from validate: the compress input s3://{fleet.buckets.work}/"
        f"{img3_work} is gone (the work bucket keeps 1 day(s))",
        "dry run: 3 image(s) would be replayed (2 from compress, 1 from validate); 0 cannot be",
    ]
    assert counts(fleet, t.inbox("compress")) == Counter(dict.fromkeys(IDS, 1))
    one = invoke(fleet, replay, "--stage", "compress", "--image-id", "img-1", "--dry-run")
    assert one.output.splitlines() == [
        "dry run: 1 image(s) would be replayed (1 from compress); 0 cannot be"
    ]
    # A mistyped id is said to be one, and the command fails so a script notices.
    typo = invoke(
        fleet,
        replay,
        "--stage",
        "compress",
        "--image-id",
        "img-1",
        "--image-id",
        "imgg-2",
        "--dry-run",
    )
    assert typo.exit_code == 2, typo.output
    assert typo.output.splitlines()[0] == "imgg-2: no such image (no record on the metadata topic)"

    time.sleep(1.5)  # the old variants are then older than the new records, to the second
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        result = invoke(
            fleet, replay, "--stage", "compress", "--rate", "20", "--wait", "--timeout", "120"
        )
    finally:
        for worker in workers:
            worker.stop()
    assert result.exit_code == 0, result.output
    assert "sent 3 image(s) (2 from compress, 1 from validate)" in result.output
    assert "replay: 3/3 sent" in result.stderr
    assert "finished: 3 of 3 (3 done); removed 3 replaced variant(s)" in result.output

    assert keys(s3, fleet.buckets.images) == [f"rings/web/{i}.avif" for i in IDS]
    assert _variant_keys(fleet) == {i: [f"rings/web/{i}.avif"] for i in IDS}
    # compress ran once more for every image, validate once more for img-3 alone.
    assert counts(fleet, t.metadata) == Counter({"img-1": 3, "img-2": 3, "img-3": 4})
    assert counts(fleet, t.inbox("compress")) == Counter(dict.fromkeys(IDS, 2))
    assert counts(fleet, t.ingest) == Counter({"img-1": 1, "img-2": 1, "img-3": 2})
    replayed = [
        (m.key() or b"").decode()
        for topic in (t.ingest, t.inbox("compress"))
        for m in topic_messages(fleet, topic)
        if REPLAY_HEADER in dict(m.headers() or [])
    ]
    assert Counter(replayed) == Counter(dict.fromkeys(IDS, 1))

    # The same replay again under the same settings: the same keys, nothing to remove.
    time.sleep(1.5)
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        again = invoke(fleet, replay, "--stage", "compress", "--wait", "--timeout", "120")
    finally:
        for worker in workers:
            worker.stop()
    assert again.exit_code == 0, again.output
    assert "finished: 3 of 3 (3 done); removed 0 replaced variant(s), 0 B" in again.output
    assert keys(s3, fleet.buckets.images) == [f"rings/web/{i}.avif" for i in IDS]
    assert _variant_keys(fleet) == {i: [f"rings/web/{i}.avif"] for i in IDS}
    _replay_without_and_with_wait(fleet)


def _replay_without_and_with_wait(fleet: Settings) -> None:
    """A replay not waited for leaves the variants it replaced; the next one waited for
    removes them too, though no record lists them any more."""
    s3 = s3_of(fleet)
    FORMAT["ext"] = "png"
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        sent = invoke(fleet, replay, "--stage", "compress")
        assert sent.exit_code == 0, sent.output
        deadline = time.monotonic() + 120
        while _variant_keys(fleet) != {i: [f"rings/web/{i}.png"] for i in IDS}:
            assert time.monotonic() < deadline, "the png replay did not finish"
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.stop()
    both = sorted(f"rings/web/{i}.{ext}" for i in IDS for ext in ("avif", "png"))
    assert keys(s3, fleet.buckets.images) == both

    FORMAT["ext"] = "jxl"
    time.sleep(1.5)
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        waited = invoke(fleet, replay, "--stage", "compress", "--wait", "--timeout", "120")
    finally:
        for worker in workers:
            worker.stop()
    assert "finished: 3 of 3 (3 done); removed 6 replaced variant(s)" in waited.output
    assert keys(s3, fleet.buckets.images) == [f"rings/web/{i}.jxl" for i in IDS]


def _expire_topic(settings: Settings, topic: str) -> None:
    """What retention does after 7 days: every record of the topic gone."""
    admin = clients.admin(settings.kafka)
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.expire")
    try:
        ends = topic_end_offsets(consumer, topic)
    finally:
        consumer.close()
    futures = admin.delete_records(
        [TopicPartition(topic, p, high) for p, (_, high) in ends.items()]
    )
    for future in futures.values():
        future.result(timeout=30)


def test_replay_past_the_topics_retention_rebuilds_from_the_original(fleet: Settings) -> None:
    t = topics(fleet)
    s3 = s3_of(fleet)
    FORMAT["ext"] = "webp"
    submitter = Submitter(fleet)
    asked = Request(formats=["webp"], variants=["web"], restore="none")
    for image_id in ("old-a", "old-b"):
        submitter.upload_bytes_and_submit(
            image_id.encode(), "photo.jpg", image_id=image_id, request=asked
        )
    submitter.flush()
    run_until_done(fleet, [PREPARE, FINISH], count=2)
    assert latest_records(fleet)["old-a"].request == asked
    for topic in (t.ingest, t.inbox("compress")):
        _expire_topic(fleet, topic)
    s3.remove_object(fleet.buckets.incoming, "old-b/photo.jpg")  # nothing left to start from
    FORMAT["ext"] = "avif"

    time.sleep(1.5)
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        result = invoke(fleet, replay, "--stage", "compress", "--wait", "--timeout", "120")
    finally:
        for worker in workers:
            worker.stop()
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "replay old-a: from validate, rebuilt from the record (nothing of it on "
        f"{t.inbox('compress')} or {t.ingest} any more (past the retention); hints other than "
        "the file name are lost)"
    )
    assert lines[1].startswith("old-b: cannot replay: ") and "no original found" in lines[1]
    assert "sent 1 image(s) (1 from validate) in" in result.output
    assert "1 cannot be replayed" in result.output
    assert "finished: 1 of 1 (1 done); removed 1 replaced variant(s)" in result.output
    assert keys(s3, fleet.buckets.images) == ["rings/web/old-a.avif", "rings/web/old-b.webp"]
    assert _variant_keys(fleet) == {
        "old-a": ["rings/web/old-a.avif"],
        "old-b": ["rings/web/old-b.webp"],
    }
    assert counts(fleet, t.ingest) == Counter({"old-a": 1})
    # The rebuilt submission asks for what the image's own submission asked for.
    (rebuilt,) = topic_messages(fleet, t.ingest)
    again = msgspec.json.decode(rebuilt.value() or b"", type=ImageSubmitted)
    assert again.request == msgspec.structs.replace(asked, force=True)


def test_a_replay_waited_for_keeps_the_variants_a_duplicate_lists(fleet: Settings) -> None:
    s3 = s3_of(fleet)
    FORMAT["ext"] = "webp"
    submitter = Submitter(fleet)
    submitter.upload_bytes_and_submit(b"first", "photo.jpg", image_id="orig-1")
    submitter.flush()
    run_until_done(fleet, [PREPARE, FINISH], count=1)
    # A later image of the same content, done as a duplicate: its record lists orig-1's
    # variants (what the dedup stage writes), no objects of its own.
    original = latest_records(fleet)["orig-1"]
    twin = msgspec.structs.replace(original, image_id="twin-1", duplicate_of="orig-1")
    producer = clients.producer(fleet.kafka)
    producer.produce(topics(fleet).metadata, key=b"twin-1", value=encode(twin))
    assert producer.flush(30) == 0

    FORMAT["ext"] = "avif"
    time.sleep(1.5)
    workers = [start_thread(fleet, PREPARE), start_thread(fleet, FINISH)]
    try:
        result = invoke(
            fleet,
            replay,
            "--stage",
            "compress",
            "--image-id",
            "orig-1",
            "--wait",
            "--timeout",
            "120",
        )
    finally:
        for worker in workers:
            worker.stop()
    assert result.exit_code == 0, result.output
    assert "finished: 1 of 1 (1 done); removed 0 replaced variant(s)" in result.output
    assert "kept 1 replaced variant(s) that other images' records list" in result.output
    # The twin's record still points at an object that is there.
    assert keys(s3, fleet.buckets.images) == ["rings/web/orig-1.avif", "rings/web/orig-1.webp"]
    assert _variant_keys(fleet)["twin-1"] == ["rings/web/orig-1.webp"]
