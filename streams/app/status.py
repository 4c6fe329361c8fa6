"""What `pixelfleet status` reports for the whole fleet: lag per stage (the sum KEDA
computes), the number of dead letters and of completions."""

from __future__ import annotations

from streams.config.settings import FleetSettings
from streams.config.topics import STAGES, Topics
from streams.io.topic_reader import StageLag, TopicCount, count_records, group_lag


def fleet_status(settings: FleetSettings) -> tuple[list[StageLag], TopicCount, TopicCount]:
    """Lag of every stage, the number of dead letters, and of completions."""
    topics = Topics(settings.topic_prefix)
    lags = [group_lag(settings, s, topics.inbox(s), topics.group(s)) for s in STAGES]
    return lags, count_records(settings, topics.dlq), count_records(settings, topics.done)
