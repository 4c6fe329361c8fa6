"""What the demo watches while the fleet works: completions on the done topic, and each
worker's own counters from its /metrics endpoint."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import ImageProcessed, decoder
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.io import clients


class DoneTail:
    """Follows `<prefix>.done` from its beginning: the latest status of every image."""

    def __init__(self, settings: Settings) -> None:
        topic = Topics(settings.topic_prefix).done
        self.consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.demo-tail")
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.status: dict[str, str] = {}
        self._decode = decoder(ImageProcessed).decode

    def poll(self, timeout_s: float = 0.2) -> None:
        for message in self.consumer.consume(1000, timeout=timeout_s):
            value = message.value()
            if message.error() is None and value:
                event = self._decode(value)
                self.status[event.image_id] = event.status

    def close(self) -> None:
        self.consumer.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, timeout_s: float = 1.0) -> Samples:
    """Every pixelfleet_* sample a worker exports, by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("pixelfleet_"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
    )


@dataclass
class StageRow:
    stage: str
    processed: int = 0  # ok + skipped
    rejected: int = 0  # rejected + failed
    waiting: int = 0  # consumer lag: in the inbox or in a batch, not yet committed
    per_second: float = 0.0
    up: bool = True


@dataclass
class StageCounters:
    """Per-stage counters over time, for throughput over the last few seconds."""

    window_s: float = 10.0
    history: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))

    def row(self, stage: str, samples: Samples | None) -> StageRow:
        if samples is None:
            return StageRow(stage, up=False)
        total = "pixelfleet_messages_total"
        processed = _total(samples, total, stage=stage, outcome="ok") + _total(
            samples, total, stage=stage, outcome="skipped"
        )
        rejected = _total(samples, total, stage=stage, outcome="rejected") + _total(
            samples, total, stage=stage, outcome="failed"
        )
        waiting = _total(samples, "pixelfleet_consumer_lag", stage=stage)
        now, done = time.monotonic(), int(processed + rejected)
        points = self.history[stage]
        points.append((now, done))
        while len(points) > 2 and now - points[0][0] > self.window_s:
            points.pop(0)
        elapsed = now - points[0][0]
        rate = (done - points[0][1]) / elapsed if elapsed > 0 else 0.0
        return StageRow(stage, int(processed), int(rejected), int(waiting), rate)
