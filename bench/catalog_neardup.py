"""Near-duplicate queries of the catalog's index against a brute-force numpy scan.

    python bench/catalog_neardup.py [--n 1000000] [--distance 8] [--queries 2000]
                                    [--brute-queries N] [--seed 0]

Two sets of n 64-bit hashes, each under an id like the fleet gives an upload
(`sha256-` and 40 hex digits):

* uniform: random hashes, where a query has almost no neighbours;
* clustered: n / 1000 centres with 1,000 variants each, 0 to 10 bits away, as the pHashes
  of resized, recompressed or lightly edited copies cluster; candidate lists are longer.

A query is a stored hash with 0 to 4 bits flipped. Per set it prints the build time, the
index's memory_bytes() and the process's RSS growth (MB of 10^6 bytes), then query p50/p99
for the index and for a brute-force scan of the same hashes (xor and popcount over the whole
array, then the same top-20 by distance and id), each query timed on both in turn, and the
ratio brute/index (`--brute-queries N` times the scan on the first N queries only). Every
query's answers are compared: the top 20 and the full set within the distance (mismatches
must be 0). Last, the cost of single adds and removes on the full index, merges included.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from streams.catalog.near_dup import Match, NearDupIndex

P99_TARGET_MS = 5.0
MEMORY_TARGET_MB = 150.0
LIMIT = 20


def rss_mb() -> float:
    """The resident MB of this process (Linux), after malloc has given back what it can."""
    with contextlib.suppress(OSError, AttributeError):
        # glibc keeps freed heap pages: without this the bench's own garbage hides the index.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    status = Path("/proc/self/status")
    if not status.exists():
        return 0.0
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def uniform(rng: np.random.Generator, n: int) -> NDArray[np.uint64]:
    return rng.integers(0, 2**64, size=n, dtype=np.uint64)


def clustered(rng: np.random.Generator, n: int) -> NDArray[np.uint64]:
    centres = uniform(rng, max(n // 1000, 1))
    base = centres[np.arange(n) % centres.size]
    out = np.empty(n, dtype=np.uint64)
    block = 100_000
    for start in range(0, n, block):
        size = min(block, n - start)
        # Exactly k distinct bits flipped: the first k of a random order of the 64 bits.
        bits = np.argsort(rng.random((size, 64)), axis=1)[:, :10].astype(np.uint64)
        flips = np.left_shift(np.uint64(1), bits)
        flips[np.arange(10) >= rng.integers(0, 11, size=(size, 1))] = 0
        out[start : start + size] = base[start : start + size] ^ np.bitwise_or.reduce(flips, 1)
    return out


def make_queries(rng: np.random.Generator, codes: NDArray[np.uint64], count: int) -> list[str]:
    queries = []
    for code in codes[rng.integers(0, codes.size, count)].tolist():
        bits = rng.choice(64, int(rng.integers(0, 5)), replace=False).tolist()
        queries.append(f"{code ^ sum(1 << bit for bit in bits):016x}")
    return queries


def brute_query(
    codes: NDArray[np.uint64], ids: list[str], query: str, distance: int, limit: int
) -> list[tuple[int, str]]:
    """The same answer by scanning every hash: all matches when limit is 0, else the top."""
    dist = np.bitwise_count(codes ^ np.uint64(int(query, 16)))
    rows = np.flatnonzero(dist <= distance)
    near = dist[rows]
    if limit and rows.size > limit:
        keep = near <= np.partition(near, limit - 1)[limit - 1]
        rows, near = rows[keep], near[keep]
    found = sorted(zip(near.tolist(), [ids[r] for r in rows.tolist()], strict=True))
    return found[:limit] if limit else found


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def as_pairs(matches: list[Match]) -> list[tuple[int, str]]:
    return [(m.distance, m.image_id) for m in matches]


def run(name: str, codes: NDArray[np.uint64], args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed + 1)
    n, distance = codes.size, args.distance
    digits = rng.bytes(20 * n).hex()
    ids = ["sha256-" + digits[i * 40 : i * 40 + 40] for i in range(n)]
    pairs = list(zip(ids, (f"{c:016x}" for c in codes.tolist()), strict=True))
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    index = NearDupIndex(max_distance=distance)
    index.add_many(pairs)
    build = time.perf_counter() - start
    gc.collect()
    grown = rss_mb() - before  # with the input still held, so that only the index counts
    del pairs
    memory = index.memory_bytes() / 1e6

    queries = make_queries(rng, codes, args.queries)
    brute_queries = queries[: args.brute_queries or len(queries)]
    # Each query goes to both in turn, so that a pause of the machine falls on either alike.
    ours: list[list[Match]] = []
    theirs: list[list[tuple[int, str]]] = []
    ours_s: list[float] = []
    brute_s: list[float] = []
    for i, query in enumerate(queries):
        start = time.perf_counter()
        ours.append(index.query(query, limit=LIMIT))
        ours_s.append(time.perf_counter() - start)
        if i < len(brute_queries):
            start = time.perf_counter()
            theirs.append(brute_query(codes, ids, query, distance, LIMIT))
            brute_s.append(time.perf_counter() - start)
    (ours_p50, ours_p99), (brute_p50, brute_p99) = percentiles(ours_s), percentiles(brute_s)
    mismatches, matches = 0, 0
    for i, query in enumerate(queries):
        full = as_pairs(index.query(query, limit=n))
        expected = brute_query(codes, ids, query, distance, 0)
        matches += len(expected)
        top = theirs[i] if i < len(theirs) else expected[:LIMIT]
        mismatches += int(full != expected or as_pairs(ours[i]) != top)

    print(f"\n== {name}: {n:,} hashes, distance <= {distance}, {len(queries):,} queries")
    print(f"build (add_many)     {build:8.2f} s")
    print(
        f"memory_bytes()       {memory:8.1f} MB   process RSS growth {grown:.1f} MB"
        f"   (target < {MEMORY_TARGET_MB:.0f} MB)"
    )
    print(f"matches per query    {matches / len(queries):8.1f} (mean, within the distance)")
    print(f"index query          p50 {ours_p50:7.3f} ms   p99 {ours_p99:7.3f} ms", end="")
    print(f"   (target p99 < {P99_TARGET_MS:.0f} ms)")
    print(
        f"brute-force scan     p50 {brute_p50:7.3f} ms   p99 {brute_p99:7.3f} ms"
        f"   ({len(brute_queries):,} queries)"
    )
    print(f"ratio brute/index    p50 {brute_p50 / ours_p50:7.1f} x", end="")
    print(f"    p99 {brute_p99 / ours_p99:7.1f} x")
    print(f"mismatches           {mismatches} (top {LIMIT} and full sets, must be 0)")
    single_ops(index, rng)


def single_ops(index: NearDupIndex, rng: np.random.Generator) -> None:
    """Single adds then removes on the full index: mean, and the longest (a merge)."""
    count = 20_000
    new = [(f"new-{i}", f"{c:016x}") for i, c in enumerate(uniform(rng, count).tolist())]
    for label in ("add", "remove"):
        times = []
        for image_id, phash in new:
            start = time.perf_counter()
            if label == "add":
                index.add(image_id, phash)
            else:
                index.remove(image_id)
            times.append(time.perf_counter() - start)
        mean_us, worst_ms = 1e6 * sum(times) / count, 1e3 * max(times)
        print(f"single {label:6}        mean {mean_us:6.1f} us", end="")
        print(f"   longest {worst_ms:6.1f} ms ({count:,} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--distance", type=int, default=8)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--brute-queries", type=int, default=0, help="0: as many as --queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs")
    rng = np.random.default_rng(args.seed)
    run("uniform", uniform(rng, args.n), args)
    run("clustered", clustered(rng, args.n), args)


if __name__ == "__main__":
    main()
