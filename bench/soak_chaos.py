"""A longer chaos run than the test suite's: many SIGKILLs across two chained stages.

    python bench/soak_chaos.py [--events 3000] [--kills 60] [--replicas 2]

Starts a throwaway local stack (or uses PIXELFLEET_KAFKA_BOOTSTRAP/PIXELFLEET_S3_ENDPOINT,
refused unless on this machine),
runs `replicas` worker processes per stage with the test stages, kills a random one with
SIGKILL every 0.2-1.5 s and restarts it under the same replica id, then checks that every
image is on the done topic exactly once, in the middle topic exactly once, has exactly one
metadata record per stage, and exactly one object per expected key. Prints the figures;
exits 1 if a check fails or the images are not all done 30 minutes after the kills start.
However it ends, every worker is stopped and the run's topics, consumer groups and buckets
are deleted. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The test stages and helpers live in tests/; make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchstack import loopback_stack, new_prefix, remove_prefix

from streams.app.settings import Settings
from tests.integration.streams.runner.fleet import (
    Workers,
    check_exactly_once,
    fleet_settings,
    init_fleet,
    read_topic,
    submit_ids,
    topics,
)

SPECS = (
    "tests.integration.streams.runner.stages:FIRST",
    "tests.integration.streams.runner.stages:SECOND",
)
FINISH_S = 1800.0  # from the first kill until every image must be done


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, loopback_stack(Path(tmp) / "stack") as base:
        fleet = fleet_settings(
            base, new_prefix("soak-"), session_timeout_ms=6000, batch_budget_s=2.0
        )
        workers = Workers(fleet, Path(tmp))
        try:
            init_fleet(fleet)
            return soak(args, fleet, workers)
        except AssertionError as exc:
            print(f"CHECK FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            # Whatever ended the run (the time limit, a failed check, any other error):
            # no worker outlives it, and nothing it made stays on the stack.
            stop_everything(workers)
            remove_prefix(fleet)


def stop_everything(workers: Workers, grace_s: float = 60.0) -> None:
    """SIGTERM every worker still running, then SIGKILL what overstays the grace: unlike
    Workers.stop_all, one that will not stop does not leave the others running."""
    alive = [proc for proc in workers.procs.values() if proc.poll() is None]
    for proc in alive:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in alive:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def soak(args: argparse.Namespace, fleet: Settings, workers: Workers) -> int:
    ids = submit_ids(fleet, [f"pace-{i:06d}" for i in range(args.events)])
    for spec in SPECS:
        for r in range(args.replicas):
            workers.start(spec, f"r{r}")
    rng = random.Random(args.seed)
    started = time.monotonic()
    kills = 0
    while kills < args.kills:
        time.sleep(rng.uniform(0.2, 1.5))
        victim = rng.choice(sorted(workers.procs))
        workers.kill(victim)
        workers.start(*victim)
        kills += 1
        done = len({r.key for r in read_topic(fleet, topics(fleet).done)})
        who = f"{victim[0].rsplit(':', 1)[1]}/{victim[1]}"
        print(f"kill {kills:3d}: {who:12} done {done}/{len(ids)}", flush=True)
    while len({r.key for r in read_topic(fleet, topics(fleet).done)}) < len(ids):
        if time.monotonic() - started > FINISH_S:
            print(f"not finished after {FINISH_S / 60:.0f} minutes", file=sys.stderr)
            return 1
        time.sleep(1)
    elapsed = time.monotonic() - started
    codes = workers.stop_all()
    check_exactly_once(fleet, ids)
    exits = sorted(set(codes.values()))
    print(f"{len(ids)} images, 2 stages, {kills} SIGKILLs, {elapsed:.0f} s: exactly once")
    print(f"worker exit codes at the end: {exits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
