"""A record over the broker's message limit refuses its image; the partition moves on."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

from schemas.events import DeadLetter, Hints, ImageSubmitted, ObjectRef, Source, decoder, encode
from streams.app.settings import Settings
from streams.cli.ops import dlq
from streams.io import clients
from streams.io.topic_reader import group_lag
from streams.runner.records import now_iso
from tests.integration.streams.ops.kit import invoke
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


def _submit_huge(fleet: Settings, image_id: str, title_chars: int) -> int:
    """A submission the broker takes (its limit is 1 MiB by default, an upstream producer's
    may be set as high) but whose envelope is over the stages' 1,000,000-byte limit."""
    ref = ObjectRef(bucket=fleet.buckets.incoming, key=f"{image_id}/original.bin")
    event = ImageSubmitted(
        image_id=image_id,
        source=Source(object=ref),
        submitted_at=now_iso(),
        hints=Hints(title="t" * title_chars),
    )
    value = encode(event)
    producer = clients.producer(fleet.kafka, **{"message.max.bytes": 1_040_000})
    producer.produce(topics(fleet).ingest, key=image_id.encode(), value=value)
    assert producer.flush(30) == 0
    return len(value)


def test_too_large_records_are_dead_lettered_and_the_rest_flows(make_fleet: MakeFleet) -> None:
    fleet = make_fleet()
    # One partition's worth of order: fine, huge, bloated, fine; the two bad ones in the
    # middle used to abort every batch that held them, for ever.
    submit_ids(fleet, ["fine-1"])
    huge_size = _submit_huge(fleet, "huge-1", 1_000_000)
    submit_ids(fleet, ["bloat-1", "fine-2"])
    body = b"bloat-1 original"
    s3 = clients.s3(fleet.s3)
    s3.put_object(fleet.buckets.incoming, "bloat-1/original.bin", io.BytesIO(body), len(body))
    first = start_thread(fleet, stages.FIRST)
    second = start_thread(fleet, stages.SECOND)
    t = topics(fleet)
    try:
        done = wait_for(fleet, t.done, 4, timeout=60)
        deadline = time.monotonic() + 20
        lag = group_lag(fleet, "validate", t.ingest, t.group("validate"))
        while lag.lag and time.monotonic() < deadline:
            time.sleep(0.5)
            lag = group_lag(fleet, "validate", t.ingest, t.group("validate"))
    finally:
        first.stop()
        second.stop()
    assert first.error is None and second.error is None
    assert first.worker.stats.retries == 0  # refused per image, never by aborting a batch
    assert lag.lag == 0 and lag.committed > 0
    statuses = {r.key: json.loads(r.value)["status"] for r in done}
    assert statuses == {
        "fine-1": "done",
        "fine-2": "done",
        "huge-1": "rejected",
        "bloat-1": "rejected",
    }
    letters = {
        d.image_id: d
        for d in (decoder(DeadLetter).decode(r.value) for r in read_topic(fleet, t.dlq))
    }
    assert set(letters) == {"huge-1", "bloat-1"}
    assert all(
        d.reason_class == "record_too_large" and d.stage == "validate" for d in letters.values()
    )
    # The huge event cannot ride in its own letter: it is named by size and position.
    huge = letters["huge-1"]
    assert (huge.original, huge.original_size, huge.topic) == ("", huge_size, t.ingest)
    # The bloated one's event was small: its letter keeps it, ready for a redrive.
    assert json.loads(letters["bloat-1"].original)["image_id"] == "bloat-1"
    latest = latest_records(fleet)
    assert latest["bloat-1"].status == "rejected" and latest["bloat-1"].enhancement is None
    assert [e.reason_class for e in latest["huge-1"].errors] == ["record_too_large"]
    # A redrive re-sends the letter that kept its event and says why the other cannot be.
    redrive = invoke(fleet, dlq, "redrive", "--reason", "record_too_large")
    assert redrive.exit_code == 2, redrive.output
    assert "redrive: 1 re-sent, 0 already re-sent, 1 cannot be re-sent" in redrive.output
    assert "too large to keep in the letter" in redrive.output and "huge-1" in redrive.output
