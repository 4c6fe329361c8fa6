"""Feeds the whole metadata topic into a CatalogIndex, from a thread of the catalog process;
and (`submissions_feed`) the ingest topic's titles and keywords into the console's listing.

Every replica reads every partition (no consumer group: nothing is committed, the index is
rebuilt from the topic's start at each start), read_committed so that aborted batches of a
stage never show. The compacted topic holds one record per image, so a start costs one read
of the images that exist, not of their history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.catalog.index import CatalogIndex
from streams.catalog.listing import ListedIndex
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.topic_reader import topic_end_offsets
from streams.observe import metrics

log = logging.getLogger(__name__)

BATCH = 2000  # records per consume call
WAIT_S = 0.25  # how long one consume call waits when the topic is quiet
LAG_EVERY_S = 2.0  # how often the records-behind gauge is refreshed
Apply = Callable[[Iterable[tuple[bytes | None, bytes | None]]], None]


class IndexFeed:
    """Start with start(); `caught_up` is set once the index holds the topic as it was then."""

    def __init__(
        self,
        settings: FleetSettings,
        index: CatalogIndex,
        *,
        topic: str | None = None,
        apply: Apply | None = None,
        label: str = "index",
        on_caught_up: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.topic = topic or Topics(settings.topic_prefix).metadata
        self.apply: Apply = apply or index.apply_many
        self.label = label
        self.on_caught_up = on_caught_up  # called on the feed's thread, before caught_up is set
        self.caught_up = threading.Event()
        self.behind = -1  # unknown until the first end offsets are read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"catalog-{label}-feed", daemon=True)
        self._position: dict[int, int] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        # assign() only: the group id is required, but the group is never joined.
        consumer = clients.consumer(
            self.settings.kafka,
            f"{self.settings.catalog.app_name(self.settings.topic_prefix)}-{self.label}",
            **{"isolation.level": "read_committed", "enable.auto.commit": False},
        )
        try:
            self._follow(consumer)
        except Exception:  # the feed is the replica's view: a dead feed must be visible
            log.exception("the catalog %s feed stopped", self.label)
            if self.label == "index":
                metrics.CATALOG_READY.set(0)
            raise
        finally:
            consumer.close()

    def _follow(self, consumer: Consumer) -> None:
        ends = self._wait_for_topic(consumer)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        targets = {p: high for p, (_, high) in ends.items()}
        self._position = {p: low for p, (low, _) in ends.items()}
        checked = 0.0
        while not self._stop.is_set():
            messages = consumer.consume(BATCH, WAIT_S)
            batch = []
            for msg in messages:
                problem = msg.error()
                if problem is not None:
                    if problem.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s feed: %s", self.label, problem)
                    continue
                batch.append((msg.key(), msg.value()))
                self._position[msg.partition() or 0] = (msg.offset() or 0) + 1
            if batch:
                self.apply(batch)
                metrics.CATALOG_RECORDS_APPLIED.labels(self.label).inc(len(batch))
                if self.label == "index":
                    metrics.CATALOG_IMAGES.set(len(self.index))
            now = time.monotonic()
            if not self.caught_up.is_set() or now - checked > LAG_EVERY_S:
                checked = now
                self._measure(consumer, targets)

    def _measure(self, consumer: Consumer, targets: dict[int, int]) -> None:
        """Records behind the end; the first time the end offsets of the start are reached
        (positions pass transaction markers too) the feed counts as caught up."""
        positions = consumer.position([TopicPartition(self.topic, p) for p in targets])
        behind = 0
        for tp in positions:
            if tp.offset >= 0:
                self._position[tp.partition] = max(self._position.get(tp.partition, 0), tp.offset)
        if self.caught_up.is_set():
            ends = {p: high for p, (_, high) in topic_end_offsets(consumer, self.topic).items()}
        else:
            ends = targets
        for p, end in ends.items():
            behind += max(0, end - self._position.get(p, 0))
        self.behind = behind
        metrics.CATALOG_RECORDS_BEHIND.labels(self.label).set(behind)
        if not self.caught_up.is_set() and behind == 0:
            if self.on_caught_up is not None:
                self.on_caught_up()
            self.caught_up.set()
            log.info("catalog %s feed caught up: %d images", self.label, len(self.index))

    def _wait_for_topic(self, consumer: Consumer) -> dict[int, tuple[int, int]]:
        while not self._stop.is_set():
            ends = topic_end_offsets(consumer, self.topic)
            if ends:
                return ends
            log.warning("waiting for topic %s (run `pixelfleet init`)", self.topic)
            self._stop.wait(2.0)
        return {}


def submissions_feed(settings: FleetSettings, index: ListedIndex) -> IndexFeed:
    """The ingest topic's hints (title, keywords) for the console's search: the metadata
    record carries neither. The topic keeps its records for topics.retention_days only, so
    after a restart the words of images submitted before that are not known any more."""
    return IndexFeed(
        settings,
        index,
        topic=Topics(settings.topic_prefix).ingest,
        apply=index.apply_submissions,
        label="submissions",
    )
