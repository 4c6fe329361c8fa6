"""`pixelfleet init`: topics, buckets and the work bucket's lifecycle rule. Safe to re-run."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from streams.config.settings import FleetSettings
from streams.config.topics import STAGES, Topics, TopicSpec

WORK_RULE_ID = "pixelfleet-work-expiry"


def init(
    settings: FleetSettings, admin: AdminClient, s3: Minio, kept: list[str] | None = None
) -> list[str]:
    """Make the cluster and the object store match the settings; return what changed.
    What it must leave unlike the settings (a compacted topic with fewer partitions) is
    added to `kept`, one line each: not a change, so a second run still changes nothing."""
    specs = Topics(settings.topic_prefix).to_create(
        STAGES, settings.topics.partitions, settings.topics.retention_days
    )
    return ensure_topics(admin, specs, kept) + ensure_buckets(settings, s3)


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], kept: list[str] | None = None
) -> list[str]:
    changes: list[str] = []
    existing = admin.list_topics(timeout=30).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config
                )
                for s in missing
            ]
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout=60)
                changes.append(f"created topic {spec.name} ({spec.partitions} partitions)")
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    for spec in specs:
        if spec.name not in existing:
            continue
        have = len(existing[spec.name].partitions)
        if have < spec.partitions and spec.compacted:
            if kept is not None:
                kept.append(_kept_compacted(spec, have))
        elif have < spec.partitions:
            # Partitions can only grow; growing moves keys, so say so loudly.
            admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name].result(
                timeout=60
            )
            changes.append(
                f"grew topic {spec.name} from {have} to {spec.partitions} partitions (keys remap)"
            )
        changes.extend(_ensure_config(admin, spec))
    return changes


def _kept_compacted(spec: TopicSpec, have: int) -> str:
    return (
        f"kept topic {spec.name} at {have} partition{'' if have == 1 else 's'}, not "
        f"{spec.partitions}: it is compacted, "
        "and growing it would send keys to new partitions while their old records stay on "
        "the old ones (lookups miss them, deleted images come back); to give it more, "
        "create a new topic with that count and copy each key's latest record into it"
    )


def _ensure_config(admin: AdminClient, spec: TopicSpec) -> list[str]:
    resource = ConfigResource(ResourceType.TOPIC, spec.name)
    current = admin.describe_configs([resource])[resource].result(timeout=30)
    wrong = {k: v for k, v in spec.config.items() if k not in current or current[k].value != v}
    if not wrong:
        return []
    # Only the keys we manage, each SET on its own: alter_configs would replace the topic's
    # whole dynamic config and drop what an operator set beside ours (a larger
    # max.message.bytes, say), at every `init` the chart runs before an upgrade.
    entries = [
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in sorted(wrong.items())
    ]
    update = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=entries)
    admin.incremental_alter_configs([update])[update].result(timeout=30)
    return [f"set {', '.join(f'{k}={v}' for k, v in sorted(wrong.items()))} on {spec.name}"]


def ensure_buckets(settings: FleetSettings, s3: Minio) -> list[str]:
    changes = []
    b = settings.buckets
    for name in (b.incoming, b.work, b.images, b.quarantine):
        if not s3.bucket_exists(name):
            s3.make_bucket(name)
            changes.append(f"created bucket {name}")
    rule = Rule(
        ENABLED,
        rule_filter=Filter(prefix=""),
        rule_id=WORK_RULE_ID,
        expiration=Expiration(days=b.work_expiry_days),
    )
    current = s3.get_bucket_lifecycle(b.work)
    days = [
        r.expiration.days
        for r in (current.rules if current else [])
        if r.rule_id == WORK_RULE_ID and r.expiration
    ]
    if days != [b.work_expiry_days]:
        others = [r for r in (current.rules if current else []) if r.rule_id != WORK_RULE_ID]
        s3.set_bucket_lifecycle(b.work, LifecycleConfig([*others, rule]))
        changes.append(
            f"set lifecycle on {b.work}: objects expire after {b.work_expiry_days} day(s)"
        )
    return changes
