"""The catalog's HTTP API, version 1: read the fleet's state, submit images, find duplicates.

Lookups by image id go to the replica that holds the image's partition (a request reaching
another replica is passed on once); everything else is answered from the index every replica
keeps of the whole topic. OpenAPI: `/v1/openapi.json`, readable at `/v1/docs`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from minio import Minio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.events import ImageRecord, decoder
from streams.app.settings import Settings
from streams.catalog.actions_api import ActionsApi
from streams.catalog.console_api import ConsoleApi
from streams.catalog.fleet import FleetView
from streams.catalog.http_support import (
    ROUTED_HEADER,
    BadQueryError,
    error,
    flag,
    key_hash,
    presented_key,
    read_json,
)
from streams.catalog.listing import ListedIndex
from streams.catalog.near_dup import parse_phash
from streams.catalog.openapi import docs_page, openapi
from streams.catalog.submissions import Submissions
from streams.catalog.table import CatalogTable
from streams.io import clients

_record = decoder(ImageRecord)
PROXY_TIMEOUT_S = 10.0


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class CatalogApi:
    def __init__(
        self,
        settings: Settings,
        table: CatalogTable,
        index: ListedIndex,
        ready: Any,
        submissions: Submissions,
    ) -> None:
        self.settings = settings
        self.table = table
        self.index = index
        self.ready = ready  # async () -> (bool, details)
        self.submissions = submissions
        self._session: aiohttp.ClientSession | None = None
        s3 = settings.s3
        # Presigning is arithmetic on the key; with the region given, no request is made.
        public_host, public_secure = settings.catalog.public_s3(s3)
        self.presigner = Minio(
            public_host,
            access_key=s3.access_key,
            secret_key=s3.secret_key.get_secret_value(),
            secure=public_secure,
            region=s3.region,
        )
        self.fleet = FleetView(settings, settings.catalog.prometheus_url)
        self.console = ConsoleApi(
            index,
            self.fleet,
            self.presigner,
            settings.catalog.presign_expiry_s,
            s3=clients.s3(s3),
            incoming=settings.buckets.incoming,
        )
        self.actions = ActionsApi(settings, index, self.record_value)

    def install(self, app: web.Application) -> None:
        add = app.router.add_route
        add("GET", "/healthz", self.healthz)
        add("GET", "/readyz", self.readyz)
        add("GET", "/metrics", self.metrics)
        add("GET", "/v1/openapi.json", self.openapi)
        add("GET", "/v1/docs", self.docs)
        add("POST", "/v1/images", self.submit)
        add("GET", "/v1/images", self.find)
        add("GET", "/v1/images/{image_id}", self.image)
        add("GET", "/v1/images/{image_id}/variants", self.variants)
        add("GET", "/v1/images/{image_id}/similar", self.similar)
        add("GET", "/v1/lookup", self.lookup)
        add("GET", "/v1/stats", self.stats)
        add("GET", "/v1/fleet", self.fleet_figures)
        add("GET", "/v1/images/{image_id}/original", self.original)
        self.actions.install(app)

    async def close(self) -> None:
        await self.fleet.close()
        if self._session is not None:
            await self._session.close()

    # --- probes and descriptions ---------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        ok, details = await self.ready()
        return web.json_response({"ready": ok, **details}, status=200 if ok else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def docs(self, _request: web.Request) -> web.Response:
        return web.Response(text=docs_page(), content_type="text/html")

    # --- one image -------------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.StreamResponse:
        found = await self._local_record(request)
        if isinstance(found, web.StreamResponse):
            return found
        return web.Response(body=found, content_type="application/json")

    async def variants(self, request: web.Request) -> web.StreamResponse:
        found = await self._local_record(request)
        if isinstance(found, web.StreamResponse):
            return found
        record = _record.decode(found)
        expiry = timedelta(seconds=self.settings.catalog.presign_expiry_s)
        listed = []
        for variant in record.variants:
            # Made on every request, so a link handed out is always fresh.
            url = self.presigner.presigned_get_object(
                variant.object.bucket, variant.object.key, expires=expiry
            )
            listed.append(
                {
                    "variant": variant.variant,
                    "format": variant.format,
                    "width": variant.width,
                    "height": variant.height,
                    "bytes": variant.bytes,
                    "url": url,
                    "expires_in_s": int(expiry.total_seconds()),
                }
            )
        return web.json_response(
            {"image_id": record.image_id, "status": record.status, "variants": listed}
        )

    async def original(self, request: web.Request) -> web.Response:
        """A presigned link to the image's original upload, for the before/after view."""
        image_id = request.match_info["image_id"]
        try:
            value = await self.record_value(image_id, request)
        except RuntimeError as exc:
            return error(503, "owner_unreachable", str(exc))
        if value is None:
            return error(404, "not_found", f"no image {image_id!r} in the catalog")
        record = _record.decode(value)
        answer: web.Response = await asyncio.to_thread(self.console.original_answer, record)
        return answer

    async def _local_record(self, request: web.Request) -> bytes | web.StreamResponse:
        """The record if this replica holds it; else the owner's answer, or a 404/503."""
        image_id = request.match_info["image_id"]
        owner = self.table.owner_url(image_id)
        if owner is not None:
            if request.headers.get(ROUTED_HEADER):
                return error(503, "rebalancing", "the partition moved; try again", retry_s=1)
            return await self._pass_on(owner, request)
        value = self.table.get(image_id)
        if value is None:
            return error(404, "not_found", f"no image {image_id!r} in the catalog")
        return value

    async def record_value(self, image_id: str, request: web.Request) -> bytes | None:
        """The record of any image, wherever its partition is: from this replica's table or
        from the owner's (the actions need it whichever replica a request reaches). None:
        no such image; an owner that does not answer is a RuntimeError."""
        owner = self.table.owner_url(image_id)
        if owner is None:
            return self.table.get(image_id)
        path = f"/v1/images/{quote(image_id, safe='')}"
        try:
            status, body, _ = await self._get(owner, path, request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RuntimeError(f"the replica at {owner} did not answer: {exc}") from exc
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"the replica at {owner} answered {status}")
        return body

    async def _get(self, owner: str, path_qs: str, request: web.Request) -> tuple[int, bytes, str]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        url = owner.rstrip("/") + path_qs
        # The key goes on in whichever header it came (X-API-Key or Authorization: Bearer).
        passed = {"x-api-key", "authorization"}
        headers = {k: v for k, v in request.headers.items() if k.lower() in passed}
        headers[ROUTED_HEADER] = "1"
        async with self._session.get(url, headers=headers) as answer:
            return answer.status, await answer.read(), answer.content_type

    async def _pass_on(self, owner: str, request: web.Request) -> web.Response:
        try:
            # As it came (still escaped): a decoded "%3F" or "%2F" would ask another path.
            status, body, kind = await self._get(owner, request.rel_url.raw_path_qs, request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return error(503, "owner_unreachable", f"the replica at {owner} did not answer: {exc}")
        return web.Response(body=body, status=status, content_type=kind)

    async def similar(self, request: web.Request) -> web.Response:
        image_id = request.match_info["image_id"]
        phash = self.index.phash_of(image_id)
        if phash is None:
            return error(404, "not_found", f"no perceptual hash known for {image_id!r}")
        distance = _int_param(request, "max_distance", self.settings.catalog.near_dup_distance)
        limit = _int_param(request, "limit", 20)
        matches = self._query(phash, distance, limit, exclude=image_id)
        return web.json_response({"image_id": image_id, "phash": phash, "similar": matches})

    def _query(self, phash: str, distance: int, limit: int, exclude: str | None) -> list[Any]:
        top = self.index.near.max_distance
        if not 0 <= distance <= top:
            raise BadQueryError(f"max_distance is 0 to {top}, not {distance}")
        if not 1 <= limit <= 1000:
            raise BadQueryError(f"limit is 1 to 1000, not {limit}")
        found = self.index.similar(phash, distance, limit=limit, exclude=exclude)
        return [{"image_id": m.image_id, "distance": m.distance} for m in found]

    # --- the whole fleet ---------------------------------------------------------------------

    async def find(self, request: web.Request) -> web.Response:
        if "sha256" not in request.query:
            return await self.console.list_images(request)
        sha256 = request.query.get("sha256", "").lower()
        if not _is_sha256(sha256):
            return error(400, "bad_query", "give sha256= as 64 hex digits")
        return web.json_response({"sha256": sha256, "images": self.index.with_sha256(sha256)})

    async def lookup(self, request: web.Request) -> web.Response:
        """What the validate stage and the CLI ask before doing work: the finished image of
        this content under these settings, and the images that look like it."""
        query = request.query
        answer: dict[str, Any] = {"duplicate_of": None, "near_duplicates": []}
        sha256, print_ = query.get("sha256", "").lower(), query.get("fingerprint", "")
        if sha256 and not _is_sha256(sha256):
            return error(400, "bad_query", "give sha256= as 64 hex digits")
        if bool(sha256) != bool(print_) or not (sha256 or query.get("phash")):
            # Either alone, or nothing, used to be an empty answer: "no duplicate".
            return error(
                400, "bad_query", "give sha256= with fingerprint=, or phash=, or all three"
            )
        if sha256 and print_:
            answer["duplicate_of"] = self.index.done_with(sha256, print_)
        phash = query.get("phash")
        if phash:
            try:
                parse_phash(phash)
            except ValueError as exc:
                return error(400, "bad_query", str(exc))
            distance = _int_param(request, "max_distance", self.settings.catalog.near_dup_distance)
            limit = _int_param(request, "limit", 20)
            answer["near_duplicates"] = self._query(phash, distance, limit, query.get("exclude"))
        return web.json_response(answer)

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.index.stats())

    async def fleet_figures(self, request: web.Request) -> web.Response:
        return await self.console.fleet(request)

    # --- submissions ---------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        limit = self.settings.catalog.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return error(413, "too_large", f"the body is over the {limit}-byte limit")
        kind = request.content_type
        force = flag("force", request.query.get("force", ""))
        idempotency = request.headers.get("Idempotency-Key")
        if idempotency is not None:
            # Per caller: another key's Idempotency-Key is another request.
            idempotency = f"{key_hash(presented_key(request))}:{idempotency}"
        if kind == "application/json":
            try:
                body = read_json(await request.read())
            except (ValueError, UnicodeDecodeError) as exc:
                return error(400, "bad_json", f"the body is not JSON: {exc}")
            outcome = await asyncio.to_thread(
                self.submissions.submit_url, body, idempotency=idempotency, force=force
            )
        elif kind == "multipart/form-data":
            try:
                form = await _read_form(request)
            except ValueError as exc:  # no boundary, or a body that does not start with it
                return error(400, "bad_multipart", f"the form cannot be read: {exc}")
            if isinstance(form, web.Response):
                return form
            data, name, meta, file_type = form
            outcome = await asyncio.to_thread(
                self.submissions.submit_bytes,
                data,
                name,
                meta,
                file_type,
                idempotency=idempotency,
                force=force,
            )
        else:
            return error(
                415,
                "unsupported_media_type",
                "send multipart/form-data with a `file` part, or application/json with `url`",
            )
        if outcome.problem is not None:
            status, code, message = outcome.problem
            return error(status, code, message)
        location = f"/v1/images/{outcome.image_id}"
        response = web.json_response(outcome.body(), status=outcome.status)
        response.headers["Location"] = location
        return response


async def _read_form(
    request: web.Request,
) -> tuple[bytes, str, dict[str, Any], str | None] | web.Response:
    """The `file` part (its bytes, name and type) and an optional JSON `meta` part."""
    reader = await request.multipart()
    data: bytes | None = None
    name, file_type = "upload", None
    meta: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            continue
        if part.name == "file":
            name = part.filename or name
            file_type = part.headers.get("Content-Type")
            data = bytes(await part.read())
        elif part.name == "meta":
            try:
                meta = read_json(await part.text())
            except LookupError as exc:  # a charset Python does not know
                return error(400, "bad_json", f"the meta part's charset is unknown: {exc}")
            except ValueError as exc:
                return error(400, "bad_json", f"the meta part is not JSON: {exc}")
            if not isinstance(meta, dict):
                return error(400, "bad_json", "the meta part is a JSON object")
    if data is None:
        return error(400, "missing_file", "the form has no `file` part")
    return data, name, meta, file_type


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise BadQueryError(f"{name} is a whole number, not {text!r}") from None
