"""A worker refuses to start on buckets `pixelfleet init` did not prepare, and says the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from pydantic import SecretStr

from streams.app.admin import WORK_RULE_ID
from streams.app.preflight import check_storage
from streams.app.settings import Settings
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import ROOT, fleet_settings, init_fleet, settings_env

SPEC = "tests.integration.streams.runner.stages:PASSTHROUGH"


def _start(settings: Settings, *which: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", *(which or ("--spec", SPEC))],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_buckets_and_rule_stop_the_worker_at_start(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    s3 = clients.s3(fleet.s3)
    b = fleet.buckets

    bare = _start(fleet)
    assert bare.returncode == 1
    line = bare.stderr.strip().splitlines()[-1]
    for name in (b.incoming, b.work, b.images, b.quarantine):
        assert f"bucket {name} does not exist" in line
    assert line.startswith("error: ") and line.endswith(
        "run `pixelfleet init` (the Helm chart's init Job) with the same settings"
    )

    init_fleet(fleet)
    assert check_storage(fleet, s3).problems == []
    s3.delete_bucket_lifecycle(b.work)
    no_rule = _start(fleet)
    assert no_rule.returncode == 1
    assert f"bucket {b.work} has no lifecycle rule {WORK_RULE_ID}" in no_rule.stderr

    rule = Rule(
        ENABLED, rule_filter=Filter(prefix=""), rule_id=WORK_RULE_ID, expiration=Expiration(days=3)
    )
    s3.set_bucket_lifecycle(b.work, LifecycleConfig([rule]))
    assert check_storage(fleet, s3).problems == [
        f"bucket {b.work} expires objects after 3 day(s), the settings say 1"
    ]
    init_fleet(fleet)  # the fix the message names
    assert check_storage(fleet, s3).problems == []


def test_a_wrong_s3_secret_stops_the_worker_at_start(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    """It used to warn and then retry every batch for ever (SignatureDoesNotMatch)."""
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    wrong = fleet.model_copy(
        update={"s3": fleet.s3.model_copy(update={"secret_key": SecretStr("not-the-secret")})}
    )
    started = _start(wrong)
    assert started.returncode == 1, started.stderr
    line = started.stderr.strip().splitlines()[-1]
    assert "S3 refuses the credentials (SignatureDoesNotMatch)" in line
    assert "PIXELFLEET_S3_SECRET_KEY" in line and "pixelfleet init" not in line


def test_a_mistyped_topic_prefix_stops_a_builtin_stage_at_start(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    """It used to subscribe to a topic that does not exist and wait for ever, with one
    warning in the log."""
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    init_fleet(fleet)
    typo = fleet.model_copy(update={"topic_prefix": fleet.topic_prefix + "x"})
    started = _start(typo, "--stage", "compress")
    assert started.returncode == 1, started.stderr
    line = started.stderr.strip().splitlines()[-1]
    p = typo.topic_prefix
    assert line.startswith(f"error: no topic {p}.compress, {p}.metadata, {p}.dlq on "), line
    assert "PIXELFLEET_TOPIC_PREFIX" in line
