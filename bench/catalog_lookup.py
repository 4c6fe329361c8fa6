"""How fast one catalog replica answers lookups under a steady load, queueing included.

    python bench/catalog_lookup.py [--records 20000] [--seconds 30] [--rate 200]
                                   [--slow-rate 20] [--slow-seconds 5] [--partitions 12]

Writes --records finished-image records (about 1.5 KB each, as bench/catalog_catchup.py
does) to the metadata topic of a fresh prefix, starts one `pixelfleet catalog` (RocksDB
store) and waits for /readyz 200. Then it drives GET /v1/images/{id} over HTTP at --rate
requests/s for --seconds: an open-loop schedule, request i sent at start + i / rate whether
or not the earlier ones are answered, and each latency measured from that scheduled time,
so time spent queueing (in the replica or in this client) counts. Ids are drawn at random
among those written, plus 5% unknown ids that must answer 404. One aiohttp client session
with keep-alive connections; only 127.0.0.1 is contacted.

The baseline, measured first in the same run: the same schedule of GET /v1/images/{id},
the same ids (5% unknown), from a client session built the same way (connector limit,
keep-alive, timeout, the API key header), after the same warm-up, against a bare aiohttp
server in its own process that answers a known id with one fixed record and an unknown
one with a small 404 (no table, no routing, no middlewares): the cost of HTTP on this
machine. The catalog's lookup line ends with its p99 over the baseline's.

It prints, per endpoint: requests, the achieved rate (answers / seconds from the first
scheduled send to the last answer), p50/p95/p99/max latency in ms, errors (a status other
than the expected one, or no answer within 10 s), the p99 target (25 ms for a lookup on the
project's two-core machine) and the ratio p99/target. Then the same figures for
GET /v1/stats and GET /v1/lookup?phash=... (hashes of written records with 0 to 4 bits
flipped) at --slow-rate for --slow-seconds. Uses the stack the environment names (refused
unless on this machine), or starts a throwaway one; the run's topics, consumer groups and
buckets are deleted at the end. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchstack import fresh_fleet, loopback_stack

from schemas.events import encode
from streams.devstack.procs import free_port
from tests.support.catalog_kit import HEADERS, CatalogProcess, fake_record, publish

P99_TARGET_MS = 25.0
UNKNOWN_SHARE = 0.05
TIMEOUT_S = 10.0
WARM_UP = 50  # requests sent before timing: connections opened, code paths warm
UNKNOWN = "unknown-"  # the id prefix of the ids nobody wrote

# A request to make: its path and the status that counts as an answer.
Pick = Callable[[random.Random], tuple[str, int]]


@dataclass
class Figures:
    name: str
    rate: float
    seconds: float
    latencies_ms: list[float]
    errors: int
    elapsed_s: float

    @property
    def p99(self) -> float:
        done = sorted(self.latencies_ms)
        return done[max(0, math.ceil(0.99 * len(done)) - 1)] if done else math.nan

    def line(self) -> str:
        done = sorted(self.latencies_ms)
        if not done:
            return f"{self.name}: no answers"

        def at(q: float) -> float:  # nearest rank
            return done[max(0, math.ceil(q * len(done)) - 1)]

        p99 = self.p99
        return (
            f"{self.name}: {len(done):,} requests at {self.rate:g}/s for {self.seconds:g} s; "
            f"achieved {len(done) / self.elapsed_s:,.1f}/s; p50 {at(0.50):.1f} ms, "
            f"p95 {at(0.95):.1f} ms, p99 {p99:.1f} ms, max {done[-1]:.1f} ms; "
            f"{self.errors} errors; p99 target {P99_TARGET_MS:g} ms, "
            f"ratio {p99 / P99_TARGET_MS:.2f}"
        )


async def drive(
    session: aiohttp.ClientSession,
    name: str,
    pick: Pick,
    *,
    rate: float,
    seconds: float,
    rng: random.Random,
) -> Figures:
    """Sends rate * seconds requests on a fixed schedule; latency from the scheduled time."""
    latencies: list[float] = []
    errors = 0

    async def one(path: str, expected: int, scheduled: float) -> None:
        nonlocal errors
        try:
            async with session.get(path) as answer:
                await answer.read()
                ok = answer.status == expected
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        latencies.append((time.perf_counter() - scheduled) * 1000)
        errors += not ok

    count = max(1, int(rate * seconds))
    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(count):
        scheduled = start + i / rate
        # A late wake-up does not move the schedule: the delay shows in the latency.
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        path, expected = pick(rng)
        tasks.append(asyncio.create_task(one(path, expected, scheduled)))
    await asyncio.gather(*tasks)
    return Figures(name, rate, seconds, latencies, errors, time.perf_counter() - start)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the baseline server did not listen on {port}")


def flip_bits(phash: str, rng: random.Random) -> str:
    code = int(phash, 16)
    for bit in rng.sample(range(64), rng.randint(0, 4)):
        code ^= 1 << bit
    return f"{code:016x}"


def serve_bare(port: int, body: bytes) -> None:
    """The baseline server: one fixed record for every known image id, a small 404 for the
    unknown ones (as the catalog answers them)."""
    from aiohttp import web

    missing = b'{"error": "not_found"}'

    async def answer(request: web.Request) -> web.Response:
        if request.match_info["image_id"].startswith(UNKNOWN):
            return web.Response(status=404, body=missing, content_type="application/json")
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/images/{image_id}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def image_picker(ids: list[str]) -> Pick:
    """GET /v1/images/{id} of a written id, or (UNKNOWN_SHARE of them) of an unknown one."""

    def image(rng: random.Random) -> tuple[str, int]:
        if rng.random() < UNKNOWN_SHARE:
            return f"/v1/images/{UNKNOWN}{rng.getrandbits(40):010x}", 404
        return f"/v1/images/{rng.choice(ids)}", 200

    return image


def client_session(url: str) -> aiohttp.ClientSession:
    """The one way both sides' client is built: the same pool, keep-alive and headers."""
    return aiohttp.ClientSession(
        url,
        headers=HEADERS,
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
    )


async def baseline(url: str, ids: list[str], args: argparse.Namespace) -> Figures:
    image = image_picker(ids)
    async with client_session(url) as s:
        rng = random.Random(args.seed)
        await drive(s, "warm-up", image, rate=args.rate, seconds=WARM_UP / args.rate, rng=rng)
        name = "baseline: bare aiohttp GET"
        return await drive(s, name, image, rate=args.rate, seconds=args.seconds, rng=rng)


async def measure(
    url: str, ids: list[str], phashes: list[str], args: argparse.Namespace, floor: Figures
) -> None:
    image = image_picker(ids)

    def stats(_rng: random.Random) -> tuple[str, int]:
        return "/v1/stats", 200

    def lookup(rng: random.Random) -> tuple[str, int]:
        return f"/v1/lookup?phash={flip_bits(rng.choice(phashes), rng)}", 200

    async with client_session(url) as session:
        rng = random.Random(args.seed)
        warm_up_s = WARM_UP / args.rate
        await drive(session, "warm-up", image, rate=args.rate, seconds=warm_up_s, rng=rng)
        runs: list[tuple[str, Pick, float, float]] = [
            ("GET /v1/images/{id}", image, args.rate, args.seconds),
            ("GET /v1/stats", stats, args.slow_rate, args.slow_seconds),
            ("GET /v1/lookup?phash=", lookup, args.slow_rate, args.slow_seconds),
        ]
        for name, pick, rate, seconds in runs:
            figures = await drive(session, name, pick, rate=rate, seconds=seconds, rng=rng)
            line = figures.line()
            if pick is image:
                line += f"; p99 over the bare-HTTP baseline {figures.p99 / floor.p99:.2f}"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--slow-rate", type=float, default=20.0)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve-bare", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, encode(fake_record("img-00000000", random.Random(0))))
        return
    with (
        tempfile.TemporaryDirectory(prefix="catalog-lookup-") as tmp,
        loopback_stack(Path(tmp) / "stack") as local,
        fresh_fleet(local, "catlookup", args.partitions) as settings,
    ):
        rng = random.Random(args.seed)
        records = [fake_record(f"img-{i:08d}", rng) for i in range(args.records)]
        ids = [r.image_id for r in records]
        phashes = [r.original["phash"] for r in records if r.original]
        started = time.monotonic()
        written = publish(settings, records)
        print(f"wrote {written:,} records in {time.monotonic() - started:.1f} s", flush=True)
        del records

        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port)])
        try:
            wait_for_port(bare_port)
            floor = asyncio.run(baseline(f"http://127.0.0.1:{bare_port}", ids, args))
        finally:
            bare.terminate()
            bare.wait(10)
        print(floor.line(), flush=True)

        # CatalogProcess listens on 127.0.0.1 and names that address in its url: the load
        # never leaves the machine.
        replica = CatalogProcess(
            settings, Path(tmp) / "data", app_id=f"{settings.topic_prefix}-catalog"
        )
        replica.start()
        try:
            print(f"replica ready in {replica.wait_ready(timeout=600):.1f} s", flush=True)
            asyncio.run(measure(replica.url, ids, phashes, args, floor))
        finally:
            replica.stop()


if __name__ == "__main__":
    main()
