"""How fast one catalog replica catches up with the metadata topic, against a plain
consumer reading the same records, and how little a restart re-reads.

    python bench/catalog_catchup.py [--records 200000] [--partitions 12]

Writes --records finished-image records (about 1.5 KB each, in transactions of 5,000 as the
stages write them) to the metadata topic of a fresh prefix. The baseline, in the same run:
bench/catalog_plain_read.py, a child process that reads the topic to its end and decodes
every record as an ImageRecord, timed from its start to its exit. Then one `pixelfleet
catalog` (RocksDB store), timed from its start to /readyz 200: that is, until its faust
table holds every record of its partitions and its index has read the whole topic. It
prints records/s for both (records / seconds from the process's start, start-up included)
and the ratio catalog/plain read; the absolute target (2,000/s) is printed beside it. Then
it stops the replica, writes 1% more records, starts it again on the same data directory
and prints how many records the table applied the second time: what it missed, not
everything again. Uses the stack the environment names (refused unless on this machine),
or starts a throwaway one; the run's topics, consumer groups and buckets are deleted at the
end. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchstack import fresh_fleet, loopback_stack

from streams.app.settings import Settings
from streams.config.topics import Topics
from tests.support.catalog_kit import CatalogProcess, fake_record, publish

TARGET_PER_S = 2000.0
READY_S = 1800.0  # for a replica to get ready, and for the plain read


def plain_read(settings: Settings, records: int) -> float:
    """Seconds for catalog_plain_read.py to read and decode the metadata topic, from its
    start to its exit."""
    script = Path(__file__).with_name("catalog_plain_read.py")
    topic = Topics(settings.topic_prefix).metadata
    command = [sys.executable, str(script), settings.kafka.bootstrap, topic, str(records)]
    command.append(str(READY_S))
    started = time.monotonic()
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=READY_S + 60
    )
    seconds = time.monotonic() - started
    if done.returncode:
        raise RuntimeError(f"the plain read failed: {done.stdout[-500:]}{done.stderr[-2000:]}")
    got = json.loads(done.stdout.splitlines()[-1])
    if got["records"] != records:
        raise RuntimeError(f"the plain read got {got['records']:,} of {records:,} records")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp,
        loopback_stack(Path(tmp) / "stack") as local,
        fresh_fleet(local, "catbench", args.partitions) as settings,
    ):
        rng = random.Random(7)
        started = time.monotonic()
        written = publish(settings, (fake_record(f"img-{i:08d}", rng) for i in range(args.records)))
        print(f"wrote {written:,} records in {time.monotonic() - started:.1f} s")

        plain_s = plain_read(settings, written)
        plain = written / plain_s
        print(
            f"baseline, a plain consumer reading and decoding them: {plain_s:.1f} s "
            f"-> {plain:,.0f} records/s",
            flush=True,
        )

        replica = CatalogProcess(
            settings, Path(tmp) / "data", app_id=f"{settings.topic_prefix}-catalog"
        )
        replica.start()
        try:
            seconds = replica.wait_ready(timeout=READY_S)
            applied = replica.metric("pixelfleet_catalog_records_applied_total", 'view="table"')
            indexed = replica.metric("pixelfleet_catalog_images")
        finally:
            replica.stop()
        rate = written / seconds
        print(
            f"first start: ready in {seconds:.1f} s; table applied {applied:,.0f}, index holds "
            f"{indexed:,.0f} images -> {rate:,.0f} records/s; ratio catalog/plain read "
            f"{rate / plain:.2f} (absolute target {TARGET_PER_S:,.0f}/s: "
            f"{rate / TARGET_PER_S:.2f} of it)"
        )

        more = max(1, args.records // 100)
        publish(settings, (fake_record(f"new-{i:08d}", rng) for i in range(more)))
        again = CatalogProcess(
            settings,
            Path(tmp) / "data",
            app_id=f"{settings.topic_prefix}-catalog",
            port=replica.port,
        )
        again.start()
        try:
            seconds = again.wait_ready(timeout=READY_S)
            applied = again.metric("pixelfleet_catalog_records_applied_total", 'view="table"')
        finally:
            again.stop()
        print(
            f"restart on the same data: ready in {seconds:.1f} s; table applied {applied:,.0f} "
            f"of {written + more:,} records ({more:,} were new)"
        )


if __name__ == "__main__":
    main()
