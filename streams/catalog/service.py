"""`pixelfleet catalog`: one replica of the catalog service.

Lifecycle, in order:
1. The index feed starts reading the whole metadata topic into the CatalogIndex (a thread).
2. The faust worker starts: it joins the catalog's consumer group, recovers the partitions it
   is given (from local RocksDB plus the changelog), and its agent applies new records.
3. The web server (faust's aiohttp, one port) answers the API, the console (`/`), the
   probes and /metrics;
   /readyz says 503 until both the table and the index have caught up.
4. SIGTERM or SIGINT: faust leaves the group and closes the store; the feed stops.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from streams.app.settings import Settings
from streams.catalog.api import CatalogApi
from streams.catalog.console import install_console
from streams.catalog.feed import IndexFeed, submissions_feed
from streams.catalog.http_support import auth_middleware, errors_and_metrics
from streams.catalog.listing import ListedIndex
from streams.catalog.submissions import Submissions
from streams.catalog.table import CatalogTable, build_app
from streams.observe import metrics

log = logging.getLogger(__name__)


class CatalogService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        catalog = settings.catalog
        accepted = catalog.accepted_key_hashes()
        if not accepted:
            log.warning("no API keys (PIXELFLEET_CATALOG_API_KEY_HASHES): /v1 refuses everyone")
        web_options: dict[str, Any] = {
            # aiohttp refuses bodies past this with 413 on its own; the API checks too.
            "client_max_size": catalog.max_body_bytes,
            "middlewares": [errors_and_metrics, auth_middleware(accepted)],
        }
        self.app: faust.App = build_app(settings, web_options)
        # The index the console lists from too (listing.py); the feed fills it as before.
        self.index = ListedIndex(catalog.near_dup_distance)
        self.feed = IndexFeed(settings, self.index, on_caught_up=self.index.order_by_time)
        # Titles and keywords for the console's search; not part of readiness.
        self.words = submissions_feed(settings, self.index)
        self.table = CatalogTable(self.app, settings)
        self.api = CatalogApi(
            settings, self.table, self.index, self.ready, Submissions(settings, self.index)
        )
        # faust's aiohttp driver; routes are added before its server starts.
        self.api.install(self.app.web.web_app)  # type: ignore[attr-defined]
        # Before faust's own blueprints, which start with the server: `/` is the console's.
        install_console(self.app.web.web_app, settings)  # type: ignore[attr-defined]

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        behind = await self.table.behind()
        details = {
            "table_behind": behind,
            "index_behind": self.feed.behind,
            "index_caught_up": self.feed.caught_up.is_set(),
            "images": len(self.index),
            "partitions": sorted(tp.partition for tp in self.table.assigned()),
        }
        ok = self.feed.caught_up.is_set() and await self.table.caught_up()
        metrics.CATALOG_READY.set(1 if ok else 0)
        return ok, details

    def run(self) -> int:
        """Serve until a signal stops the worker; the exit code."""
        self.feed.start()
        self.words.start()
        worker = faust.Worker(self.app, loglevel="INFO", quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        finally:
            self.feed.stop()
            self.words.stop()
        return 0
