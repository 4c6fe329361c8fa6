"""URLs in, variants out: the fetch stage on the real stack with a real local HTTP server.

Only loopback is ever contacted: the test admits 127.0.0.1/32 and the server's port; a URL
on 127.0.0.3, where a trap server listens, is refused before any connection (netguard's
unit tests prove every other range on addresses alone).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from schemas.events import DeadLetter, Request, decoder
from streams.app.registry import builtin
from streams.app.settings import Settings
from streams.app.submit import Submitter
from streams.io import clients
from streams.stages.fetch.settings import HostRule
from streams.stages.fetch.stage import object_key
from tests.conftest import Stack
from tests.integration.streams.runner.fleet import (
    fleet_settings,
    init_fleet,
    latest_records,
    read_topic,
    run_until_done,
    start_thread,
    topics,
)
from tests.support.http_servers import LoopbackServer
from tests.support.photos import big_photo, encode, photo

STAGES = ("fetch", "validate", "categorize", "enhance", "compress")
HEALTHY = 100
FAST = Request(restore="none", formats=["webp"], variants=["preview"])


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


def fetch_fleet(stack: Stack, prefix: str, port: int) -> Settings:
    """A fleet whose fetch stage may reach this test's loopback server, and nothing else
    internal; quick retries so a flaky URL comes back within the test."""
    base = fleet_settings(Settings(kafka=stack.kafka, s3=stack.s3), prefix, pool_workers=2)
    fetch = base.stages.fetch.model_copy(
        update={
            "allow_networks": ("127.0.0.1/32",),
            "allowed_ports": (80, 443, port),
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1.0,
            "batch_budget_s": 4.0,
        }
    )
    return base.model_copy(update={"stages": base.stages.model_copy(update={"fetch": fetch})})


def test_urls_are_fetched_once_each_and_refusals_are_dead_letters(
    stack: Stack, unique_name: Callable[[str], str], server: LoopbackServer
) -> None:
    trap = LoopbackServer("127.0.0.3", port=server.port).start()
    try:
        _urls_fetched_once_each(stack, unique_name, server, trap)
    finally:
        trap.stop()


def _urls_fetched_once_each(
    stack: Stack, unique_name: Callable[[str], str], server: LoopbackServer, trap: LoopbackServer
) -> None:
    fleet = fetch_fleet(stack, unique_name("pf"), server.port)
    init_fleet(fleet)
    ring = encode(big_photo("coffee", 1600), "JPEG", quality=90)
    cat = encode(photo("chelsea"), "PNG")
    server.serve_bytes("/rings/gold.jpg", ring)
    server.serve_bytes("/cats/chelsea.png", cat, "image/png")
    server.redirect("/r/cat", "/cats/chelsea.png")
    server.flaky("/flaky.jpg", failures=1, body=ring)
    server.not_found("/missing.jpg")
    server.html("/page.html")
    urls = {
        "ring": server.url("/rings/gold.jpg"),
        "redirected": server.url("/r/cat"),
        "flaky": server.url("/flaky.jpg"),
        "missing": server.url("/missing.jpg"),
        "page": server.url("/page.html"),
        "internal": trap.url("/secret"),
    }
    submitter = Submitter(fleet)
    ids = {name: submitter.submit_url(url, request=FAST).image_id for name, url in urls.items()}
    submitter.flush()
    specs = [builtin(name, fleet) for name in STAGES]
    done = run_until_done(fleet, specs, len(urls), timeout=180)

    status = {r.key: json.loads(r.value)["status"] for r in done}
    assert Counter(r.key for r in done) == Counter(ids.values()), "each image once on done"
    expected = {"ring": "done", "redirected": "done", "flaky": "done"}
    expected |= {"missing": "rejected", "page": "rejected", "internal": "rejected"}
    assert {name: status[ids[name]] for name in urls} == expected

    letters = [decoder(DeadLetter).decode(r.value) for r in read_topic(fleet, topics(fleet).dlq)]
    by_image = {letter.image_id: letter for letter in letters}
    assert {name: by_image[ids[name]].reason_class for name in ("missing", "page", "internal")} == {
        "missing": "http_404",
        "page": "not_an_image",
        "internal": "ssrf",
    }
    assert by_image[ids["internal"]].stage == "fetch"
    assert "127.0.0.3 is loopback" in by_image[ids["internal"]].reason
    assert not by_image[ids["internal"]].reason.startswith("ssrf:")  # the class is said once
    assert not trap.contacted()
    assert all(letter.stage == "fetch" for letter in letters)

    records = latest_records(fleet)
    ring_fetch = records[ids["ring"]].fetch
    assert ring_fetch is not None
    assert (ring_fetch.status, ring_fetch.bytes, ring_fetch.attempts) == (200, len(ring), 1)
    assert ring_fetch.sha256 == hashlib.sha256(ring).hexdigest()
    assert ring_fetch.content_type == "image/jpeg" and ring_fetch.final_url == urls["ring"]
    assert records[ids["ring"]].route == list(STAGES)
    # A URL rejected at fetch planned only fetch and validate: it never reached the rest.
    for name in ("missing", "page", "internal"):
        assert records[ids[name]].route == ["fetch", "validate"], name
    redirected = records[ids["redirected"]].fetch
    assert redirected is not None and redirected.final_url == server.url("/cats/chelsea.png")
    assert redirected.bytes == len(cat) and redirected.redirects
    flaky = records[ids["flaky"]].fetch
    assert flaky is not None and flaky.attempts == 2 and flaky.status == 200
    assert all(len(records[ids[n]].variants) == 1 for n in ("ring", "redirected", "flaky"))

    # The body is in the incoming bucket under the URL's key, byte for byte.
    s3 = clients.s3(fleet.s3)
    key = object_key(urls["ring"])
    assert clients.read_object(s3, fleet.buckets.incoming, key) == ring
    # The server saw each good URL once (the flaky one twice); the trap saw nothing.
    assert Counter(server.paths()) == Counter(
        {
            "/rings/gold.jpg": 1,
            "/r/cat": 1,
            "/cats/chelsea.png": 1,
            "/flaky.jpg": 2,
            "/missing.jpg": 1,
            "/page.html": 1,
        }
    )


def test_a_tarpit_host_does_not_hold_up_the_others(
    stack: Stack, unique_name: Callable[[str], str]
) -> None:
    """A host that answers after 30 s costs the healthy host's URLs one short batch, not
    30 s: the slow download is cut at the batch's deadline and deferred."""
    with (
        LoopbackServer("127.0.0.1") as healthy,
        LoopbackServer("127.0.0.2", port=healthy.port) as tarpit,
    ):
        fleet = fetch_fleet(stack, unique_name("pf"), healthy.port)
        fetch = fleet.stages.fetch.model_copy(
            update={
                "allow_networks": ("127.0.0.1/32", "127.0.0.2/32"),
                "batch_budget_s": 2.0,
                # Politeness wide open: the healthy host is limited by the tarpit alone.
                "default_host": HostRule(rate_per_s=500, burst=100, concurrency=16),
            }
        )
        fleet = fleet.model_copy(
            update={"stages": fleet.stages.model_copy(update={"fetch": fetch})}
        )
        init_fleet(fleet)
        body = encode(photo("coffee"), "JPEG", quality=80)
        tarpit.tarpit("/slow.jpg", wait_s=30, body=body)
        submitter = Submitter(fleet)
        slow_id = submitter.submit_url(tarpit.url("/slow.jpg"), request=FAST).image_id
        healthy_ids = []
        for n in range(HEALTHY):
            if n % 20 == 10:  # more of the tarpit's URLs among them, in every batch
                tarpit.tarpit(f"/slow-{n}.jpg", wait_s=30, body=body)
                submitter.submit_url(tarpit.url(f"/slow-{n}.jpg"), request=FAST)
            healthy.serve_bytes(f"/ok/{n}.jpg", body)
            healthy_ids.append(submitter.submit_url(healthy.url(f"/ok/{n}.jpg")).image_id)
        submitter.flush()
        # validate sends the URL submissions to fetch; fetch sends them back to validate.
        workers = [start_thread(fleet, builtin(name, fleet)) for name in ("validate", "fetch")]
        started = time.monotonic()
        try:
            fetched: set[str] = set()
            while len(fetched) < HEALTHY and time.monotonic() - started < 30:
                fetched = {
                    r.key
                    for r in read_topic(fleet, topics(fleet).ingest)
                    if r.value.startswith(b'{"submitted"')  # fetch's envelopes back to validate
                }
                time.sleep(0.2)
            seconds = time.monotonic() - started
        finally:
            for worker in workers:
                worker.stop()
    assert fetched == set(healthy_ids), "every healthy URL fetched, the tarpit's not"
    # The first cut pauses the tarpit host; its other URLs are deferred without a request.
    assert seconds < 15, f"the healthy URLs took {seconds:.1f} s behind a 30 s tarpit"
    assert len(tarpit.requests) <= 2 * 16, "the paused tarpit host is not asked again"
    slow = latest_records(fleet)[slow_id]
    assert slow.stages["fetch"].outcome == "deferred"
    # Cut at the deadline itself, or deferred because a sibling's cut paused its host.
    assert slow.fetch is not None
    last = slow.fetch.last_error or ""
    assert last.startswith("deadline") or last.endswith("retry_after"), last
    assert [w.error for w in workers] == [None, None]
