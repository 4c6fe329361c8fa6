"""The plain loop of bench/fetch_throughput.py, run by it as a child process: the fetch
stage's own client (SafeFetcher, same policy and limits) on a thread pool of the same
concurrency, streaming each body to S3 as the stage does, with no Kafka in between.

    python bench/fetch_plain_loop.py SPEC.json

SPEC holds the fetch settings, the bucket, the URLs and one warm-up URL. Prints the
seconds, the downloads' busy seconds and the peak RSS as one JSON line.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's packages

from memory import status_mb

from processors.sniff import sniff
from streams.config.settings import FleetSettings
from streams.io import clients
from streams.stages.fetch.settings import FetchSettings
from streams.stages.fetch.stage import PART_SIZE, _Sniffed, object_key, read_head, runtime_for


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM:")


def plain_loop(spec_file: str) -> None:
    """Fetch and store every URL, print the figures as one JSON line."""
    spec = json.loads(Path(spec_file).read_text())
    s3 = clients.s3(FleetSettings().s3)
    fetcher = runtime_for(FetchSettings.model_validate(spec["fetch"]), s3).fetcher

    def one(url: str) -> float:
        started = time.monotonic()
        with fetcher.get(url) as response:
            first = read_head(response)
            if sniff(first) is None:
                raise RuntimeError(f"{url}: not an image")
            # The stage's own stream wrapper, part size and one part at a time (its memory
            # bound): S3 costs the same on both sides.
            s3.put_object(
                spec["bucket"],
                object_key(url),
                _Sniffed(first, response),  # type: ignore[arg-type]
                length=-1,
                part_size=PART_SIZE,
                num_parallel_uploads=1,
                content_type=response.content_type or "application/octet-stream",
            )
        return time.monotonic() - started

    with cf.ThreadPoolExecutor(spec["fetch"]["concurrency"]) as pool:
        one(spec["warm"])
        started = time.perf_counter()
        busy = sum(pool.map(one, spec["urls"]))
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "busy_s": busy, "rss": peak_rss_mb(os.getpid())}))


if __name__ == "__main__":
    plain_loop(sys.argv[1])
