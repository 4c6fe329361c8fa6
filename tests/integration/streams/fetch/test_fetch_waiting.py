"""A message whose time has not come (a host's Retry-After of an hour) costs the fetch
topic one record a batch, not one a round trip to the broker: the real stack, a fetch
worker on a thread, and a loopback server the message never reaches."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from schemas.events import FetchInfo
from schemas.events import encode as encode_event
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.io import clients
from streams.runner.records import iso_time
from tests.conftest import Stack
from tests.integration.streams.fetch.fetch_stage_kit import envelope
from tests.integration.streams.runner.fleet import (
    fleet_settings,
    init_fleet,
    read_topic,
    start_thread,
    topics,
)
from tests.support.http_servers import LoopbackServer

BUDGET_S = 2.0  # a fetch batch stops starting work after 1.2 s and ends by 1.7 s
WATCH_S = 6.0  # about three such batches
# Three batches, and room for one more on either side. Without the lull the message went
# round in a tenth of a second or so: dozens of records.
MOST_RECORDS = 5


def test_a_waiting_message_goes_round_once_a_batch(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    with LoopbackServer("127.0.0.1") as server:
        base = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), unique_name("pf"))
        fetch = base.stages.fetch.model_copy(
            update={
                "allow_networks": ("127.0.0.1/32",),
                "allowed_ports": (server.port,),
                "batch_budget_s": BUDGET_S,
            }
        )
        fleet = base.model_copy(update={"stages": base.stages.model_copy(update={"fetch": fetch})})
        init_fleet(fleet)
        inbox = topics(fleet).inbox("fetch")
        waiting = envelope(server.url("/later.jpg"))
        later = datetime.now(UTC) + timedelta(hours=1)
        info = FetchInfo(url=server.url("/later.jpg"), attempts=1, not_before=iso_time(later))
        waiting.record.fetch = info
        producer = clients.producer(fleet.kafka)
        producer.produce(inbox, key=waiting.record.image_id, value=encode_event(waiting))
        assert producer.flush(30) == 0
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
