"""`pixelfleet cleanup` against a real broker and MinIO, including a run that crashes."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner
from minio.error import S3Error

from streams.app.settings import Settings
from streams.cli.ops import cleanup
from streams.io.topic_reader import latest_records, topic_messages
from streams.ops import erase
from streams.ops.ledger import erasures_topic, latest_by_key
from streams.ops.objects import StoredObject
from streams.runner.records import now_iso
from tests.integration.streams.ops import seed
from tests.integration.streams.ops.kit import invoke, keys, s3_of
from tests.integration.streams.runner.fleet import settings_env, topics

OLD = "2026-10-01T08:00:00.000Z"


def _tombstones(settings: Settings) -> Counter[str]:
    return Counter(
        (m.key() or b"").decode()
        for m in topic_messages(settings, topics(settings).metadata)
        if not m.value()
    )


def _owners(settings: Settings) -> set[str]:
    """The image ids that still have an object in the images or incoming bucket."""
    s3 = s3_of(settings)
    found = {k.split("/")[0] for k in keys(s3, settings.buckets.incoming)}
    found |= {k.rsplit("/", 1)[1].rsplit(".", 1)[0] for k in keys(s3, settings.buckets.images)}
    return found


def _every_record_points_at_objects(settings: Settings) -> None:
    s3 = s3_of(settings)
    for record in latest_records(settings).values():
        for variant in record.variants:
            s3.stat_object(variant.object.bucket, variant.object.key)  # raises when missing


def test_cleanup_chooses_by_age_category_and_status(fleet: Settings) -> None:
    s3 = s3_of(fleet)
    records = [
        seed.image(fleet, s3, "old-ring", updated_at=OLD),
        seed.image(fleet, s3, "old-other", category="other", updated_at=OLD),
        seed.image(fleet, s3, "old-rejected", status="rejected", updated_at=OLD),
        seed.image(fleet, s3, "old-busy", status="processing", updated_at=OLD),
        seed.image(fleet, s3, "new-ring", updated_at=now_iso()),
    ]
    seed.seed(fleet, s3, records)

    dry = invoke(fleet, cleanup, "--older-than", "30d", "--category", "rings", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    # Oldest first, then by id: the order a resumed run takes too.
    assert lines == [
        "would delete old-rejected: 5 object(s), 1.6 KiB",
        "would delete old-ring: 5 object(s), 1.6 KiB",
        "dry run: 2 image(s), 10 object(s), 3.1 KiB would be freed",
    ]
    assert _tombstones(fleet) == Counter()

    rejected = invoke(fleet, cleanup, "--older-than", "30d", "--status", "rejected")
    assert rejected.exit_code == 0, rejected.output
    assert "deleted 1 image(s): 5 object(s), 1.6 KiB freed" in rejected.output
    assert _owners(fleet) == {"old-ring", "old-other", "old-busy", "new-ring"}

    rest = invoke(fleet, cleanup, "--older-than", "30d")
    assert "deleted 2 image(s): 10 object(s), 3.1 KiB freed" in rest.output
    # Still being processed, or too recent: kept.
    assert _owners(fleet) == {"old-busy", "new-ring"}
    assert sorted(latest_records(fleet)) == ["new-ring", "old-busy"]
    assert _tombstones(fleet) == Counter({"old-ring": 1, "old-other": 1, "old-rejected": 1})


def test_a_crashed_cleanup_is_finished_by_the_next_run(
    fleet: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = s3_of(fleet)
    old = [seed.image(fleet, s3, f"old-{n}", updated_at=OLD) for n in range(3)]
    seed.seed(fleet, s3, [*old, seed.image(fleet, s3, "new-0", updated_at=now_iso())])

    # The first batch's objects are never deleted: the process "dies" right after the
    # transaction that wrote the batch's tombstones.
    def crash(_self: erase.Eraser, _objects: list[StoredObject]) -> None:
        raise SystemError("killed between the tombstones and the objects")

    monkeypatch.setattr(erase.Eraser, "_remove", crash)
    crashed = CliRunner().invoke(
        cleanup, ["--older-than", "30d", "--batch", "2"], env=settings_env(fleet)
    )
    assert isinstance(crashed.exception, SystemError)
    monkeypatch.undo()

    # Two records are gone, their objects are not (orphans, never a record pointing at
    # nothing), and the erasures topic lists exactly those objects.
    assert sorted(latest_records(fleet)) == ["new-0", "old-2"]
    _every_record_points_at_objects(fleet)
    pending = latest_by_key(fleet, erasures_topic(fleet.topic_prefix))
    assert sorted(pending) == ["old-0", "old-1"]
    assert _owners(fleet) == {"old-0", "old-1", "old-2", "new-0"}
    # Part of the batch had gone before the crash: the next run must not count it again.
    s3.remove_object(fleet.buckets.images, "rings/web/old-0.webp")

    resumed = invoke(fleet, cleanup, "--older-than", "30d", "--batch", "2")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed the interrupted erasure of old-0: 4 object(s) left, 1.5 KiB" in (resumed.output)
    assert "resumed the interrupted erasure of old-1: 5 object(s) left, 1.6 KiB" in (resumed.output)
    assert "deleted 1 image(s): 5 object(s), 1.6 KiB freed" in resumed.output
    assert _owners(fleet) == {"new-0"}
    assert sorted(latest_records(fleet)) == ["new-0"]
    assert latest_by_key(fleet, erasures_topic(fleet.topic_prefix)) == {}
    # One tombstone per image: the resumed batch did not write its tombstones again.
    assert _tombstones(fleet) == Counter({"old-0": 1, "old-1": 1, "old-2": 1})
    with pytest.raises(S3Error):
        s3.stat_object(fleet.buckets.work, "validate/old-1/0123456789abcdef")
