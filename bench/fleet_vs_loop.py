"""The whole fleet against the same work done by its processors in a loop.

    python bench/fleet_vs_loop.py [--folder PHOTOS] [--count 16] [--largest 0] [--processes N]

On real photographs (--folder: every JPEG, PNG or WebP in it; default: a generated set of
--count photos of 3 to 24 megapixels, made from scikit-image's samples), restore off:

* loop: validate -> categorize -> enhance -> compress called on each file by --processes
  processes (a multiprocessing pool; default: the CPUs this process may use, as a worker
  sizes its pool), the images handed from one function to the next in memory, every output
  encoded as the stages encode it; nothing is stored. The pool is started, and every
  process has imported the processors, before the clock starts, as the fleet's workers are.
* fleet: the local stack (the environment's, refused unless on this machine, or a
  throwaway one) with one `pixelfleet worker` per stage, as `pixelfleet demo` runs them, on
  a fresh prefix whose topics, groups and buckets are deleted afterwards. The clock starts
  at the first upload (`Submitter.upload_and_submit`, as `pixelfleet submit` does) and
  stops when every image is on the done topic; the workers are started, and ready, before.
  A worker that never gets ready, or dies, or images not done in DONE_WAIT_S fail the bench.

It prints images/s and megapixels/s of both, the ratio fleet/loop (target 0.9), the
machine's busy and idle CPU seconds on each side, and per stage the seconds the stage's
function spent (pixelfleet_processing_seconds) against the batch wall time
(pixelfleet_batch_seconds), and each worker's peak RSS (the worker, and its pool
processes' peaks added up, and the largest RSS of its whole process tree at one moment,
sampled every 0.25 s; target 1.5 GiB). Then, with the same workers, --steady
images one every 2 s: per hop, the time from the end of one stage's function to the start
of the next stage's batch, p50/p99 (target p99 250 ms), from the stages' own timestamps in
the metadata records. It asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchstack import fresh_fleet, loopback_stack, wait_ready
from memory import TreeRss, peak_rss_mb
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from processors import intermediate
from processors.categorize import Hints, categorize
from processors.compress import compress, largest_side, pre_reduce
from processors.enhance import choose_profile, enhance
from processors.validate import ValidateSettings, validate
from schemas.events import Request
from streams.app.settings import Settings
from streams.config.topics import Topics
from streams.demo.workers import WorkerProcesses
from streams.io.topic_reader import latest_records
from streams.runner.cpus import usable_cpus
from streams.stages.settings import StageSettings
from tests.integration.streams.runner.fleet import read_topic, settings_env
from tests.support.photos import big_photo

TARGET = 0.9
HOP_TARGET_MS = 250.0
RSS_TARGET_MB = 1536.0  # per worker, its pool included
STEADY_EVERY_S = 2.0
POOL_START_S = 120.0  # for the loop's processes to start
DONE_WAIT_S = 900.0  # a fleet run whose images are not all done by then has failed
STAGES = ["validate", "categorize", "enhance", "compress"]
WIDTHS = (2000, 2600, 3200, 3800, 4400, 5000, 5600)  # 3 to 24 MP at 4:3
SCENES = ("coffee", "chelsea", "astronaut", "rocket")


def make_photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.jpg"
        big_photo(SCENES[i % len(SCENES)], WIDTHS[i % len(WIDTHS)]).save(path, quality=92)
        files.append(path)
    return files


def make_largest(folder: Path, count: int) -> list[Path]:
    """Photos at the largest size validate accepts (its max_side and max_pixels)."""
    limits = ValidateSettings()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        scene = SCENES[i % len(SCENES)]
        aspect = big_photo(scene, 100).width / big_photo(scene, 100).height
        width = int(min(limits.max_side, (limits.max_pixels * aspect) ** 0.5))
        width = int(min(width, limits.max_side * aspect))  # the height within max_side too
        path = folder / f"largest-{i:02d}.jpg"
        big_photo(scene, width).save(path, quality=92)
        files.append(path)
    return files


def photo_set(folder: Path | None, count: int, largest: int, scratch: Path) -> list[Path]:
    """--folder's photos, or `count` generated ones; plus `largest` at validate's limits."""
    if folder is not None:
        suffixes = {".jpg", ".jpeg", ".png", ".webp"}
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    else:
        files = make_photos(scratch / "photos", count)
    return files + make_largest(scratch / "largest", largest)


def megapixels(files: list[Path]) -> float:
    total = 0
    for path in files:
        with Image.open(path) as image:
            total += image.width * image.height
    return total / 1e6


def one_in_a_loop(path: Path) -> int:
    """The four stages' work on one file, as the stage functions do it; outputs made."""
    settings = StageSettings()
    data = path.read_bytes()
    checked = validate(data, settings.validate_, "none", declared_name=path.name)
    found = categorize(Hints(file_name=path.name), settings.categorize)
    profile = choose_profile(None, found.category, settings.enhance)
    enhanced = enhance(checked.image, profile, settings.enhance)
    # compress takes encoded bytes: the same intermediate the stages hand it, reduced
    # ahead for its largest variant as enhance does
    reduced = pre_reduce(enhanced.image, largest_side(settings.compress), settings.compress)
    pixels, _ = intermediate.encode(reduced, checked.exif)
    return len(compress(pixels, settings.compress))


def machine_busy_s() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far, from /proc/stat (Linux)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / tick, idle / tick


def _started(count: Any) -> None:
    """The pool's initializer: runs once this module, and the processors with it, are
    imported in the new process."""
    with count.get_lock():
        count.value += 1


def loop_side(files: list[Path], processes: int) -> tuple[float, list[float]]:
    """Seconds for the loop, and the machine's (busy, idle) CPU seconds meanwhile."""
    context = multiprocessing.get_context("spawn")
    count = context.Value("i", 0)
    with context.Pool(processes, initializer=_started, initargs=(count,)) as pool:
        # The fleet's workers are started and ready before their clock: the same here.
        deadline = time.monotonic() + POOL_START_S
        while count.value < processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loop's {processes} processes did not start")
            time.sleep(0.05)
        started, before = time.perf_counter(), machine_busy_s()
        outputs = pool.map(one_in_a_loop, files, chunksize=1)
        seconds = time.perf_counter() - started
        cpu = [b - a for a, b in zip(before, machine_busy_s(), strict=True)]
    if not all(outputs):
        raise RuntimeError("a file made no outputs in the loop")
    return seconds, cpu


def scrape(port: int) -> dict[tuple[str, str], float]:
    """(metric sample name, stage) -> value of one worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "stage" in sample.labels:
                found[(sample.name, sample.labels["stage"])] = sample.value
    return found


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_done(settings: Settings, workers: WorkerProcesses, ids: set[str] | int) -> None:
    """Until the done topic holds these image ids (or this many distinct ones); fails when
    a worker dies or DONE_WAIT_S passes, as scale_out.stage_upstream does."""
    done_topic = Topics(settings.topic_prefix).done
    deadline = time.monotonic() + DONE_WAIT_S
    while True:
        keys = {r.key for r in read_topic(settings, done_topic)}
        if ids <= keys if isinstance(ids, set) else len(keys) >= ids:
            return
        dead = workers.dead()
        if dead:
            names = ", ".join(f"{w.stage} (exit {w.process.returncode})" for w in dead)
            raise RuntimeError(f"worker died: {names}; see {dead[0].log.parent}")
        if time.monotonic() > deadline:
            wanted = len(ids) if isinstance(ids, set) else ids
            raise RuntimeError(f"{len(keys)} of {wanted} images done in {DONE_WAIT_S:.0f} s")
        time.sleep(0.2)


def steady_hops(
    settings: Settings, workers: WorkerProcesses, submitter: Any, path: Path, count: int
) -> list[str]:
    """One image every STEADY_EVERY_S, then per hop the time from the end of the previous
    stage's function to the start of the next stage's batch (which holds that one image)."""
    ids = []
    for i in range(count):
        due = time.perf_counter() + STEADY_EVERY_S
        event = submitter.upload_and_submit(
            path, image_id=f"steady-{i}", request=Request(restore="none")
        )
        submitter.flush()
        ids.append(event.image_id)
        time.sleep(max(0.0, due - time.perf_counter()))
    wait_done(settings, workers, set(ids))
    latest = latest_records(settings)
    gaps: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    for image_id in ids:
        states = latest[image_id].stages
        for stage in STAGES:
            busy.setdefault(stage, []).append(states[stage].seconds)
        for before, after in itertools.pairwise(STAGES):
            end = _instant(states[before].started_at) + states[before].seconds
            gaps.setdefault(f"{before} -> {after}", []).append(
                (_instant(states[after].started_at) - end) * 1000
            )
    lines = [
        f"hop latency, one image every {STEADY_EVERY_S:g} s, {count} images (p50 / p99 / max):"
    ]
    # A hop waits behind the next stage's work on earlier images when that stage needs
    # about as long as the interval: the function times say whether it did.
    lines.append(
        "  function time per image, p50: "
        + ", ".join(f"{stage} {statistics.median(v):.2f} s" for stage, v in busy.items())
    )
    for hop, values in gaps.items():
        values.sort()
        p99 = values[max(0, -(-99 * len(values) // 100) - 1)]
        lines.append(
            f"  {hop:<24} {statistics.median(values):6.0f} / {p99:6.0f} / {values[-1]:6.0f} ms"
            f"   (target p99 {HOP_TARGET_MS:g} ms)"
        )
    return lines


def fleet_side(
    local: Settings, files: list[Path], logs: Path, steady: int = 0
) -> tuple[float, list[str]]:
    with fresh_fleet(local, "fvl", 12) as settings:
        workers = WorkerProcesses(STAGES, settings_env(settings), logs)
        try:
            workers.start()
            for worker in workers.workers:  # ready: joined its group, probes answering
                wait_ready(worker)
            return timed_fleet(settings, workers, files, steady)
        finally:
            workers.stop()


def timed_fleet(
    settings: Settings, workers: WorkerProcesses, files: list[Path], steady: int
) -> tuple[float, list[str]]:
    from streams.app.submit import Submitter

    submitter = Submitter(settings)
    sampler = TreeRss([worker.process.pid for worker in workers.workers])
    started, before = time.perf_counter(), machine_busy_s()
    for path in files:
        submitter.upload_and_submit(path, request=Request(restore="none"))
    submitter.flush()
    try:
        wait_done(settings, workers, len(files))
    finally:
        tree_peaks = sampler.stop()
    seconds = time.perf_counter() - started
    busy, idle = (b - a for a, b in zip(before, machine_busy_s(), strict=True))
    # Scraped before the steady run, so the figures are the throughput run's alone.
    spent = [
        f"fleet: the machine's CPUs busy {busy:.1f} s, idle {idle:.1f} s",
        "where the fleet's time went (per stage, summed over its batches):",
    ]
    for worker in workers.workers:
        got = scrape(worker.metrics_port)
        busy = got.get(("pixelfleet_processing_seconds_sum", worker.stage), 0.0)
        wall = got.get(("pixelfleet_batch_seconds_sum", worker.stage), 0.0)
        batches = got.get(("pixelfleet_batch_seconds_count", worker.stage), 0.0)
        main_mb, pool_mb = peak_rss_mb(worker.process.pid)
        spent.append(
            f"  {worker.stage:<10} function {busy:7.1f} s   batches {wall:7.1f} s "
            f"in {batches:.0f}   peak RSS {main_mb:5.0f} MB + pool {pool_mb:5.0f} MB; "
            f"whole tree at once {tree_peaks[worker.process.pid]:5.0f} MB "
            f"(target {RSS_TARGET_MB:.0f} MB)"
        )
    hops = steady_hops(settings, workers, submitter, files[0], steady) if steady else []
    return seconds, spent + hops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument(
        "--processes",
        type=int,
        default=usable_cpus(),
        help="the loop's pool (default: %(default)s)",
    )
    parser.add_argument(
        "--largest", type=int, default=0, help="add this many photos at validate's limits"
    )
    parser.add_argument(
        "--steady", type=int, default=10, help="images for the hop latency run (0: none)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-vs-loop-") as tmp:
        files = photo_set(args.folder, args.count, args.largest, Path(tmp))
        mp = megapixels(files)
        print(f"{len(files)} photos, {mp:.0f} MP in all; {args.processes} processes", flush=True)
        loop_s, loop_cpu = loop_side(files, args.processes)
        print(
            f"loop:  {loop_s:6.1f} s  {len(files) / loop_s:5.2f} images/s  {mp / loop_s:5.1f} MP/s"
        )
        with loopback_stack(Path(tmp) / "stack") as local:
            fleet_s, lines = fleet_side(
                Settings(kafka=local.kafka, s3=local.s3), files, Path(tmp) / "logs", args.steady
            )
        rate = len(files) / fleet_s
        print(f"fleet: {fleet_s:6.1f} s  {rate:5.2f} images/s  {mp / fleet_s:5.1f} MP/s")
        print(f"ratio fleet/loop {loop_s / fleet_s:.2f} (target {TARGET})")
        print(f"loop: the machine's CPUs busy {loop_cpu[0]:.1f} s, idle {loop_cpu[1]:.1f} s")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
