"""`pixelfleet init`, `submit --wait` and `status` as a user runs them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from processors.restore.settings import RestoreSettings
from streams.app.settings import Settings
from streams.app.submit import object_image_id
from streams.config.topics import STAGES, Topics
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.runner import stages
from tests.integration.streams.runner.fleet import (
    ROOT,
    fleet_settings,
    read_topic,
    settings_env,
    start_thread,
)


def _cli(
    settings: Settings, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _submit_while_two_stages_run(
    settings: Settings, *args: str
) -> subprocess.CompletedProcess[str]:
    """`pixelfleet submit ARGS` with the test's two stages running on threads."""
    first = start_thread(settings, stages.FIRST)
    second = start_thread(settings, stages.SECOND)
    try:
        return _cli(settings, "submit", *args)
    finally:
        first.stop()
        second.stop()


def test_init_creates_the_layout_and_is_idempotent(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    first = _cli(fleet, "init")
    assert first.returncode == 0, first.stderr
    t = Topics(fleet.topic_prefix)
    bookkeeping = [t.webhooks_dlq, t.dlq_redriven, t.erasures]
    expected = [t.inbox(s) for s in STAGES] + [t.done, t.dlq, t.metadata, *bookkeeping]
    for name in expected:
        assert f"created topic {name} (4 partitions)" in first.stdout
    for bucket in (
        fleet.buckets.incoming,
        fleet.buckets.work,
        fleet.buckets.images,
        fleet.buckets.quarantine,
    ):
        assert f"created bucket {bucket}" in first.stdout
    again = _cli(fleet, "init")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "init: nothing to change"

    admin = clients.admin(fleet.kafka)
    resource = ConfigResource(ResourceType.TOPIC, t.metadata)
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    assert config["cleanup.policy"].value == "compact"
    inbox = ConfigResource(ResourceType.TOPIC, t.ingest)
    assert admin.describe_configs([inbox])[inbox].result(timeout=30)["retention.ms"].value == str(
        7 * 86_400_000
    )
    lifecycle = clients.s3(fleet.s3).get_bucket_lifecycle(fleet.buckets.work)
    assert [(r.rule_id, r.expiration.days) for r in lifecycle.rules] == [
        ("pixelfleet-work-expiry", 1)
    ]
    # An operator's own setting on a topic outlives an init that changes one of ours.
    done = ConfigResource(
        ResourceType.TOPIC,
        t.done,
        incremental_configs=[
            ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([done])[done].result(timeout=30)
    longer = _cli(fleet, "init", env={"PIXELFLEET_TOPICS_RETENTION_DAYS": "8"})
    assert longer.returncode == 0, longer.stderr
    assert f"set retention.ms={8 * 86_400_000} on {t.done}" in longer.stdout
    config = admin.describe_configs([done])[done].result(timeout=30)
    assert config["max.message.bytes"].value == "2000000"
    assert config["retention.ms"].value == str(8 * 86_400_000)


def test_submit_wait_then_status(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert _cli(fleet, "init").returncode == 0
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        (folder / f"photo-{i}.jpg").write_bytes(f"not really a jpeg {i}".encode() * 50)
    submitted = _submit_while_two_stages_run(fleet, str(folder), "--wait", "--timeout", "120")
    assert submitted.returncode == 0, submitted.stderr
    ids = submitted.stdout.split()
    assert len(ids) == 5 and all(i.startswith("sha256-") for i in ids)
    assert "outcomes: 5 done" in submitted.stderr
    incoming = list(clients.s3(fleet.s3).list_objects(fleet.buckets.incoming, recursive=True))
    assert len(incoming) == 5

    overview = _cli(fleet, "status")
    assert overview.returncode == 0, overview.stderr
    assert "completed: 5   dead letters: 0" in overview.stdout
    # Piped, the table keeps whole names (rich folded it to 80 columns and cut them).
    assert f"{fleet.topic_prefix}.ingest" in overview.stdout

    record = _cli(fleet, "status", ids[0])
    assert record.returncode == 0, record.stderr
    data = json.loads(record.stdout)
    assert data["image_id"] == ids[0]
    assert data["status"] == "done"
    assert set(data["stages"]) == {"validate", "categorize"}
    missing = _cli(fleet, "status", "no-such-image")
    assert missing.returncode == 1


def test_submit_references_existing_objects_by_prefix(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert _cli(fleet, "init").returncode == 0
    s3 = clients.s3(fleet.s3)
    for key in ("shop/rings/a.jpg", "shop/rings/b.jpg", "shop/other/c.jpg"):
        s3.put_object(fleet.buckets.incoming, key, io.BytesIO(b"x" * 2000), 2000)
    result = _cli(
        fleet, "submit", f"s3://{fleet.buckets.incoming}/shop/rings/", "--title", "gold ring"
    )
    assert result.returncode == 0, result.stderr
    # A key with a "/" is not an id as it is: made safe, with its own digits after it.
    ids = [object_image_id(key) for key in ("shop/rings/a.jpg", "shop/rings/b.jpg")]
    assert ids[0].startswith("shop-rings-a.jpg-")
    assert sorted(result.stdout.split()) == sorted(ids)
    events = read_topic(fleet, Topics(fleet.topic_prefix).ingest)
    sources = sorted(json.loads(r.value)["source"]["object"]["key"] for r in events)
    assert sources == ["shop/rings/a.jpg", "shop/rings/b.jpg"]
    assert {r.key for r in events} == set(ids)
    hints = sorted(
        (json.loads(r.value)["hints"]["file_name"], json.loads(r.value)["hints"]["title"])
        for r in events
    )
    assert hints == [("a.jpg", "gold ring"), ("b.jpg", "gold ring")]


def test_worker_refuses_an_unknown_stage_or_a_restore_model_it_cannot_load(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    # Initialised, so the start-up storage check passes and the model is what fails.
    assert _cli(fleet, "init").returncode == 0
    defaults = RestoreSettings()
    models, denoiser = defaults.models, defaults.denoise_model  # the stage loads what it uses
    missing = models[denoiser].model_copy(update={"file": str(tmp_path / "dn.safetensors")})
    stages = {"restore": {"models": {**models, denoiser: missing}}}
    env = {"PIXELFLEET_STAGES": json.dumps(stages, default=lambda m: m.model_dump())}
    restore = _cli(fleet, "worker", "--stage", "restore", timeout=120, env=env)
    assert restore.returncode == 1
    assert "stage cannot start" in restore.stderr
    assert f"no weights file at {tmp_path / 'dn.safetensors'}" in restore.stderr
    unknown = _cli(fleet, "worker", "--stage", "resize", timeout=60)
    assert unknown.returncode == 1 and "no stage 'resize'" in unknown.stderr
    nothing = _cli(fleet, "worker", timeout=60)
    assert nothing.returncode == 1 and "name a stage" in nothing.stderr


def test_the_same_bytes_twice_in_one_submit_are_one_image(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert _cli(fleet, "init").returncode == 0
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    same = b"the same bytes " * 200
    (folder / "a-ring.jpg").write_bytes(same)
    (folder / "b-ring-copy.jpg").write_bytes(same)
    (folder / "sub" / "c-ring-again.jpg").write_bytes(same)
    (folder / "d-other.jpg").write_bytes(b"other bytes " * 200)
    submitted = _submit_while_two_stages_run(fleet, str(folder), "--wait", "--timeout", "120")
    assert submitted.returncode == 0, submitted.stderr
    ids = submitted.stdout.split()
    assert len(ids) == 2
    assert "skipped 2 copies: the same bytes" in submitted.stderr
    assert "outcomes: 2 done" in submitted.stderr
    kept = folder / "a-ring.jpg"
    for copy in ("b-ring-copy.jpg", "sub/c-ring-again.jpg"):
        assert f"{folder / copy}: done (as {kept})" in submitted.stderr
    t = Topics(fleet.topic_prefix)
    assert Counter(r.key for r in read_topic(fleet, t.ingest)) == Counter(ids)
    assert Counter(r.key for r in read_topic(fleet, t.done)) == Counter(ids)
    incoming = list(clients.s3(fleet.s3).list_objects(fleet.buckets.incoming, recursive=True))
    assert len(incoming) == 2


def test_submit_wait_exits_2_when_an_image_is_rejected(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A script running `submit --wait && publish` must not go on past a rejection."""
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert _cli(fleet, "init").returncode == 0
    photo = tmp_path / "refused.jpg"
    photo.write_bytes(b"refused by the test stage " * 50)
    args = (str(photo), "--image-id", "poison-1", "--wait", "--timeout", "120")
    submitted = _submit_while_two_stages_run(fleet, *args)
    assert submitted.returncode == 2, submitted.stderr
    assert "outcomes: 1 rejected" in submitted.stderr
    assert "1 image(s) not done" in submitted.stderr


def test_an_image_id_the_fleet_cannot_read_is_refused_before_anything_is_sent(
    stack: Stack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert _cli(fleet, "init").returncode == 0
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"some bytes " * 200)
    refused = _cli(fleet, "submit", str(photo), "--image-id", "my photo/1")
    assert refused.returncode == 1, refused.stderr
    assert "image id 'my photo/1' may hold only letters, digits" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert read_topic(fleet, Topics(fleet.topic_prefix).ingest) == []
    assert list(clients.s3(fleet.s3).list_objects(fleet.buckets.incoming, recursive=True)) == []


def test_a_prefix_that_was_never_initialized_is_said_not_read_as_empty(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    """A typo in PIXELFLEET_TOPIC_PREFIX used to show an all-zero status, no dead letters,
    and a delete plan for another prefix's image; and it created bookkeeping topics."""
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("typo"))
    for args in (("status",), ("status", "img-1"), ("dlq", "list"), ("delete", "img-1")):
        answer = _cli(fleet, *args, timeout=120)
        assert answer.returncode == 1, (args, answer.stdout, answer.stderr)
        assert f"no topic {fleet.topic_prefix}." in answer.stderr, args  # the one it reads
        assert "run `pixelfleet init`, or check PIXELFLEET_TOPIC_PREFIX" in answer.stderr
    existing = clients.admin(fleet.kafka).list_topics(timeout=10).topics
    assert not [name for name in existing if name.startswith(f"{fleet.topic_prefix}.")]
