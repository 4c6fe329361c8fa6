"""`pixelfleet delete` against a real broker and MinIO: every object gone, a tombstone."""

from __future__ import annotations

from collections import Counter

import msgspec

from schemas.events import FetchInfo
from streams.app.settings import Settings
from streams.cli.ops import delete
from streams.io.topic_reader import latest_records, topic_messages
from streams.ops.ledger import erasures_topic, latest_by_key
from tests.integration.streams.ops import seed
from tests.integration.streams.ops.kit import invoke, keys, s3_of
from tests.integration.streams.runner.fleet import topics


def _tombstones(settings: Settings) -> Counter[str]:
    return Counter(
        (m.key() or b"").decode()
        for m in topic_messages(settings, topics(settings).metadata)
        if not m.value()
    )


def _all_keys(settings: Settings) -> set[str]:
    s3 = s3_of(settings)
    b = settings.buckets
    return {
        f"{bucket}:{key}"
        for bucket in (b.incoming, b.work, b.images, b.quarantine)
        for key in keys(s3, bucket)
    }


def test_delete_erases_every_object_and_the_record(fleet: Settings) -> None:
    s3 = s3_of(fleet)
    records = [
        seed.image(fleet, s3, "img-a"),
        # An id that starts with the other's: none of its objects may go.
        seed.image(fleet, s3, "img-a.b"),
        seed.image(fleet, s3, "img-d", category="other"),
        # Its variants are img-a's objects: it must go with img-a.
        seed.image(fleet, s3, "dup-c", duplicate_of="img-a"),
        seed.image(fleet, s3, "busy-e", status="processing"),
    ]
    seed.seed(fleet, s3, records)
    before = _all_keys(fleet)
    assert len(before) == 4 * seed.OBJECTS_PER_IMAGE

    dry = invoke(fleet, delete, "img-a", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: 2 image(s), 5 object(s), 1.6 KiB would be freed" in dry.output
    assert _all_keys(fleet) == before and _tombstones(fleet) == Counter()

    done = invoke(fleet, delete, "img-a")
    assert done.exit_code == 0, done.output
    assert "deleting img-a: 5 object(s), 1.6 KiB" in done.output
    assert "deleting dup-c (duplicate of img-a): 0 object(s), 0 B" in done.output
    assert f"  s3://{fleet.buckets.images}/rings/web/img-a.webp (100 B)" in done.output
    assert "deleted 2 image(s): 5 object(s), 1.6 KiB freed" in done.output
    b = fleet.buckets
    gone = {
        f"{b.incoming}:img-a/photo.jpg",
        f"{b.work}:validate/img-a/0123456789abcdef",
        f"{b.quarantine}:couldnt_denoise/img-a.png",
        f"{b.images}:rings/web/img-a.webp",
        f"{b.images}:rings/thumb/img-a.webp",
    }
    assert _all_keys(fleet) == before - gone
    assert _tombstones(fleet) == Counter({"img-a": 1, "dup-c": 1})
    assert sorted(latest_records(fleet)) == ["busy-e", "img-a.b", "img-d"]
    assert latest_by_key(fleet, erasures_topic(fleet.topic_prefix)) == {}

    # An image a stage still works on is left, and the command says so and fails.
    busy = invoke(fleet, delete, "busy-e")
    assert busy.exit_code == 2
    assert "left busy-e: still being processed (wait, or --force)" in busy.output
    assert f"{b.incoming}:busy-e/photo.jpg" in _all_keys(fleet)
    forced = invoke(fleet, delete, "busy-e", "--force")
    assert forced.exit_code == 0, forced.output
    assert not any(":busy-e" in k or "/busy-e" in k for k in _all_keys(fleet))
    assert _tombstones(fleet) == Counter({"img-a": 1, "dup-c": 1, "busy-e": 1})

    # Deleting again finds nothing and writes one more tombstone; it never fails.
    again = invoke(fleet, delete, "img-a")
    assert again.exit_code == 0, again.output
    assert (
        "deleting img-a (no record and no object: deleted already, or not an image id): "
        "0 object(s), 0 B" in again.output
    )
    assert len(_all_keys(fleet)) == 2 * seed.OBJECTS_PER_IMAGE


def test_a_fetched_body_shared_by_two_images_goes_with_the_last_of_them(
    fleet: Settings,
) -> None:
    s3 = s3_of(fleet)
    shared = seed.put(s3, fleet.buckets.incoming, "url/" + "ab" * 20 + "/cup.jpg", 500)
    fetched = FetchInfo(url="https://images.example/cup.jpg", object=shared)
    records = [
        msgspec.structs.replace(seed.image(fleet, s3, image_id), fetch=fetched)
        for image_id in ("from-url-1", "from-url-2")
    ]
    seed.seed(fleet, s3, records)
    shared_key = f"{shared.bucket}:{shared.key}"

    first = invoke(fleet, delete, "from-url-1")
    assert first.exit_code == 0, first.output
    assert shared_key in _all_keys(fleet)  # from-url-2 still points at it
    assert f"{fleet.buckets.incoming}:from-url-1/photo.jpg" not in _all_keys(fleet)

    last = invoke(fleet, delete, "from-url-2", "--dry-run")
    assert f"  s3://{shared.bucket}/{shared.key} (500 B)" in last.output  # now it is the last
    done = invoke(fleet, delete, "from-url-2")
    assert done.exit_code == 0, done.output
    assert shared_key not in _all_keys(fleet)
