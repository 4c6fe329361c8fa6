"""What `init` manages on each topic: topics whose records expire say so in their policy,
and compacted ones are known as such (init never grows them)."""

from __future__ import annotations

from streams.config.topics import DAY_MS, STAGES, Topics


def test_every_topic_names_its_cleanup_policy_and_only_ledgers_compact() -> None:
    t = Topics("p")
    specs = {spec.name: spec for spec in t.to_create(STAGES, 6, 7)}
    compacted = {name for name, spec in specs.items() if spec.compacted}
    assert compacted == {t.metadata, t.dlq_redriven, t.webhooks_redriven, t.erasures}
    for name, spec in specs.items():
        assert spec.partitions == 6
        if name not in compacted:
            assert spec.config["cleanup.policy"] == "delete", name
    assert specs[t.ingest].config["retention.ms"] == str(7 * DAY_MS)
    assert specs[t.dlq].config == {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
