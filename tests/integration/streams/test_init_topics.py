"""`pixelfleet init` on topics made by hand before it: it grows the topics whose records
expire, never a compacted one, and puts a wrong cleanup policy right."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import fleet_settings
from tests.integration.streams.test_cli_fleet import _cli


def test_init_never_grows_a_compacted_topic_and_makes_inboxes_delete(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    fleet = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
    assert fleet.topics.partitions == 4
    t = Topics(fleet.topic_prefix)
    admin = clients.admin(fleet.kafka)
    before = [
        NewTopic(t.metadata, 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic(t.erasures, 2, 1, config={"cleanup.policy": "compact"}),
        # An inbox a broker or a person created compacted: its records would never expire.
        NewTopic(t.ingest, 2, 1, config={"cleanup.policy": "compact"}),
    ]
    for future in admin.create_topics(before).values():
        future.result(30)

    first = _cli(fleet, "init")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    for name, have in ((t.metadata, "1 partition"), (t.erasures, "2 partitions")):
        kept = [line for line in lines if line.startswith(f"kept topic {name} ")]
        assert kept == [
            f"kept topic {name} at {have}, not 4: it is compacted, and growing it would send "
            "keys to new partitions while their old records stay on the old ones (lookups "
            "miss them, deleted images come back); to give it more, create a new topic with "
            "that count and copy each key's latest record into it"
        ]
    assert f"grew topic {t.ingest} from 2 to 4 partitions (keys remap)" in lines
    # (retention.ms is already the broker's default of 7 days: only the policy changes.)
    assert f"set cleanup.policy=delete on {t.ingest}" in lines
    # A compacted topic init creates gets the configured count.
    assert f"created topic {t.dlq_redriven} (4 partitions)" in lines

    found = admin.list_topics(timeout=30).topics
    counts = {name: len(found[name].partitions) for name in (t.metadata, t.erasures, t.ingest)}
    assert counts == {t.metadata: 1, t.erasures: 2, t.ingest: 4}
    policies = {}
    for name in (t.metadata, t.ingest, t.done, t.dlq, t.dlq_redriven):
        resource = ConfigResource(ResourceType.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(timeout=30)
        policies[name] = config["cleanup.policy"].value
    assert policies == {
        t.metadata: "compact",
        t.ingest: "delete",
        t.done: "delete",
        t.dlq: "delete",
        t.dlq_redriven: "compact",
    }

    # Nothing left to change; what is kept is said again, every run, until it is dealt with.
    again = _cli(fleet, "init")
    assert again.returncode == 0, again.stderr
    said = again.stdout.splitlines()
    assert said[-1] == "init: nothing to change"
    assert [line.split(" at ")[0] for line in said[:-1]] == [
        f"kept topic {t.metadata}",
        f"kept topic {t.erasures}",
    ]
