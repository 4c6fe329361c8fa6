"""The API routes the console reads besides the record routes: `GET /v1/images` as a list
(filters, a cursor, presigned thumbnails) and `GET /v1/fleet` (figures per stage).

Thumbnails are only ever presigned URLs of variants, made per request like
`/v1/images/{id}/variants`; the console never sees an object's plain URL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from minio import Minio

from streams.catalog.fleet import FleetView
from streams.catalog.http_support import error
from streams.catalog.listing import MAX_LIMIT, Filters, ListedIndex, Row

FILTERS = ("status", "category", "route", "restore", "duplicate", "since", "until", "q")
MAX_IDS = 100


class ConsoleApi:
    def __init__(
        self, index: ListedIndex, fleet: FleetView, presigner: Minio, expiry_s: int
    ) -> None:
        self.index = index
        self.fleet_view = fleet
        self.presigner = presigner
        self.expiry = timedelta(seconds=expiry_s)

    def thumb_url(self, row: Row) -> str | None:
        if row.thumb is None:
            return None
        bucket, key = row.thumb
        url: str = self.presigner.presigned_get_object(bucket, key, expires=self.expiry)
        return url

    def card(self, row: Row) -> dict[str, Any]:
        return {
            "image_id": row.image_id,
            "status": row.status,
            "updated_at": row.updated_at,
            "category": row.category,
            "route": row.route,
            "restore": row.restore,
            "duplicate": row.duplicate,
            "thumb_url": self.thumb_url(row),
        }

    async def list_images(self, request: web.Request) -> web.Response:
        query = request.query
        ids = query.get("ids")
        if ids is not None:
            wanted = [i for i in ids.split(",") if i][:MAX_IDS]
            rows = [r for r in (self.index.row(i) for i in wanted) if r is not None]
            return web.json_response({"images": [self.card(r) for r in rows], "cursor": None})
        values = {name: (query.get(name) or None) for name in FILTERS}
        cursor_text, limit_text = query.get("cursor"), query.get("limit", "48")
        try:
            cursor = int(cursor_text) if cursor_text else None
            limit = int(limit_text)
        except ValueError:
            return error(400, "bad_query", "cursor and limit are whole numbers")
        if not 1 <= limit <= MAX_LIMIT or (cursor is not None and cursor < 1):
            return error(400, "bad_query", f"limit is 1 to {MAX_LIMIT}; cursor is positive")
        page = self.index.page(Filters(**values), cursor, limit)
        return web.json_response(
            {
                "images": [self.card(r) for r in page.rows],
                "cursor": str(page.cursor) if page.cursor is not None else None,
                "scanned": page.scanned,
            }
        )

    async def fleet(self, _request: web.Request) -> web.Response:
        figures = await self.fleet_view.stages()
        return web.json_response(
            {
                **figures,
                "images": len(self.index),
                "dead_letters": self.index.dead_letter_reasons(),
                "facets": self.index.facets(),
            }
        )
