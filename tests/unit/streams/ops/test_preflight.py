"""The worker's start-up storage check: which answers of the object store are errors, which
are only warnings."""

from __future__ import annotations

from typing import Any

import urllib3
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from streams.app.admin import WORK_RULE_ID
from streams.app.preflight import FIX, check_storage
from streams.config.settings import FleetSettings

SETTINGS = FleetSettings()
B = SETTINGS.buckets


def _rule(days: int, rule_id: str = WORK_RULE_ID) -> LifecycleConfig:
    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=""),
                rule_id=rule_id,
                expiration=Expiration(days=days),
            )
        ]
    )


class FakeS3:
    """Answers bucket_exists and get_bucket_lifecycle as a store with these buckets would."""

    def __init__(
        self,
        buckets: set[str],
        lifecycle: LifecycleConfig | None = None,
        error: Exception | None = None,
    ) -> None:
        self.buckets = buckets
        self.lifecycle = lifecycle
        self.error = error

    def bucket_exists(self, name: str) -> bool:
        if isinstance(self.error, urllib3.exceptions.HTTPError):
            raise self.error
        return name in self.buckets

    def get_bucket_lifecycle(self, name: str) -> LifecycleConfig | None:
        if isinstance(self.error, S3Error):
            raise self.error
        return self.lifecycle


def _check(s3: Any) -> tuple[list[str], list[str]]:
    result = check_storage(SETTINGS, s3)
    return result.problems, result.warnings


ALL = {B.incoming, B.work, B.images, B.quarantine}


def test_a_prepared_store_passes() -> None:
    assert _check(FakeS3(ALL, _rule(B.work_expiry_days))) == ([], [])


def test_missing_buckets_and_rules_are_errors_that_name_the_fix() -> None:
    problems, _ = _check(FakeS3({B.work}, _rule(B.work_expiry_days)))
    assert problems == [
        f"bucket {B.incoming} does not exist",
        f"bucket {B.images} does not exist",
        f"bucket {B.quarantine} does not exist",
    ]
    no_rule, _ = _check(FakeS3(ALL, _rule(1, rule_id="someone-elses")))
    assert no_rule == [
        f"bucket {B.work} has no lifecycle rule {WORK_RULE_ID} "
        "(its intermediates would never expire)"
    ]
    wrong, _ = _check(FakeS3(ALL, _rule(7)))
    assert wrong == [f"bucket {B.work} expires objects after 7 day(s), the settings say 1"]
    result = check_storage(SETTINGS, FakeS3(ALL, None))  # type: ignore[arg-type]
    assert result.error().endswith(FIX) and "pixelfleet init" in result.error()


def test_an_unreachable_store_or_a_forbidden_read_is_only_a_warning() -> None:
    down = FakeS3(ALL, error=urllib3.exceptions.MaxRetryError(None, "/", "refused"))  # type: ignore[arg-type]
    problems, warnings = _check(down)
    assert problems == [] and warnings[0].startswith("could not check the buckets")
    denied = S3Error(None, "AccessDenied", "no", "", "", "")  # type: ignore[arg-type]
    problems, warnings = _check(FakeS3(ALL, error=denied))
    assert problems == []
    assert warnings == [f"could not read the lifecycle rules of {B.work} (AccessDenied)"]
