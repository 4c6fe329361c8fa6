"""The pipeline order, topic and consumer-group names, and the settings of every topic.

The order of the stages lives here and nowhere else: validate only decides *whether* an
image needs restoring; `route()` turns that into the stages it goes through.

Upstream publishes to the ingest topic, which validate reads. An image given by URL goes
through fetch first: validate sends it there without reading anything (one cheap hop),
and fetch sends the downloaded image back to validate's inbox. Images given as objects
never touch fetch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES: tuple[str, ...] = ("fetch", "validate", "categorize", "enhance", "restore", "compress")
# The stage that reads what upstream publishes.
INGEST_STAGE = "validate"
# Stages an image skips unless it needs them: fetch for a URL source, restore when
# validate plans it.
PLANNED_ONLY = frozenset({"fetch", "restore"})

DAY_MS = 24 * 3600 * 1000


def route(restore: bool, fetch: bool = False) -> list[str]:
    """The stages one image goes through, in pipeline order."""
    planned = {"restore": restore, "fetch": fetch}
    return [stage for stage in STAGES if planned.get(stage, True)]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        """Compaction keeps the latest record of a key within one partition only, so such a
        topic must never gain partitions: a key that moves to a new one leaves its old
        records (and a deletion's tombstone lands apart from what it deletes)."""
        return self.config.get("cleanup.policy") == "compact"


COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


def deleting(retention_ms: int) -> dict[str, str]:
    """The settings of a topic whose records expire: the policy too, so that a topic once
    created compacted (by hand, or by a broker's auto-creation) is put right by `init`."""
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def ingest(self) -> str:
        return f"{self.prefix}.ingest"

    @property
    def done(self) -> str:
        return f"{self.prefix}.done"

    @property
    def metadata(self) -> str:
        return f"{self.prefix}.metadata"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def webhooks_dlq(self) -> str:
        """Webhook events the notify worker gave up on, with the last status."""
        return f"{self.prefix}.webhooks.dlq"

    @property
    def dlq_redriven(self) -> str:
        """Compacted, key `partition:offset` of a dead letter: which redrive re-sent it."""
        return f"{self.prefix}.dlq.redriven"

    @property
    def webhooks_redriven(self) -> str:
        """Compacted, key `partition:offset` of a webhook dead letter: which redrive sent it."""
        return f"{self.prefix}.webhooks.redriven"

    @property
    def erasures(self) -> str:
        """Compacted, key image_id: the objects an erasure still has to delete."""
        return f"{self.prefix}.erasures"

    def inbox(self, stage: str) -> str:
        """The topic a stage consumes: validate reads what upstream publishes."""
        return self.ingest if stage == INGEST_STAGE else f"{self.prefix}.{stage}"

    def group(self, stage: str) -> str:
        return f"{self.prefix}.{stage}"

    def after(self, stage: str, route: list[str]) -> str:
        """Where a stage sends an image next: the next stage of its route, or done."""
        if stage in route:
            index = route.index(stage)
            if index + 1 < len(route):
                return self.inbox(route[index + 1])
        return self.done

    def to_create(
        self, stages: tuple[str, ...], partitions: int, retention_days: int
    ) -> list[TopicSpec]:
        retention = deleting(retention_days * DAY_MS)
        inboxes = [TopicSpec(self.inbox(s), partitions, retention) for s in stages]
        return [
            *inboxes,
            TopicSpec(self.done, partitions, retention),
            TopicSpec(self.dlq, partitions, deleting(30 * DAY_MS)),
            TopicSpec(self.webhooks_dlq, partitions, deleting(30 * DAY_MS)),
            # One record per key forever: compaction keeps the latest by key. Created with
            # `partitions`, never grown after (TopicSpec.compacted).
            TopicSpec(self.metadata, partitions, COMPACTED),
            TopicSpec(self.dlq_redriven, partitions, COMPACTED),
            TopicSpec(self.webhooks_redriven, partitions, COMPACTED),
            TopicSpec(self.erasures, partitions, COMPACTED),
        ]
