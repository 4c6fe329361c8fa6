"""`pixelfleet dlq list | redrive` against a real broker and MinIO, with a real stage worker."""

from __future__ import annotations

import json
from collections import Counter

from confluent_kafka import Message

from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.cli.ops import dlq
from streams.io.topic_reader import latest_records, topic_messages
from streams.ops.dlq import REDRIVE_HEADER, REDRIVEN_FROM_HEADER
from streams.ops.ledger import redriven_topic
from tests.integration.streams.ops.kit import CHECKED, REFUSED, counts, invoke, keys, s3_of
from tests.integration.streams.runner.fleet import run_until_done, submit_ids, topics


def test_redrive_resends_each_letter_once_after_the_cause_is_fixed(fleet: Settings) -> None:
    t = topics(fleet)
    s3 = s3_of(fleet)
    submitter = Submitter(fleet)
    for image_id in ("big-a", "big-b", "fine-c"):
        submitter.upload_bytes_and_submit(image_id.encode(), "in.txt", image_id=image_id)
    submitter.flush()
    submit_ids(fleet, ["gone-d"])  # points at an object that was never uploaded
    REFUSED.clear()
    REFUSED.update({"big-a", "big-b"})
    run_until_done(fleet, [CHECKED], count=4)

    _check_listing(fleet)

    # The operator fixes the cause; meanwhile big-b's original left the incoming bucket,
    # but the stage quarantined a copy when it refused it.
    REFUSED.clear()
    s3.remove_object(fleet.buckets.incoming, "big-b/in.txt")
    redrive_id = _redrive_twice(fleet)

    # The fixed stage finishes both; the done topic has each image's events by key.
    run_until_done(fleet, [CHECKED], count=4)
    _check_finished(fleet)

    # A letter whose original is gone with no quarantined copy cannot be re-sent: said, and
    # the command fails so a script notices.
    missing = invoke(fleet, dlq, "redrive", "--reason", "source_missing")
    assert missing.exit_code == 2
    assert "cannot re-send" in missing.output and "gone-d" in missing.output
    assert counts(fleet, t.ingest)["gone-d"] == 1
    assert redrive_id not in missing.output


def _check_listing(fleet: Settings) -> None:
    listed = invoke(fleet, dlq, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "dead letters: 3 (0 already redriven)"
    assert "      2  validate    refused" in lines
    assert "      1  validate    source_missing" in lines
    # A mistyped reason chooses nothing: listing says so, a redrive refuses to run.
    typo = invoke(fleet, dlq, "list", "--reason", "refsued")
    assert typo.exit_code == 0 and "dead letters: 0 (0 already redriven)" in typo.output
    hint = (
        "no dead letter has the reason class 'refsued'; those on the DLQ: refused, source_missing"
    )
    assert hint in typo.output
    redrive = invoke(fleet, dlq, "redrive", "--reason", "refsued")
    assert redrive.exit_code == 1 and f"error: {hint}; nothing re-sent" in redrive.output
    stage = invoke(fleet, dlq, "redrive", "--stage", "valdate")
    assert stage.exit_code == 2 and "'valdate' is not one of" in stage.output
    only = invoke(fleet, dlq, "list", "--reason", "source_missing").output
    assert only.splitlines()[0] == "dead letters: 1 (0 already redriven)"
    assert "gone-d" in only and "big-a" not in only


def _redrive_twice(fleet: Settings) -> str:
    """A dry run, a redrive, the same redrive again and a new one; the redrive's id."""
    t = topics(fleet)
    s3 = s3_of(fleet)
    dry = invoke(fleet, dlq, "redrive", "--reason", "refused", "--dry-run")
    assert "redrive: 2 would re-send, 0 already re-sent, 0 cannot be re-sent" in dry.output
    assert keys(s3, fleet.buckets.incoming) == ["big-a/in.txt", "fine-c/in.txt"]
    assert counts(fleet, t.ingest) == Counter({"big-a": 1, "big-b": 1, "fine-c": 1, "gone-d": 1})

    first = invoke(fleet, dlq, "redrive", "--reason", "refused")
    assert first.exit_code == 0, first.output
    redrive_id = first.output.splitlines()[0].split()[1]
    assert "redrive: 2 re-sent, 0 already re-sent, 0 cannot be re-sent" in first.output
    assert f"restored big-b from s3://{fleet.buckets.quarantine}/validate/big-b/in.txt" in (
        first.output
    )
    assert "big-b/in.txt" in keys(s3, fleet.buckets.incoming)

    # The same redrive run again, and a new one: nothing is sent twice.
    again = invoke(fleet, dlq, "redrive", "--reason", "refused", "--redrive-id", redrive_id)
    assert "redrive: 0 re-sent, 2 already re-sent, 0 cannot be re-sent" in again.output
    fresh = invoke(fleet, dlq, "redrive", "--reason", "refused")
    assert "redrive: 0 re-sent, 2 already re-sent, 0 cannot be re-sent" in fresh.output
    ingest = topic_messages(fleet, t.ingest)
    resent = [m for m in ingest if dict(m.headers() or []).get(REDRIVE_HEADER)]
    assert Counter((m.key() or b"").decode() for m in resent) == Counter({"big-a": 1, "big-b": 1})
    assert {_header(m, REDRIVE_HEADER) for m in resent} == {redrive_id}
    froms = {_header(m, REDRIVEN_FROM_HEADER) for m in resent}
    marks = counts(fleet, redriven_topic(fleet.topic_prefix))
    assert set(marks) == froms and set(marks.values()) == {1}
    return redrive_id


def _header(message: Message, name: str) -> str:
    value = dict(message.headers() or []).get(name)
    assert isinstance(value, bytes), f"{name} missing"
    return value.decode()


def _check_finished(fleet: Settings) -> None:
    t = topics(fleet)
    s3 = s3_of(fleet)
    done_keys = Counter[str]()
    statuses: dict[str, list[str]] = {}
    for record in topic_messages(fleet, t.done):
        key = (record.key() or b"").decode()
        done_keys[key] += 1
        statuses.setdefault(key, []).append(json.loads(record.value() or b"{}")["status"])
    assert done_keys == Counter({"big-a": 2, "big-b": 2, "fine-c": 1, "gone-d": 1})
    assert statuses["big-a"] == ["rejected", "done"]
    latest = latest_records(fleet)
    assert {k: v.status for k, v in latest.items()} == {
        "big-a": "done",
        "big-b": "done",
        "fine-c": "done",
        "gone-d": "rejected",
    }
    assert keys(s3, fleet.buckets.images) == [
        "tests/checked/big-a.txt",
        "tests/checked/big-b.txt",
        "tests/checked/fine-c.txt",
    ]
    listed_after = invoke(fleet, dlq, "list").output
    assert listed_after.splitlines()[0] == "dead letters: 3 (2 already redriven)"
