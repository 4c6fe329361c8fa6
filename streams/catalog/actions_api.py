"""The API routes that change the fleet, for keys allowed to act (catalog.acting_key_hashes):

- `GET  /v1/access`                  what this key may do (the console hides what it may not)
- `GET  /v1/dlq?stage=&reason=`      dead letters, newest first
- `POST /v1/dlq/{letter}/redrive`    re-send one dead letter (`partition:offset`)
- `POST /v1/images/{id}/replay`      replay one image from a stage (`dry_run` plans only)
- `DELETE /v1/images/{id}`           erase one image for good (`dry_run=1` lists only)

The work is act.py's (the operations code of the CLI); it blocks on Kafka and S3, so it runs
in a worker thread (`asyncio.to_thread`, as submissions do) and the event loop keeps serving.
Redrives and erasures each commit under one fixed transactional id per fleet, so two at once
would fence each other: each kind runs one at a time here, the next request waiting its turn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from schemas.events import ImageRecord, decoder
from streams.app.settings import Settings
from streams.catalog import act
from streams.catalog.http_support import error, flag, may_act, read_json
from streams.catalog.listing import ListedIndex

log = logging.getLogger(__name__)
_record = decoder(ImageRecord)
_LETTER = re.compile(r"[0-9]{1,6}:[0-9]{1,19}")  # fullmatch: no newline, ASCII digits
MAX_LETTERS = 500
# image id, the request (for its key) -> the record's JSON, None when there is none.
FetchRecord = Callable[[str, web.Request], Awaitable[bytes | None]]


class ActionsApi:
    def __init__(self, settings: Settings, index: ListedIndex, fetch_record: FetchRecord) -> None:
        self.settings = settings
        self.index = index
        self.fetch_record = fetch_record
        self.acting = settings.catalog.acting_hashes()
        self._redrive_lock = asyncio.Lock()
        self._erase_lock = asyncio.Lock()

    def install(self, app: web.Application) -> None:
        add = app.router.add_route
        add("GET", "/v1/access", self.access)
        add("GET", "/v1/dlq", self.dead_letters)
        add("POST", "/v1/dlq/{letter}/redrive", self.redrive)
        add("POST", "/v1/images/{image_id}/replay", self.replay)
        add("DELETE", "/v1/images/{image_id}", self.delete)

    def _refused(self, request: web.Request) -> web.Response | None:
        if may_act(request, self.acting):
            return None
        return error(
            403,
            "not_allowed_to_act",
            "this API key may read but not act (redrive, replay, delete); an operator can add "
            "its sha256 to PIXELFLEET_CATALOG_ACTING_KEY_HASHES",
        )

    async def _run(self, what: str, work: Callable[[], act.Answer]) -> web.Response:
        """The answer of blocking `work` from a thread; a Kafka or S3 failure is an answer
        too, saying that nothing may be assumed done and how to check."""
        try:
            answer = await asyncio.to_thread(work)
        except Exception as exc:  # Kafka, S3 or a replica: the person sees what happened
            log.exception("%s failed", what)
            return error(
                503,
                "action_failed",
                f"{what} failed: {exc}. Part of it may be done; try again (each action is "
                "safe to repeat), or run the same `pixelfleet` command and read its output",
            )
        return web.json_response(answer.body, status=answer.status)

    async def _body(
        self, request: web.Request, fields: frozenset[str]
    ) -> dict[str, Any] | web.Response:
        """The JSON object of the body ({} when there is none), holding no field but
        `fields`: a misspelt `dry_run` is an error, not a field to ignore."""
        if not request.can_read_body:
            return {}
        try:
            body = read_json(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, "bad_json", f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return error(400, "bad_json", "the body is a JSON object")
        unknown = sorted(set(body) - fields)
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            return error(400, "bad_field", f"unknown field {unknown[0]!r} (known: {known})")
        return body

    # --- what a key may do, and the dead letters -----------------------------------------

    async def access(self, request: web.Request) -> web.Response:
        return web.json_response({"read": True, "act": may_act(request, self.acting)})

    async def dead_letters(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            return error(400, "bad_query", "limit is a whole number")
        if not 1 <= limit <= MAX_LETTERS:
            return error(400, "bad_query", f"limit is 1 to {MAX_LETTERS}")
        stage, reason = query.get("stage") or None, query.get("reason") or None
        return await self._run(
            "listing the dead letters",
            lambda: act.list_letters(self.settings, stage, reason, limit),
        )

    async def redrive(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        position = request.match_info["letter"]
        if not _LETTER.fullmatch(position):
            return error(400, "bad_letter", "a dead letter is named partition:offset, e.g. 0:42")
        body = await self._body(request, frozenset({"again"}))
        if isinstance(body, web.Response):
            return body
        again = flag("again", body.get("again", False))
        async with self._redrive_lock:
            return await self._run(
                f"redriving dead letter {position}",
                lambda: act.redrive_letter(self.settings, position, again=again),
            )

    # --- one image ---------------------------------------------------------------------------

    async def replay(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        image_id = request.match_info["image_id"]
        body = await self._body(request, frozenset({"stage", "dry_run"}))
        if isinstance(body, web.Response):
            return body
        stage = str(body.get("stage", "validate"))
        if stage not in act.REPLAY_STAGES:
            return error(400, "bad_stage", f"stage is one of {', '.join(act.REPLAY_STAGES)}")
        dry_run = flag("dry_run", body.get("dry_run", False))
        record = await self._record(image_id, request)
        if isinstance(record, web.Response):
            return record
        if record is None:
            return error(404, "not_found", f"no image {image_id!r} in the catalog")
        verb = "planning the replay" if dry_run else "replaying"
        return await self._run(
            f"{verb} of {image_id}",
            lambda: act.replay_image(self.settings, record, stage, dry_run=dry_run),
        )

    async def delete(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        image_id = request.match_info["image_id"]
        dry_run = flag("dry_run", request.query.get("dry_run", ""))
        force = flag("force", request.query.get("force", ""))
        record = await self._record(image_id, request)
        if isinstance(record, web.Response):
            return record
        sha = act.same_content(record)
        peers = [i for i in self.index.with_sha256(sha) if i != image_id] if sha else []
        lookup = self._lookup(request, asyncio.get_running_loop())

        def work() -> act.Answer:
            return act.delete_image(
                self.settings, image_id, peers, lookup, dry_run=dry_run, force=force
            )

        if dry_run:
            return await self._run(f"planning the deletion of {image_id}", work)
        async with self._erase_lock:
            return await self._run(f"deleting {image_id}", work)

    async def _record(
        self, image_id: str, request: web.Request
    ) -> ImageRecord | web.Response | None:
        try:
            value = await self.fetch_record(image_id, request)
        except (OSError, RuntimeError, TimeoutError) as exc:
            return error(
                503, "owner_unreachable", f"the record of {image_id} is not readable now: {exc}"
            )
        return _record.decode(value) if value else None

    def _lookup(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> act.Lookup:
        """Records by id for work in a thread: each fetched on the event loop (the table is
        the loop's), waited for by the thread."""

        async def gather(ids: list[str]) -> dict[str, ImageRecord]:
            found: dict[str, ImageRecord] = {}
            for image_id in dict.fromkeys(ids):
                value = await self.fetch_record(image_id, request)
                if value:
                    found[image_id] = _record.decode(value)
            return found

        def lookup(ids: Iterable[str]) -> dict[str, ImageRecord]:
            return asyncio.run_coroutine_threadsafe(gather(list(ids)), loop).result(60)

        return lookup
