"""The catalog's faust app: a table of every image's latest record, fed by the metadata topic.

Replicas share one consumer group, so each holds the partitions faust assigns it, stored in
RocksDB under the data directory (or in memory, for tests). The table's own changelog topic
lets a replica that lost its disk, or took over a partition, rebuild it; a replica that kept
its disk resumes from the offsets it stored with the data, so a restart reads only what it
missed.

Keys and values stay the topic's raw bytes: nothing is decoded on the way in, which is most
of what a record costs faust, and the HTTP side decodes the few records it serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types import TP, EventT

from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.observe import metrics

log = logging.getLogger(__name__)

TABLE = "images"
# Events per take: large enough that faust's per-event await chain is paid per batch, small
# enough that a lookup right after a write waits at most TAKE_WITHIN_S.
TAKE = 1000
TAKE_WITHIN_S = 0.1
# With everything fetched, this long without a batch means the stream's buffer is empty.
QUIET_S = 5 * TAKE_WITHIN_S
# Fetched to the end, records missing, and no batch for this long: the gap is aborted
# records and markers, not records still to come.
QUIET_FALLBACK_S = 10.0
# How often the agent commits its offsets: what a restart may apply a second time.
COMMIT_EVERY_S = 1.0
# Changelog records applied to the store per write batch while recovering.
RECOVERY_BUFFER = 10_000


@dataclass
class TableProgress:
    """Where the table stands against the topic, per assigned partition."""

    applied: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    recovered: bool = False
    last_batch: float = 0.0  # monotonic time of the last batch applied
    caught_up: bool = False  # latched: once caught up, a busy topic does not unready it


# Table writes wait whenever faust's changelog buffer holds more than this many records
# (faust's default, 100, paused catch-up every few milliseconds and logged a warning each
# time). Only the catalog process runs faust, so the class default is ours to set.
ProducerBuffer.max_messages = 5000


_create_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _read_committed(thread: AIOKafkaConsumerThread, transport: Any) -> Any:
    """faust reads read_committed only under exactly_once; the catalog always needs it. The
    aiokafka consumer keeps the level as given until it starts, so it is set in between."""
    consumer = _create_consumer(thread, transport)
    consumer._isolation_level = "read_committed"
    return consumer


AIOKafkaConsumerThread._create_worker_consumer = _read_committed  # type: ignore[method-assign,assignment]


def kafka_url(settings: FleetSettings) -> str:
    return ";".join(f"kafka://{host}" for host in settings.kafka.bootstrap.split(","))


def credentials(settings: FleetSettings) -> Any:
    """faust's credentials for the broker settings the rest of the fleet uses."""
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context if kafka.security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


def build_app(settings: FleetSettings, web_options: dict[str, Any]) -> faust.App:
    catalog = settings.catalog
    advertised = catalog.advertised_url or f"http://{catalog.host}:{catalog.port}"
    return faust.App(
        catalog.app_name(settings.topic_prefix),
        broker=kafka_url(settings),
        broker_credentials=credentials(settings),
        store="memory://" if catalog.store == "memory" else "rocksdb://",
        datadir=str(catalog.data_dir),
        # The table is a view: applying a record twice is harmless, so no transactions
        # (exactly_once runs a transactional producer per partition and leaves commit
        # markers in the changelog that stall every recovery). read_committed is set on the
        # consumer below, so a stage's aborted batch still never shows.
        processing_guarantee="at_least_once",
        # A replica that dies without leaving the group holds its partitions this long.
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        topic_partitions=settings.topics.partitions,
        topic_allow_declare=True,
        # A standby copy of every partition doubles what each replica reads; a replica
        # that takes a partition over rebuilds it from the changelog instead.
        table_standby_replicas=0,
        table_cleanup_interval=3600.0,
        web_enabled=True,
        # faust's own /table and /router views would serve records and every replica's URL
        # outside /v1/, where the key check does not look; the API routes by partition
        # ownership itself (owner_url), so neither is needed.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_bind=catalog.host,
        web_port=catalog.port,
        canonical_url=advertised,
        web_application_options=web_options,
        autodiscover=False,
        # broker_max_poll_records=2000,
        # stream_buffer_maxsize=8192,
        consumer_auto_offset_reset="earliest",
    )


class CatalogTable:
    """The table, its feeding agent and the progress the readiness probe reads."""

    def __init__(self, app: faust.App, settings: FleetSettings) -> None:
        self.app = app
        self.progress = TableProgress()
        partitions = settings.topics.partitions
        # Raw bytes in and out: the record is stored as the topic holds it. (Passed as
        # serializers, not as a faust.Schema: a topic given a Schema delivered no events.)
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.topic_name = Topics(settings.topic_prefix).metadata
        self.source = app.topic(self.topic_name, key_type=bytes, value_type=bytes, **raw)
        self.table = app.Table(
            TABLE,
            default=None,
            partitions=partitions,
            # bytes keys and values are what make faust's store and changelog use "raw".
            key_type=bytes,
            value_type=bytes,
            on_recover=self._on_recover,
            recovery_buffer_size=RECOVERY_BUFFER,
            options={"driver": "rocksdict"},
        )

        async def catalog_apply(stream: AsyncIterable[Any]) -> None:
            await self._apply(stream)

        app.agent(self.source)(catalog_apply)

    async def _on_recover(self) -> None:
        # Quiet is counted from here: before any batch, a stream has not been quiet, only new.
        self.progress.last_batch = time.monotonic()
        self.progress.recovered = True
        log.info("catalog table recovered: %d partitions", len(self.assigned()))

    async def _apply(self, stream: AsyncIterable[Any]) -> None:
        """The agent: each record is its image's latest state; a tombstone deletes it."""
        committed = time.monotonic()
        async for events in stream.take_events(TAKE, within=TAKE_WITHIN_S):  # type: ignore[attr-defined]
            self.apply_events(events)
            # faust's own commit timer left up to a third of a catch-up uncommitted, all of
            # it replayed at the next start; a commit per batch cost a third of the rate.
            # faust acks a batch once this body returns, so this commits those before it.
            if time.monotonic() - committed >= COMMIT_EVERY_S:
                await self.app.consumer.commit()
                committed = time.monotonic()

    def apply_events(self, events: list[EventT[Any]]) -> None:
        table, applied = self.table, self.progress.applied
        for event in events:
            # faust finds a write's partition (store and changelog) through the event being
            # processed; take_events hands over a batch without setting it per event.
            _current_event.set(weakref.ref(event))
            key, value = event.key, event.value
            if key is not None:
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            message = event.message
            applied[message.partition] = message.offset + 1
        self.progress.last_batch = time.monotonic()
        metrics.CATALOG_RECORDS_APPLIED.labels("table").inc(len(events))

    def assigned(self) -> list[TP]:
        return [tp for tp in self.app.consumer.assignment() if tp.topic == self.topic_name]

    async def _progress(self) -> list[tuple[int, int, int]] | None:
        """(end, fetched to, applied to) per partition of this replica; None while faust is
        still starting or recovering. A partition the agent has seen nothing of since the
        assignment counts as applied to its committed offset."""
        consumer = self.app.consumer
        if not self.progress.recovered or not consumer:
            return None
        assigned = self.assigned()
        highwaters = await consumer.highwaters(*assigned) if assigned else {}
        committed = getattr(consumer, "_committed_offset", {})
        found = []
        for tp in assigned:
            position = await consumer.position(tp) or 0
            applied = self.progress.applied.get(tp.partition, committed.get(tp) or 0)
            found.append((highwaters.get(tp) or 0, position, applied))
        return found

    async def behind(self) -> int | None:
        """Offsets of this replica's partitions not applied yet (a trailing transaction
        marker counts one); None while faust is still starting or recovering."""
        progress = await self._progress()
        if progress is None:
            return None
        total = sum(max(0, end - applied) for end, _, applied in progress)
        metrics.CATALOG_RECORDS_BEHIND.labels("table").set(total)
        return total

    async def caught_up(self) -> bool:
        """Whether the table holds its partitions as the topic did at some moment; once true,
        it stays true.

        Offsets count transaction markers, which are never delivered: a partition is caught
        up when the consumer has fetched to its end and the records applied reach that
        position but for the one commit marker that ends every transaction. A tail of
        aborted records leaves a wider gap; then a quiet stream long enough says the same.
        """
        if self.progress.caught_up:
            return True
        progress = await self._progress()
        if progress is None:
            return False
        fetched = all(position >= end for end, position, _ in progress)
        applied = all(applied >= position - 1 for _, position, applied in progress)
        quiet = time.monotonic() - self.progress.last_batch
        if fetched and ((applied and quiet > QUIET_S) or quiet > QUIET_FALLBACK_S):
            self.progress.caught_up = True
        return self.progress.caught_up

    def get(self, image_id: str) -> bytes | None:
        # Straight from the store: the table's `in` check consults faust's view of active
        # partitions, which answered False for keys the store held.
        value = self.table.data.get(image_id.encode())
        return value if isinstance(value, bytes) else None

    def owner_url(self, image_id: str) -> str | None:
        """The URL of the replica that holds this image's partition; None if it is this one
        or the assignment is not known yet."""
        try:
            url = self.app.router.key_store(TABLE, image_id.encode())
        except KeyError:
            return None
        own = self.app.conf.canonical_url
        if (url.host, url.port) == (own.host, own.port):
            return None
        return str(url)


async def wait_ready(check: Any, timeout: float) -> bool:
    """Poll an async readiness check until it answers True or the time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False
