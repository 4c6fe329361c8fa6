"""A longer chaos run than the test suite's: many SIGKILLs across two chained stages.

    python bench/soak_chaos.py [--events 3000] [--kills 60] [--replicas 2]

Starts a throwaway local stack (or uses PIXELFLEET_KAFKA_BOOTSTRAP/PIXELFLEET_S3_ENDPOINT),
runs `replicas` worker processes per stage with the test stages, kills a random one with
SIGKILL every 0.2-1.5 s and restarts it under the same replica id, then checks that every
image is on the done topic exactly once, in the middle topic exactly once, has exactly one
metadata record per stage, and exactly one object per expected key. Prints the figures;
exits 1 if a check fails. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

# The test stages and helpers live in tests/; make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.devstack.stack import stack_for_tools
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, stack_for_tools(Path(tmp) / "stack") as base:
        try:
            prefix = f"soak-{uuid.uuid4().hex[:8]}"
            fleet = fleet_settings(base, prefix, session_timeout_ms=6000, batch_budget_s=2.0)
            init_fleet(fleet)
            ids = submit_ids(fleet, [f"pace-{i:06d}" for i in range(args.events)])
            workers = Workers(fleet, Path(tmp))
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
                if time.monotonic() - started > 1800:
                    print("not finished after 30 minutes", file=sys.stderr)
                    return 1
                time.sleep(1)
            elapsed = time.monotonic() - started
            codes = workers.stop_all()
            check_exactly_once(fleet, ids)
            exits = sorted(set(codes.values()))
            print(f"{len(ids)} images, 2 stages, {kills} SIGKILLs, {elapsed:.0f} s: exactly once")
            print(f"worker exit codes at the end: {exits}")
            return 0
        except AssertionError as exc:
            print(f"CHECK FAILED: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
