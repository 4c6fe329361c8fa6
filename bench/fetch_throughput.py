"""URLs/s and peak RSS of one fetch worker, against a plain loop of the same client.

    python bench/fetch_throughput.py [--urls 1000] [--hosts 20] [--concurrency 32]
                [--latency-ms 50] [--max-mb 5] [--seed 1] [--tarpit] [--trace]

`--hosts` HTTP servers on 127.0.0.1, 127.0.0.2, ... (only loopback is ever contacted) serve
bodies of 200 KB to `--max-mb` MB (seeded sizes, JPEG magic first), `--latency-ms` late.
* fleet: one `pixelfleet worker --stage fetch` process, fed what validate's admission sends
  fetch; timed from the first publish until every URL is back on the ingest topic, after a
  warm-up URL; checks every body is in the incoming bucket and there is no dead letter;
* plain: a subprocess with the stage's SafeFetcher (same policy and limits) on a thread pool
  of the same concurrency, streaming each body to S3 as the stage does.
Politeness is wide open: both sides are held by the same concurrency only. Peak RSS is each
process's VmHWM; "in flight" is the downloads' seconds added up over the wall time. `--tarpit`
adds a fleet run where one more host answers after 30 s and gets 1/21 of the URLs, timed
until the healthy URLs are back or `--tarpit-window-s` ends; `--trace` prints the worker's
batches every 5 s. Uses the stack named by PIXELFLEET_KAFKA_BOOTSTRAP and
PIXELFLEET_S3_ENDPOINT (refused unless on this machine), or starts a throwaway local one;
each run's buckets, topics and consumer groups are deleted when it ends, failed or not.
Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

# LoopbackServer and settings_env live in tests/; make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fetch_plain_loop
from benchstack import loopback_stack, remove_bucket, remove_prefix
from confluent_kafka import TopicPartition
from fetch_plain_loop import peak_rss_mb
from minio import Minio
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import ImageSubmitted, Source, StageState, encode
from streams.app import admin
from streams.app.settings import Settings
from streams.app.url_list import url_image_id
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.devstack.procs import free_port
from streams.io import clients
from streams.io.topic_reader import topic_messages
from streams.runner import records
from streams.stages.common import admit_url
from streams.stages.fetch.settings import FetchSettings, HostRule
from streams.stages.fetch.stage import object_key
from tests.integration.streams.runner.fleet import settings_env
from tests.support.http_servers import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
MIN_BYTES = 200_000
# Distinct bodies, reused across URLs: 1,000 different ones would cost the servers GBs.
DISTINCT_BODIES = 16
RATIO_TARGET, RSS_TARGET_MB, TARPIT_WAIT_S = 0.9, 400.0, 30.0
READY_TIMEOUT_S, STOP_TIMEOUT_S, WARM_TIMEOUT_S, TRACE_EVERY_S = 120.0, 60.0, 60.0, 5.0


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    urls: int  # the healthy URLs that came back
    peak_rss_mb: float
    busy_s: float  # seconds of fetch+store, added up over the URLs
    notes: str = ""

    @property
    def rate(self) -> float:
        return self.urls / self.seconds


@dataclass(frozen=True)
class Bench:
    args: argparse.Namespace
    base: Settings  # the stack's, as the workers will read it
    fetch: FetchSettings
    warm: str  # one URL each side fetches before its clock starts
    tmp: Path


def settled() -> None:
    # The last run's GBs are still being written back to disk: no run pays for another's.
    os.sync()
    time.sleep(1)


def start_servers(args: argparse.Namespace) -> tuple[list[LoopbackServer], list[str], int]:
    """The healthy servers with their routes, the URLs, and their bytes in all."""
    rng = random.Random(args.seed)
    sizes = [rng.randint(MIN_BYTES, int(args.max_mb * 1e6)) for _ in range(DISTINCT_BODIES)]
    # fetch refuses what does not start like an image; the rest needs no meaning.
    bodies = [JPEG_MAGIC + rng.randbytes(size - len(JPEG_MAGIC)) for size in sizes]
    servers: list[LoopbackServer] = []
    for n in range(args.hosts):
        port = servers[0].port if servers else 0
        server = LoopbackServer(f"127.0.0.{n + 1}", port, latency_s=args.latency_ms / 1000)
        servers.append(server.start())
    servers[0].serve_bytes("/warm.jpg", min(bodies, key=len))
    urls, total = [], 0
    for i in range(args.urls):
        server, body = servers[i % args.hosts], rng.choice(bodies)
        server.serve_bytes(f"/img/{i:05d}.jpg", body)
        urls.append(server.url(f"/img/{i:05d}.jpg"))
        total += len(body)
    return servers, urls, total


def stored_keys(s3: Minio, bucket: str, urls: list[str]) -> int:
    """How many of the URLs' objects are in the bucket. The caller deletes the bucket
    afterwards, whatever happened (a run writes GBs)."""
    names = {o.object_name or "" for o in s3.list_objects(bucket, "url/", recursive=True)}
    return len(names & {object_key(url) for url in urls})


# -- the plain loop ---------------------------------------------------------------------


def run_plain(bench: Bench, urls: list[str]) -> Run:
    s3, bucket = clients.s3(bench.base.s3), f"bf-plain-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    spec = {"fetch": bench.fetch.model_dump(mode="json"), "bucket": bucket, "urls": urls}
    (bench.tmp / "plain.json").write_text(json.dumps(spec | {"warm": bench.warm}))
    command = [sys.executable, str(Path(fetch_plain_loop.__file__)), str(bench.tmp / "plain.json")]
    settled()
    try:
        env = {**os.environ, **settings_env(bench.base)}
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                             timeout=bench.args.wait_s)  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"the plain loop failed: {out.stderr[-2000:]}")
        stored = stored_keys(s3, bucket, urls)
    finally:
        remove_bucket(bench.base, bucket)
    got = json.loads(out.stdout.splitlines()[-1])
    notes = f"objects {stored}/{len(urls)}" + (" CHECK FAILED" if stored < len(urls) else "")
    run = Run("plain loop", got["seconds"], len(urls), got["rss"], got["busy_s"], notes)
    print(f"{run.name}: {run.rate:.1f} URLs/s, peak RSS {run.peak_rss_mb:.0f} MB", flush=True)
    return run


# -- the fleet --------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    proc: subprocess.Popen[bytes]
    port: int  # of its /metrics and /readyz
    settings: Settings
    trace: bool  # print its batches every TRACE_EVERY_S

    @classmethod
    def start(cls, bench: Bench, settings: Settings, log: Path) -> Worker:
        port = free_port()
        env = {**os.environ, **settings_env(settings), "PIXELFLEET_RUNNER_REPLICA_ID": "bench"}
        env["PIXELFLEET_STAGES"] = json.dumps({"fetch": bench.fetch.model_dump(mode="json")})
        env["PIXELFLEET_RUNNER_METRICS_PORT"] = str(port)
        command = [sys.executable, "-m", "streams.cli", "worker", "--stage", "fetch"]
        with log.open("ab") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        worker = cls(proc, port, settings, bench.args.trace)
        until = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < until and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    return worker  # urlopen raises on anything but 2xx
            except OSError:
                time.sleep(0.25)
        worker.stop()
        raise RuntimeError(f"the fetch worker did not get ready: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def metrics(self) -> dict[str, float]:
        """Its own figures, summed over labels but deferrals by reason and lag by partition."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as got:
            families = text_string_to_metric_families(got.read().decode())
        m: dict[str, float] = {}
        for sample in (s for family in families for s in family.samples):
            name, labels = sample.name.removeprefix("pixelfleet_"), sample.labels
            if name == "fetch_total" and labels["outcome"] == "deferred":
                name = f"deferred {labels['reason']}"
            elif name == "consumer_lag":
                name = f"lag {labels['partition']}"
            m[name] = m.get(name, 0.0) + sample.value
        return m


def batches(m: dict[str, float], before: dict[str, float] | None = None) -> str:
    """How the worker's batches went (since `before`): why a run goes the speed it goes."""
    d = {k: v - (before or {}).get(k, 0.0) for k, v in m.items()}
    n = d.get("batch_seconds_count", 0.0)
    deferred = {k[9:]: int(v) for k, v in d.items() if k.startswith("deferred") and v}
    return (
        f"{n:.0f} batches of {d.get('batch_size_sum', 0) / (n or 1):.0f} messages, "
        f"{d.get('batch_seconds_sum', 0) / (n or 1):.2f} s each; commits "
        f"{d.get('transaction_seconds_sum', 0):.2f} s in all; deferred {deferred}"
        + (f"; lag by partition {[int(v) for k, v in m.items() if k[:3] == 'lag']}" * bool(before))
    )


def publish(settings: FleetSettings, urls: list[str]) -> None:
    """What validate sends fetch for each URL submission, built by validate's own code."""
    topics = Topics(settings.topic_prefix)
    producer = clients.producer(settings.kafka, **{"linger.ms": 5})
    for url in urls:
        now = records.now_iso()
        event = ImageSubmitted(image_id=url_image_id(url), source=Source(url=url), submitted_at=now)
        envelope = records.decode_input(topics.ingest, topics, encode(event), now)
        target = admit_url(envelope)
        state = StageState(outcome="skipped", started_at=now, seconds=0, detail=f"sent to {target}")
        out = records.success(topics, "validate", envelope, state, now, forward_to=target)[0]
        producer.produce(out.topic, out.value, out.key, headers=out.headers)
    if producer.flush(60):
        raise RuntimeError("the envelopes were not all acknowledged in 60 s")


def follow(worker: Worker, urls: list[str], healthy: list[str], wait_s: float) -> tuple[int, float]:
    """Publishes `urls`; how many of `healthy` fetch sent back to validate, in how long. The
    ingest topic is followed from its end by an assigned consumer: nothing is read twice."""
    settings = worker.settings
    topic = Topics(settings.topic_prefix).ingest
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}.bench")
    ends = []
    for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
        ends.append(TopicPartition(topic, p, high))
    consumer.assign(ends)
    wanted, back, before = {url_image_id(url) for url in healthy}, set[str](), worker.metrics()
    started = last = time.monotonic()
    try:
        publish(settings, urls)
        while back != wanted and time.monotonic() < started + wait_s and worker.proc.poll() is None:
            if worker.trace and time.monotonic() - last >= TRACE_EVERY_S:
                last, now = time.monotonic(), worker.metrics()
                print(f"  {last - started:5.0f} s {len(back):5d} back; {batches(now, before)}")
                before = now
            for msg in consumer.consume(500, timeout=0.1):
                if msg.error() is None and (msg.value() or b"").startswith(b'{"submitted"'):
                    back |= {(msg.key() or b"").decode()} & wanted
    finally:
        consumer.close()
    return len(back), time.monotonic() - started


def run_fleet(bench: Bench, name: str, healthy: list[str], extra: list[str], wait_s: float) -> Run:
    """One worker over `healthy` + `extra` URLs (shuffled), timed until `healthy` are back."""
    prefix, base = f"bf-{uuid.uuid4().hex[:8]}", bench.base
    short = {"incoming": "in", "work": "work", "images": "img", "quarantine": "q"}
    buckets = base.buckets.model_copy(update={k: f"{prefix}-{v}" for k, v in short.items()})
    topics = base.topics.model_copy(update={"partitions": bench.args.partitions})
    update = {"topic_prefix": prefix, "buckets": buckets, "topics": topics}
    settings = base.model_copy(update=update)
    s3 = clients.s3(settings.s3)
    urls = healthy + extra
    random.Random(bench.args.seed).shuffle(urls)
    try:
        admin.init(settings, clients.admin(settings.kafka), s3)
        log = bench.tmp / f"{prefix}.log"
        worker = Worker.start(bench, settings, log)
        try:
            if follow(worker, [bench.warm], [bench.warm], WARM_TIMEOUT_S)[0] != 1:
                raise RuntimeError(f"the warm-up URL did not come back: {log.read_text()[-2000:]}")
            settled()
            before = worker.metrics()  # the warm-up's batch is no part of the figures
            back, seconds = follow(worker, urls, healthy, wait_s)
            if worker.proc.poll() is not None:
                raise RuntimeError(f"{name}: the worker died: {log.read_text()[-2000:]}")
            rss, metrics = peak_rss_mb(worker.proc.pid), worker.metrics()
        finally:
            worker.stop()
        stored = stored_keys(s3, settings.buckets.incoming, healthy)
        letters = sum(1 for _ in topic_messages(settings, Topics(prefix).dlq, 30))
    finally:
        # A failed run too: its bucket holds GBs, and the stack may be a long-lived one.
        remove_prefix(settings)
    # A tarpit run may end its window short of the healthy URLs: a rate over the window.
    bad = stored < back or letters or (back < len(healthy) and not extra)
    notes = f"objects {stored}/{len(healthy)}, dead letters {letters}" + " CHECK FAILED" * bad
    if back < len(healthy):
        notes += f"; ONLY {back} of {len(healthy)} back in {wait_s:.0f} s"
    busy = metrics.get("fetch_seconds_sum", 0.0) - before.get("fetch_seconds_sum", 0.0)
    run = Run(name, seconds, back, rss, busy, f"{notes}\n{'':26}{batches(metrics, before)}")
    print(f"{name}: {run.rate:.1f} URLs/s, peak RSS {rss:.0f} MB", flush=True)
    return run


# -- main -------------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[Run]) -> bool:
    """Prints the table; whether every check passed (the targets are figures, not checks)."""
    print(f"\n{'':22}{'URLs/s':>8}{'peak RSS MB':>13}{'in flight':>11}")
    for run in runs:
        flight = f"{run.busy_s / run.seconds:.1f}/{args.concurrency}"
        print(f"{run.name:22}{run.rate:8.1f}{run.peak_rss_mb:13.0f}{flight:>11}  {run.notes}")
    ratio = runs[0].rate / runs[1].rate
    met = "met" if ratio >= RATIO_TARGET else "NOT met"
    print(f"\nratio fleet/plain {ratio:17.3f}     target >= {RATIO_TARGET}: {met}")
    for run in runs:
        met = "met" if run.peak_rss_mb < RSS_TARGET_MB else "NOT met"
        print(f"peak RSS, {run.name:20}{run.peak_rss_mb:5.0f} MB   target < 400 MB: {met}")
    if len(runs) > 2:
        cost = 1 - runs[2].rate / runs[0].rate
        print(f"a tarpit among {args.hosts} healthy hosts costs the healthy ones {cost:.0%} "
              f"({runs[2].rate:.1f} against {runs[0].rate:.1f} URLs/s)")  # fmt: skip
    return not any("CHECK FAILED" in run.notes for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, default in (("urls", 1000), ("hosts", 20), ("concurrency", 32), ("seed", 1)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--partitions", type=int, default=4, help="of the fleet's topics")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--max-mb", type=float, default=5.0, help="the largest body, in MB")
    parser.add_argument("--tarpit", action="store_true", help="add a run with a tarpit host")
    parser.add_argument("--tarpit-window-s", type=float, default=90.0)
    parser.add_argument("--wait-s", type=float, default=240.0, help="the longest other runs take")
    parser.add_argument("--trace", action="store_true", help="the worker's batches every 5 s")
    args = parser.parse_args()
    if not 1 <= args.hosts <= 200:
        parser.error("--hosts must be 1 to 200: the servers are 127.0.0.1 to 127.0.0.201")
    if args.max_mb * 1e6 < MIN_BYTES:
        parser.error(f"--max-mb must be at least {MIN_BYTES / 1e6} (the smallest body)")
    servers, urls, total = start_servers(args)
    port = servers[0].port
    # Politeness wide open: the stage's gate and the plain loop are held by the same cap.
    rule = HostRule(rate_per_s=1000, burst=1000, concurrency=args.concurrency)
    fetch = FetchSettings(allow_networks=("127.0.0.0/8",), allowed_ports=(80, 443, port),
                          concurrency=args.concurrency, pending=max(128, 4 * args.concurrency),
                          default_host=rule)  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as tmp, loopback_stack(Path(tmp) / "stack") as local:
            groups = ("kafka", "s3", "buckets", "runner", "topics")
            base = Settings(**{group: getattr(local, group) for group in groups})
            bench = Bench(args, base, fetch, servers[0].url("/warm.jpg"), Path(tmp))
            print(f"{len(urls)} URLs of {total / len(urls) / 1e6:.2f} MB on average from "
                  f"{args.hosts} hosts (+{args.latency_ms:.0f} ms a response), "
                  f"concurrency {args.concurrency}")  # fmt: skip
            runs = [run_fleet(bench, "fleet (one worker)", urls, [], args.wait_s)]
            runs.append(run_plain(bench, urls))
            if args.tarpit:
                pit = LoopbackServer(f"127.0.0.{args.hosts + 1}", port).start()
                servers.append(pit)
                paths = [f"/slow/{i:05d}.jpg" for i in range(round(args.urls / args.hosts))]
                for path in paths:
                    pit.tarpit(path, wait_s=TARPIT_WAIT_S, body=JPEG_MAGIC)
                slow, window = [pit.url(path) for path in paths], args.tarpit_window_s
                runs.append(run_fleet(bench, "fleet + tarpit host", urls, slow, window))
            passed = report(args, runs)
    finally:
        for server in servers:
            server.stop()
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
