"""The API routes the console reads besides the record routes: `GET /v1/images` as a list
(filters, a cursor, presigned thumbnails), `GET /v1/fleet` (figures per stage) and where an
image's original upload is (`GET /v1/images/{id}/original`, for the before/after view).

Thumbnails are only ever presigned URLs of variants, made per request like
`/v1/images/{id}/variants`; the console never sees an object's plain URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from aiohttp import web
from minio import Minio

from processors.sniff import MEDIA_TYPES
from schemas.events import ImageRecord, ObjectRef, RecordStatus
from streams.catalog.fleet import FleetView
from streams.catalog.http_support import error
from streams.catalog.listing import MAX_LIMIT, Filters, ListedIndex, Row

FILTERS = ("status", "category", "route", "restore", "duplicate", "since", "until", "q")
MAX_IDS = 100
STALE_CURSOR = (
    "this cursor was made by another catalog replica, or by this one before it restarted "
    "(each numbers images in the order it read them); list again without a cursor, and "
    "keep a client on one replica (sticky sessions) to page through"
)
# The filters with a closed set of values: a typo is a 400, not an empty page found by
# walking the whole fleet.
CHOICES = {
    "status": frozenset(get_args(RecordStatus)),
    "duplicate": frozenset({"exact", "near", "any", "none"}),
}


def _instant(name: str, text: str) -> str:
    """A since/until value as the records write times (UTC, milliseconds, Z), so that
    comparing the strings compares the instants; a date alone is its midnight UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} is an ISO 8601 date or time, not {text!r}") from None
    try:
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first instant in UTC
        raise ValueError(f"{name} {text!r} is outside the years 1 to 9999 in UTC") from None
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_filters(query: Mapping[str, str]) -> Filters:
    """The list's filters from a query; ValueError names the first bad one. A name that is
    no filter is one too: a misspelt `colour=red` would list everything."""
    unknown = sorted(set(query) - {*FILTERS, "limit", "cursor"})
    if unknown:
        known = ", ".join([*FILTERS, "limit", "cursor", "ids", "sha256"])
        raise ValueError(f"unknown parameter {unknown[0]!r} (known: {known})")
    values = {name: (query.get(name) or None) for name in FILTERS}
    for name, allowed in CHOICES.items():
        if values[name] is not None and values[name] not in allowed:
            choices = ", ".join(sorted(allowed))
            raise ValueError(f"{name} is one of {choices}, not {values[name]!r}")
    for name in ("since", "until"):
        given = values[name]
        if given is not None:
            values[name] = _instant(name, given)
    return Filters(**values)


class ConsoleApi:
    def __init__(
        self,
        index: ListedIndex,
        fleet: FleetView,
        presigner: Minio,
        expiry_s: int,
        *,
        s3: Minio | None = None,
        incoming: str = "",
    ) -> None:
        self.index = index
        self.fleet_view = fleet
        self.presigner = presigner
        self.expiry = timedelta(seconds=expiry_s)
        self.s3 = s3  # lists the incoming bucket (the presigner makes no requests)
        self.incoming = incoming

    def original_object(self, record: ImageRecord) -> ObjectRef | None:
        """Where the image's original upload is kept, if it still is: a fetched URL's body
        (named on the record), else the first object under `{image_id}/` in the incoming
        bucket (an upload's file). Blocks on S3: call it from a thread."""
        fetched = record.fetch.object if record.fetch else None
        if fetched is not None:
            return fetched
        if self.s3 is None:
            return None
        prefix = f"{record.image_id}/"
        for obj in self.s3.list_objects(self.incoming, prefix=prefix, recursive=True):
            if obj.object_name and not obj.is_dir:
                return ObjectRef(bucket=self.incoming, key=obj.object_name, size=obj.size)
        return None

    def original_answer(self, record: ImageRecord) -> web.Response:
        ref = self.original_object(record)
        if ref is None:
            # The image is there, its original is not (never kept, or erased): an answer
            # the console shows as such, not a missing resource.
            why = f"the original upload of {record.image_id} is not stored (any more)"
            return web.json_response({"image_id": record.image_id, "url": None, "why": why})
        facts = record.original or {}
        # Served as the image validate found it to be, never as what the upload's name or
        # stored type claimed (an older upload may be stored as text/html).
        served = MEDIA_TYPES.get(str(facts.get("format")), "application/octet-stream")
        url = self.presigner.presigned_get_object(
            ref.bucket,
            ref.key,
            expires=self.expiry,
            response_headers={"response-content-type": served},
        )
        return web.json_response(
            {
                "image_id": record.image_id,
                "url": url,
                "width": facts.get("width"),
                "height": facts.get("height"),
                "bytes": ref.size if ref.size is not None else facts.get("bytes"),
                "expires_in_s": int(self.expiry.total_seconds()),
            }
        )

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
            wanted = [i for i in ids.split(",") if i]
            if len(wanted) > MAX_IDS:
                return error(400, "bad_query", f"ids names at most {MAX_IDS} images at once")
            rows = [r for r in (self.index.row(i) for i in wanted) if r is not None]
            return web.json_response({"images": [self.card(r) for r in rows], "cursor": None})
        try:
            filters = read_filters(query)
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        try:
            limit = int(query.get("limit", "48"))
        except ValueError:
            return error(400, "bad_query", "limit is a whole number")
        if not 1 <= limit <= MAX_LIMIT:
            return error(400, "bad_query", f"limit is 1 to {MAX_LIMIT}")
        cursor_text = query.get("cursor")
        cursor = epoch = None
        if cursor_text:
            epoch, _, number = cursor_text.partition(".")
            if not (number.isascii() and number.isdigit() and len(number) <= 18) or int(number) < 1:
                return error(400, "bad_query", "cursor is the cursor of a previous page")
            cursor = int(number)
        page = self.index.page(filters, cursor, limit, epoch=epoch)
        if page.stale:
            return error(409, "stale_cursor", STALE_CURSOR)
        return web.json_response(
            {
                "images": [self.card(r) for r in page.rows],
                "cursor": f"{page.epoch}.{page.cursor}" if page.cursor is not None else None,
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
