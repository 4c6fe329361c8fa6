"""The runner moves images through stages exactly once, and turns bad input into data."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Producer

from schemas.events import DeadLetter, decoder
from streams.app.settings import Settings
from streams.io import clients
from streams.io.topic_reader import group_lag
from streams.runner.accounting import StageHaltedError
from tests.integration.streams.runner import stages
from tests.integration.streams.runner.fleet import (
    latest_records,
    read_topic,
    start_thread,
    submit_ids,
    topics,
    wait_for,
)

MakeFleet = Callable[..., Settings]


def _objects(settings: Settings, bucket: str) -> list[str]:
    s3 = clients.s3(settings.s3)
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))


def test_two_stages_move_every_image_exactly_once(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    ids = submit_ids(fleet, [f"img-{i:03d}" for i in range(60)])
    first = start_thread(fleet, stages.FIRST)
    second = start_thread(fleet, stages.SECOND)
    t = topics(fleet)
    try:
        done = wait_for(fleet, t.done, len(ids))
        # Lag as KEDA computes it (end offset - committed offset) must reach zero.
        deadline = time.monotonic() + 20
        lags = {}
        while time.monotonic() < deadline:
            lags = {
                s: group_lag(fleet, s, t.inbox(s), t.group(s)) for s in ("validate", "categorize")
            }
            if all(lag.lag == 0 for lag in lags.values()):
                break
            time.sleep(0.5)
    finally:
        first.stop()
        second.stop()
    assert first.error is None and second.error is None
    assert all(lag.lag == 0 and lag.committed > 0 for lag in lags.values()), lags
    assert Counter(r.key for r in done) == Counter(ids)
    latest = latest_records(fleet)
    assert set(latest) == set(ids)
    for image_id, record in latest.items():
        assert record.status == "done", image_id
        assert set(record.stages) == {"validate", "categorize"}
        assert record.route == ["validate", "categorize"]
        assert record.current is not None and record.current.key == f"categorize/{image_id}.txt"
    assert _objects(fleet, fleet.buckets.work) == sorted(f"validate/{i}.txt" for i in ids)
    assert _objects(fleet, fleet.buckets.images) == sorted(f"categorize/{i}.txt" for i in ids)
    # The middle topic holds exactly one envelope per image, in one partition per key.
    middle = read_topic(fleet, t.inbox("categorize"))
    assert Counter(r.key for r in middle) == Counter(ids)
    assert all(len({r.partition for r in middle if r.key == i}) == 1 for i in ids)


def test_poison_is_dead_lettered_rejected_and_quarantined(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    s3 = clients.s3(fleet.s3)
    good = [f"good-{i}" for i in range(10)]
    bad = [f"poison-{i}" for i in range(3)]
    for image_id in bad:
        s3.put_object(fleet.buckets.incoming, f"{image_id}/original.bin", io.BytesIO(b"evil"), 4)
    submit_ids(fleet, good + bad)
    worker = start_thread(fleet, stages.FIRST)
    second = start_thread(fleet, stages.SECOND)
    try:
        done = wait_for(fleet, topics(fleet).done, len(good) + len(bad))
    finally:
        worker.stop()
        second.stop()
    statuses = {r.key: json.loads(r.value)["status"] for r in done}
    assert statuses == {**dict.fromkeys(good, "done"), **dict.fromkeys(bad, "rejected")}
    letters = [decoder(DeadLetter).decode(r.value) for r in read_topic(fleet, topics(fleet).dlq)]
    assert sorted(d.image_id for d in letters) == bad
    for letter in letters:
        assert letter.stage == "validate" and letter.reason_class == "poisoned"
        assert letter.topic == topics(fleet).ingest and letter.offset >= 0
        assert json.loads(letter.original)["image_id"] == letter.image_id
        assert letter.quarantined is not None
        body = s3.get_object(letter.quarantined.bucket, letter.quarantined.key).read()
        assert body == b"evil"
    latest = latest_records(fleet)
    for image_id in bad:
        assert latest[image_id].status == "rejected"
        assert latest[image_id].errors[0].reason_class == "poisoned"
    assert _objects(fleet, fleet.buckets.quarantine) == sorted(
        f"validate/{i}/original.bin" for i in bad
    )


def test_undecodable_bytes_are_dead_lettered_and_the_rest_passes(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    producer: Producer = clients.producer(fleet.kafka)
    producer.produce(topics(fleet).ingest, key=b"junk-1", value=b"\xff\xd8 not json at all")
    producer.produce(topics(fleet).ingest, key=b"junk-2", value=b'{"image_id": "x/y"}')
    producer.flush(30)
    submit_ids(fleet, ["fine-1", "fine-2"])
    worker = start_thread(fleet, stages.FIRST)
    try:
        letters = wait_for(fleet, topics(fleet).dlq, 2)
        wait_for(fleet, topics(fleet).inbox("categorize"), 2)
    finally:
        worker.stop()
    decoded = {d.image_id: d for d in (decoder(DeadLetter).decode(r.value) for r in letters)}
    assert set(decoded) == {"junk-1", "junk-2"}
    assert decoded["junk-1"].original_encoding == "base64"
    assert decoded["junk-2"].original == '{"image_id": "x/y"}'
    assert all(d.reason_class == "undecodable" for d in decoded.values())


def test_a_run_of_failures_halts_the_stage_instead_of_draining(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(halt_after_failures=5)
    submit_ids(fleet, [f"poison-{i:02d}" for i in range(30)])
    worker = start_thread(fleet, stages.FIRST)
    worker.thread.join(60)
    assert not worker.thread.is_alive()
    assert isinstance(worker.error, StageHaltedError)
    assert "5 messages in a row failed" in str(worker.error)
    time.sleep(1)
    # The halting batch was not committed: at most the four before it reached the DLQ.
    assert len(read_topic(fleet, topics(fleet).dlq)) <= 4
    t = topics(fleet)
    assert group_lag(fleet, "validate", t.ingest, t.group("validate")).lag >= 26
