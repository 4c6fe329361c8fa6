"""What a worker checks before it consumes: the buckets and the work bucket's lifecycle rule.

A worker started against an object store that `pixelfleet init` never prepared would take
its first batch, fail every upload as a transient error and retry forever; a work bucket
without its expiry rule fills up silently. Both are caught here, at start-up, as one clear
error that names the command that fixes them.

S3 being unreachable or refusing the lifecycle read is not decided here: the runner already
treats an unreachable store as transient and retries, and a least-privilege key may lack
GetBucketLifecycle. Those come back as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import urllib3
from minio import Minio
from minio.error import S3Error

from streams.app.admin import WORK_RULE_ID
from streams.config.settings import FleetSettings

FIX = "run `pixelfleet init` (the Helm chart's init Job) with the same settings"


@dataclass
class StorageCheck:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self) -> str:
        """One message for the start-up error: every problem, then the fix."""
        return "; ".join(self.problems) + f"; {FIX}"


def check_storage(settings: FleetSettings, s3: Minio) -> StorageCheck:
    b = settings.buckets
    result = StorageCheck()
    try:
        missing = [
            n for n in (b.incoming, b.work, b.images, b.quarantine) if not s3.bucket_exists(n)
        ]
        for name in missing:
            result.problems.append(f"bucket {name} does not exist")
        if b.work not in missing:
            _check_rule(settings, s3, result)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        result.warnings.append(f"could not check the buckets ({type(exc).__name__}: {exc})")
    except S3Error as exc:
        result.warnings.append(f"could not check the buckets ({exc.code}: {exc.message})")
    return result


def _check_rule(settings: FleetSettings, s3: Minio, result: StorageCheck) -> None:
    b = settings.buckets
    try:
        current = s3.get_bucket_lifecycle(b.work)
    except S3Error as exc:
        if exc.code == "AccessDenied":
            result.warnings.append(f"could not read the lifecycle rules of {b.work} (AccessDenied)")
            return
        raise
    days = [
        r.expiration.days
        for r in (current.rules if current else [])
        if r.rule_id == WORK_RULE_ID and r.expiration
    ]
    if not days:
        result.problems.append(
            f"bucket {b.work} has no lifecycle rule {WORK_RULE_ID} "
            "(its intermediates would never expire)"
        )
    elif days != [b.work_expiry_days]:
        result.problems.append(
            f"bucket {b.work} expires objects after {days[0]} day(s), the settings say "
            f"{b.work_expiry_days}"
        )
