"""A message whose time has not come (a host's Retry-After of an hour) costs the fetch
topic one record a batch, not one a round trip to the broker, and keeps its time, so it is
fetched when that comes: the real stack, a fetch worker on a thread, a loopback server."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Envelope, FetchInfo, decoder
from schemas.events import encode as encode_event
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.io import clients
from streams.runner.records import iso_time
from tests.conftest import Stack
from tests.integration.streams.fetch.fetch_stage_kit import envelope
from tests.integration.streams.runner.fleet import (
    Record,
    fleet_settings,
    init_fleet,
    read_topic,
    start_thread,
    topics,
)
from tests.support.http_servers import LoopbackServer
from tests.support.photos import encode, photo

BUDGET_S = 2.0  # a fetch batch stops starting work after 1.2 s and ends by 1.7 s
WATCH_S = 6.0  # about three such batches
# Three batches, and room for one more on either side. Without the lull the message went
# round in a tenth of a second or so: dozens of records.
MOST_RECORDS = 5
# Longer than what is left of any batch (1.7 s at most), so the message goes round before
# its time comes.
PARKED_S = 4.0


@pytest.fixture(scope="module")
def image() -> bytes:
    return encode(photo("coffee"), "JPEG", quality=90)


def _fleet(stack: Stack, prefix: str, server: LoopbackServer) -> Settings:
    base = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), prefix)
    fetch = base.stages.fetch.model_copy(
        update={
            "allow_networks": ("127.0.0.1/32",),
            "allowed_ports": (server.port,),
            "batch_budget_s": BUDGET_S,
        }
    )
    fleet = base.model_copy(update={"stages": base.stages.model_copy(update={"fetch": fetch})})
    init_fleet(fleet)
    return fleet


def _park(fleet: Settings, url: str, until: datetime | None, n: int = 0) -> None:
    """Puts one message on the fetch topic, parked until `until` (None: due now)."""
    waiting = envelope(url, n)
    if until is not None:
        waiting.record.fetch = FetchInfo(url=url, attempts=1, not_before=iso_time(until))
    producer = clients.producer(fleet.kafka)
    inbox = topics(fleet).inbox("fetch")
    producer.produce(inbox, key=waiting.record.image_id, value=encode_event(waiting))
    assert producer.flush(30) == 0


def _fetched(fleet: Settings, count: int) -> list[Record]:
    """The records fetch sent on once there are `count` of them (up to 40 s)."""
    sent: list[Record] = []
    for _ in range(80):
        sent = read_topic(fleet, topics(fleet).ingest)
        if len(sent) >= count:
            break
        time.sleep(0.5)
    return sent


def test_a_waiting_message_goes_round_once_a_batch(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    with LoopbackServer("127.0.0.1") as server:
        fleet = _fleet(stack, unique_name("pf"), server)
        inbox = topics(fleet).inbox("fetch")
        _park(fleet, server.url("/later.jpg"), datetime.now(UTC) + timedelta(hours=1))
        worker = start_thread(fleet, builtin("fetch", fleet))
        try:
            # The worker has joined and sent the message round once: watch from there.
            before = 0
            for _ in range(120):
                before = len(read_topic(fleet, inbox))
                if before >= 2:
                    break
                time.sleep(0.5)
            assert before >= 2, "the fetch worker never sent the message back"
            time.sleep(WATCH_S)
            went_round = len(read_topic(fleet, inbox)) - before
        finally:
            worker.stop()
        contacted = server.contacted()
    assert worker.error is None, worker.error
    assert 1 <= went_round <= MOST_RECORDS, went_round
    assert not contacted


def test_a_message_parked_for_longer_than_a_batch_keeps_its_time_and_is_fetched(
    stack: Stack, unique_name: Callable[[str], str], image: bytes
) -> None:
    """Alone, a message parked for longer than a batch lasts goes round with the time it
    came with, and is fetched once that comes: lingering used to set its time anew after
    the linger (the lingered time later each round; called back to back, never due)."""
    with LoopbackServer("127.0.0.1") as server:
        server.serve_bytes("/probe.jpg", image)
        server.serve_bytes("/soon.jpg", image)
        fleet = _fleet(stack, unique_name("pf"), server)
        worker = start_thread(fleet, builtin("fetch", fleet))
        try:
            # Once a message due now is through, the worker has joined and is idle: the
            # parked one is read at once, with its whole wait ahead of it.
            _park(fleet, server.url("/probe.jpg"), None, n=1)
            probed = _fetched(fleet, 1)
            assert len(probed) == 1, "the fetch worker never fetched the probe"
            due = iso_time(datetime.now(UTC) + timedelta(seconds=PARKED_S))
            _park(fleet, server.url("/soon.jpg"), datetime.fromisoformat(due), n=2)
            fetched = _fetched(fleet, 2)
        finally:
            worker.stop()
        paths = server.paths()
        rounds = [r for r in read_topic(fleet, topics(fleet).inbox("fetch")) if r.key == "url-2"]
    assert worker.error is None, worker.error
    assert len(fetched) == 2, "the parked message was never fetched"
    assert paths == ["/probe.jpg", "/soon.jpg"]
    record = decoder(Envelope).decode(fetched[1].value).record
    assert record.image_id == "url-2"
    assert record.fetch is not None and record.fetch.object is not None
    assert record.fetch.attempts == 2  # the one it came with, and this one
    # Ours, then each time it was sent round: all with the time it came with.
    parked = [decoder(Envelope).decode(r.value).record.fetch for r in rounds]
    assert len(parked) >= 2, "it was never sent round: it was due too soon to test anything"
    assert [info.not_before if info else None for info in parked] == [due] * len(parked)
