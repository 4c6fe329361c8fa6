"""`GET /v1/fleet`: per stage lag, throughput, in flight, rejected, p50/p95 seconds and
replicas seen, plus dead-letter reasons, for the console's Fleet page.

Nothing here is a new way of computing a figure:
- lag is `group_lag`, the sum `pixelfleet status` prints and KEDA scales on;
- the rates, quantiles and replica counts are the Grafana dashboard's own PromQL, asked of
  the Prometheus at `catalog.prometheus_url` (a unit test checks each expression against
  deploy/helm/pixelfleet/files/dashboard.json); with none configured they are null;
- counts of images and dead-letter reasons come from the catalog's index.
Lag asks the broker for each stage, so one answer is reused for `CACHE_S` seconds: a room of
consoles polling costs the broker the same as one. The stages are asked at once, each in a
thread of the view's own, and the page waits `LAG_TIMEOUT_S` for them in all: a broker
that does not answer costs the page its lag column (null, then kept `MISSING_CACHE_S`),
never a minute of every poll behind it, nor the threads the submissions run in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import math
import time
from typing import Any

import aiohttp

from streams.config.settings import FleetSettings
from streams.config.topics import STAGES, Topics
from streams.io.topic_reader import group_lag

log = logging.getLogger(__name__)
CACHE_S = 2.0
LAG_TIMEOUT_S = 3.0
MISSING_CACHE_S = 10.0  # an answer with a lag missing is kept longer: the broker is in trouble
PROMETHEUS_TIMEOUT_S = 3.0
RATE_WINDOW = "1m"  # stands for Grafana's $__rate_interval

# figure -> the dashboard's expression, with $stage matching every stage and the rate
# window fixed. Each is summed or taken by stage, so one query answers for the fleet.
PROMQL: dict[str, str] = {
    "throughput_per_s": 'sum by (stage) (rate(pixelfleet_messages_total{stage=~".*",'
    'outcome=~"ok|skipped"}[$__rate_interval]))',
    # The dashboard splits this one by outcome too; by_stage adds the outcomes up.
    "rejected_per_s": 'sum by (stage, outcome) (rate(pixelfleet_messages_total{stage=~".*",'
    'outcome=~"rejected|failed"}[$__rate_interval]))',
    "p50_s": "histogram_quantile(0.5, sum by (stage, le) (rate(pixelfleet_processing_seconds"
    '_bucket{stage=~".*"}[$__rate_interval])))',
    "p95_s": "histogram_quantile(0.95, sum by (stage, le) (rate(pixelfleet_processing_seconds"
    '_bucket{stage=~".*"}[$__rate_interval])))',
    "replicas": 'count by (stage) (pixelfleet_assigned_partitions{stage=~".*"})',
    "in_flight": 'sum by (stage) (pixelfleet_in_flight{stage=~".*"})',
}


def promql(figure: str) -> str:
    return PROMQL[figure].replace("$__rate_interval", RATE_WINDOW)


def by_stage(answer: dict[str, Any]) -> dict[str, float | None]:
    """A Prometheus instant-query answer as {stage: value}, the samples of a stage added up;
    NaN (no samples in the window of a quantile) becomes None."""
    found: dict[str, float | None] = {}
    for sample in answer.get("data", {}).get("result", []):
        stage = sample.get("metric", {}).get("stage")
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not stage:
            continue
        known = None if math.isnan(value) or math.isinf(value) else value
        before = found.get(stage)
        found[stage] = known if before is None else before + (known or 0.0)
    return found


class FleetView:
    def __init__(self, settings: FleetSettings, prometheus_url: str | None) -> None:
        self.settings = settings
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        # One thread per stage: lookups stuck on a silent broker wait here, not in the loop's
        # default executor that the submissions share.
        self._lag_threads = cf.ThreadPoolExecutor(len(STAGES), thread_name_prefix="fleet-lag")
        # The lookup of each stage still under way: a later page waits on it rather than
        # queue another behind it (a silent broker would grow the queue by six a minute,
        # and the lag column would stay empty long after the broker came back).
        self._asking: dict[str, asyncio.Future[int | None]] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._lag_threads.shutdown(wait=False, cancel_futures=True)

    async def stages(self) -> dict[str, Any]:
        """Per stage figures, at most CACHE_S old."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now < self._cached[0]:
                return self._cached[1]
            lags, metrics = await asyncio.gather(self._lags(), self._metrics())
            rows = []
            for stage in STAGES:
                row: dict[str, Any] = {"stage": stage, "lag": lags.get(stage)}
                for figure in PROMQL:
                    row[figure] = metrics.get(figure, {}).get(stage)
                rows.append(row)
            answer = {
                "stages": rows,
                "metrics_source": "prometheus" if self.prometheus_url else None,
                "measured_at": time.time(),
            }
            keep = MISSING_CACHE_S if None in lags.values() else CACHE_S
            self._cached = (now + keep, answer)
            return answer

    async def _lags(self) -> dict[str, int | None]:
        loop = asyncio.get_running_loop()
        for stage in STAGES:
            running = self._asking.get(stage)
            if running is None or running.done():
                self._asking[stage] = loop.run_in_executor(self._lag_threads, self._lag, stage)
        asked = dict(self._asking)
        await asyncio.wait(asked.values(), timeout=LAG_TIMEOUT_S)
        found: dict[str, int | None] = {}
        for stage, future in asked.items():
            if not future.done():
                log.warning("lag of %s: no answer from the broker in %.0f s", stage, LAG_TIMEOUT_S)
            found[stage] = future.result() if future.done() else None
        return found

    def _lag(self, stage: str) -> int | None:
        topics = Topics(self.settings.topic_prefix)
        try:
            return group_lag(self.settings, stage, topics.inbox(stage), topics.group(stage)).lag
        except Exception as exc:  # the page shows the others; the log says why
            log.warning("lag of %s: %s", stage, exc)
            return None

    async def _metrics(self) -> dict[str, dict[str, float | None]]:
        if self.prometheus_url is None:
            return {}
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=PROMETHEUS_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        session = self._session

        async def one(figure: str) -> tuple[str, dict[str, float | None]]:
            url = f"{self.prometheus_url}/api/v1/query"
            try:
                async with session.get(url, params={"query": promql(figure)}) as answer:
                    return figure, by_stage(await answer.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("prometheus %s: %s", figure, exc)
                return figure, {}

        return dict(await asyncio.gather(*(one(f) for f in PROMQL)))
