"""What the benches that load a Kafka/MinIO stack share: the stack, refused unless it is on
this machine, and the removal of what a run created on it.

Not a benchmark. The load tests must talk only to 127.0.0.0/8 (or ::1): a stack named by
PIXELFLEET_KAFKA_BOOTSTRAP / PIXELFLEET_S3_ENDPOINT elsewhere is refused before anything is
sent to it. Every run works under a fresh prefix (its topics, consumer groups and buckets
all carry it), and `remove_prefix` deletes those afterwards, even when the run failed: a
stack the environment names is often someone's long-lived dev stack, and a fetch run
leaves GBs behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from minio.deleteobjects import DeleteObject

from streams.app import admin
from streams.app.settings import Settings
from streams.config.settings import FleetSettings
from streams.demo.workers import WorkerProcess
from streams.devstack.settings import LocalSettings
from streams.devstack.stack import stack_for_tools
from streams.io import clients

ADMIN_TIMEOUT_S = 30.0


class NotLoopback(SystemExit):
    """A stack endpoint off this machine: the bench stops before it sends anything."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name localhost; a name that must be resolved is refused,
    since what it resolves to can change between the check and the connection."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(address: str) -> str:
    """The host of `host:port`, `[v6]:port` or `scheme://host:port/...`."""
    parsed = urllib.parse.urlsplit(address if "://" in address else f"//{address}")
    return parsed.hostname or ""


def kafka_hosts(bootstrap: str) -> list[str]:
    """The hosts of a bootstrap list (`a:9092,b:9092`, an entry may carry a scheme)."""
    return [_host_of(entry) for entry in bootstrap.split(",") if entry.strip()]


def check_loopback(settings: FleetSettings) -> None:
    """Refuse a stack whose Kafka or S3 endpoint is not on this machine."""
    wrong = [h for h in kafka_hosts(settings.kafka.bootstrap) if not is_loopback(h)]
    if not kafka_hosts(settings.kafka.bootstrap):
        wrong.append(repr(settings.kafka.bootstrap))
    s3_host = _host_of(settings.s3.endpoint)
    if not is_loopback(s3_host):
        wrong.append(s3_host or repr(settings.s3.endpoint))
    if wrong:
        raise NotLoopback(
            f"refusing to run: the benches load only a stack on this machine (127.0.0.0/8, "
            f"::1 or localhost), and PIXELFLEET_KAFKA_BOOTSTRAP / PIXELFLEET_S3_ENDPOINT name "
            f"{', '.join(wrong)}. Unset them to let the bench start a throwaway local stack."
        )


@contextlib.contextmanager
def loopback_stack(data_dir: Path) -> Iterator[LocalSettings]:
    """The stack the environment names (refused unless on loopback), or a throwaway local
    one in data_dir, stopped afterwards (streams.devstack.stack.stack_for_tools)."""
    with stack_for_tools(data_dir) as local:
        check_loopback(local)
        yield local


def new_prefix(name: str) -> str:
    """A fresh prefix: lower case and short, so that buckets can be named after it."""
    return f"{name}{uuid.uuid4().hex[:8]}"


def prefixed(local: FleetSettings, prefix: str, partitions: int) -> Settings:
    """Settings on the given stack whose topics, groups and buckets all carry `prefix`."""
    buckets = {"incoming": "in", "work": "work", "images": "img", "quarantine": "q"}
    base = Settings(kafka=local.kafka, s3=local.s3)
    return base.model_copy(
        update={
            "topic_prefix": prefix,
            "topics": base.topics.model_copy(update={"partitions": partitions}),
            "buckets": base.buckets.model_copy(
                update={field: f"{prefix}-{short}" for field, short in buckets.items()}
            ),
        }
    )


@contextlib.contextmanager
def fresh_fleet(local: FleetSettings, name: str, partitions: int) -> Iterator[Settings]:
    """Like tests.support.catalog_kit.fresh_fleet (topics and buckets of a new prefix,
    initialised), but with buckets of the prefix's own, all of it removed on the way out."""
    settings = prefixed(local, new_prefix(name), partitions)
    try:
        admin.init(settings, clients.admin(settings.kafka), clients.s3(settings.s3))
        yield settings
    finally:
        remove_prefix(settings)


def _warn(what: str) -> None:
    print(f"warning: cleaning up: {what}", file=sys.stderr, flush=True)


def remove_prefix(settings: FleetSettings, extra_buckets: tuple[str, ...] = ()) -> None:
    """Delete the consumer groups and topics whose names hold the run's prefix, and its
    buckets with every object in them. Best effort: what cannot be removed is named on
    stderr, and the run's own error, if any, is the one that propagates."""
    prefix = settings.topic_prefix
    try:
        kafka = clients.admin(settings.kafka)
        listed = kafka.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S)
        groups = [g.group_id for g in listed.result().valid if prefix in g.group_id]
        if groups:
            for group, done in kafka.delete_consumer_groups(
                groups, request_timeout=ADMIN_TIMEOUT_S
            ).items():
                try:
                    done.result()
                except Exception as exc:  # a group with members left, say
                    _warn(f"consumer group {group}: {exc}")
        topics = [t for t in kafka.list_topics(timeout=ADMIN_TIMEOUT_S).topics if prefix in t]
        if topics:
            for topic, done in kafka.delete_topics(
                topics, operation_timeout=ADMIN_TIMEOUT_S
            ).items():
                try:
                    done.result()
                except Exception as exc:
                    _warn(f"topic {topic}: {exc}")
    except Exception as exc:
        _warn(f"the topics and groups of {prefix}*: {exc}")
    b = settings.buckets
    for bucket in {b.incoming, b.work, b.images, b.quarantine, *extra_buckets}:
        if prefix in bucket or bucket in extra_buckets:  # never a shared default bucket
            remove_bucket(settings, bucket)


def remove_bucket(settings: FleetSettings, bucket: str) -> None:
    """Empty the bucket and delete it; best effort, as remove_prefix."""
    try:
        s3 = clients.s3(settings.s3)
        if not s3.bucket_exists(bucket):
            return
        names = [o.object_name or "" for o in s3.list_objects(bucket, recursive=True)]
        for error in s3.remove_objects(bucket, [DeleteObject(name) for name in names]):
            _warn(f"s3://{bucket}/{error.name}: {error.message}")
        s3.remove_bucket(bucket)
    except Exception as exc:
        _warn(f"bucket {bucket}: {exc}")


def wait_ready(worker: WorkerProcess, timeout_s: float = 120) -> None:
    """Until the worker's /readyz answers 2xx (joined its group, probes answering); fails
    when it exits first or never gets there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(
                f"{worker.stage} worker exited {worker.process.returncode} before it was "
                f"ready; see {worker.log}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{worker.metrics_port}/readyz", timeout=2
            ):
                return  # urlopen raises on anything but 2xx
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{worker.stage} worker not ready in {timeout_s:.0f} s; see {worker.log}")
