"""How fast one catalog replica catches up with the metadata topic, and how little a restart
re-reads.

    python bench/catalog_catchup.py [--records 200000] [--partitions 12]

Writes --records finished-image records (about 1.5 KB each, in transactions of 5,000 as the
stages write them) to the metadata topic of a fresh prefix, then starts one `pixelfleet
catalog` (RocksDB store) and times it to /readyz 200: that is, until its faust table holds
every record of its partitions and its index has read the whole topic. It prints records/s
for the table (records / seconds from the process's start, faust's own start-up included)
and the target (2,000/s). Then it stops the replica, writes 1% more records, starts it
again on the same data directory and prints how many records the table applied the second
time: what it missed, not everything again. Uses the stack the environment names, or starts
a throwaway one. It asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.devstack.stack import stack_for_tools
from tests.support.catalog_kit import CatalogProcess, fake_record, fresh_fleet, publish

TARGET_PER_S = 2000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp,
        stack_for_tools(Path(tmp) / "stack") as local,
    ):
        settings = fresh_fleet(local, "catbench", args.partitions)
        rng = random.Random(7)
        started = time.monotonic()
        written = publish(settings, (fake_record(f"img-{i:08d}", rng) for i in range(args.records)))
        print(f"wrote {written:,} records in {time.monotonic() - started:.1f} s")

        replica = CatalogProcess(
            settings, Path(tmp) / "data", app_id=f"{settings.topic_prefix}-catalog"
        )
        replica.start()
        try:
            seconds = replica.wait_ready(timeout=1800)
            applied = replica.metric("pixelfleet_catalog_records_applied_total", 'view="table"')
            indexed = replica.metric("pixelfleet_catalog_images")
        finally:
            replica.stop()
        rate = written / seconds
        print(
            f"first start: ready in {seconds:.1f} s; table applied {applied:,.0f}, index holds "
            f"{indexed:,.0f} images -> {rate:,.0f} records/s (target {TARGET_PER_S:,.0f}/s, "
            f"ratio {rate / TARGET_PER_S:.2f})"
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
            seconds = again.wait_ready(timeout=1800)
            applied = again.metric("pixelfleet_catalog_records_applied_total", 'view="table"')
        finally:
            again.stop()
        print(
            f"restart on the same data: ready in {seconds:.1f} s; table applied {applied:,.0f} "
            f"of {written + more:,} records ({more:,} were new)"
        )


if __name__ == "__main__":
    main()
