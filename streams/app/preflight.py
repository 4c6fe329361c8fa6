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
from streams.config.topics import Topics
from streams.io import clients

FIX = "run `pixelfleet init` (the Helm chart's init Job) with the same settings"


@dataclass
class StorageCheck:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    needs_init: bool = True  # False when the problem is the credentials: init cannot help

    def error(self) -> str:
        """One message for the start-up error: every problem, then the fix."""
        return "; ".join(self.problems) + (f"; {FIX}" if self.needs_init else "")


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
        refused = _credentials_refused(s3, b.incoming) if exc.code == "AccessDenied" else None
        if refused is not None:
            result.problems.append(refused)
            result.needs_init = False
        else:
            result.warnings.append(f"could not check the buckets ({exc.code}: {exc.message})")
    return result


# What S3 answers to a key it does not know or a secret that does not match: nothing a
# retry mends (a least-privilege key gets AccessDenied instead, and only a warning).
BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})


def _credentials_refused(s3: Minio, bucket: str) -> str | None:
    """Why S3 refuses the credentials, or None. A HEAD's 403 has no body to say why (minio
    reports AccessDenied), so one listing (its first page) asks again with a GET."""
    try:
        next(iter(s3.list_objects(bucket)), None)  # the first page of keys, at most
    except S3Error as exc:
        if exc.code in BAD_CREDENTIALS:
            return (
                f"S3 refuses the credentials ({exc.code}): check PIXELFLEET_S3_ACCESS_KEY and "
                "PIXELFLEET_S3_SECRET_KEY"
            )
    except (urllib3.exceptions.HTTPError, OSError):
        pass
    return None


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


def uninitialized(settings: FleetSettings, wanted: list[str] | None = None) -> str | None:
    """Why the settings' fleet is not on this cluster, or None when it is.

    A mistyped PIXELFLEET_TOPIC_PREFIX reads as a healthy, empty fleet (no topic, no
    records, no dead letters), and a delete planned there erases real objects: the day-two
    commands ask this first, each for the topics it reads (`wanted`; default: the fleet's
    ingest, metadata and dead-letter topics). Listing every topic creates none.
    """
    topics = Topics(settings.topic_prefix)
    wanted = wanted or [topics.ingest, topics.metadata, topics.dlq]
    # Kafka's Read and Write ACLs imply Describe: a topic this principal can use is in the
    # listing, and one that is not cannot be used (its command would read it as empty).
    existing = clients.admin(settings.kafka).list_topics(timeout=10).topics
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return None
    return (
        f"no topic {', '.join(missing)} on {settings.kafka.bootstrap}: run `pixelfleet init`, "
        f"or check PIXELFLEET_TOPIC_PREFIX (now {settings.topic_prefix!r}) and that this "
        "principal may read it"
    )
