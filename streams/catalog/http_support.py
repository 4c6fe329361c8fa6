"""What every catalog request goes through: errors as JSON, API keys, metrics.

aiohttp middlewares, installed through faust's `web_application_options`, so they wrap the
faust web server's own routes as well as ours.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streams.observe import metrics

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Answered without a key: probes, scrapes and the description of the API itself.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/docs"})
API_KEY_HEADER = "X-API-Key"
# Set on a request one replica passes to another, so it is never passed on twice.
ROUTED_HEADER = "X-Pixelfleet-Routed"
# Where the auth middleware leaves the accepted key's sha256 on the request.
KEY_HASH = "pixelfleet.key_hash"


def may_act(request: web.Request, acting: frozenset[str]) -> bool:
    """Whether the request's (accepted) key is one of the acting keys; constant time each."""
    digest = request.get(KEY_HASH)
    if not isinstance(digest, str):
        return False
    return any([hmac.compare_digest(digest, h) for h in acting])


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """Every 4xx and 5xx of the API: a stable code for programs, a sentence for people."""
    return web.json_response({"error": code, "message": message, **extra}, status=status)


_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"", "0", "false", "no"})


class BadFlagError(ValueError):
    """A yes/no parameter that is neither: answered 400 `bad_flag` with its message."""


def flag(name: str, value: Any) -> bool:
    """A yes/no parameter (a JSON boolean, or 1/0, true/false, yes/no). Anything else raises
    BadFlagError naming it: a mistyped `dry_run` must never be read as "no" and do the work."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadFlagError(f"{name} is true or false (1 or 0, yes or no), not {value!r}")


def read_json(data: bytes | str) -> Any:
    """json.loads, with nesting too deep to parse reported as the ValueError it is."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(request: web.Request) -> str:
    """The API key a request carries: X-API-Key, else Authorization: Bearer; "" if none."""
    key = request.headers.get(API_KEY_HEADER, "")
    if not key:
        bearer = request.headers.get("Authorization", "")
        key = bearer[7:] if bearer.lower().startswith("bearer ") else ""
    return key


class BadQueryError(ValueError):
    """A query parameter a handler cannot use: answered 400 `bad_query` with its message."""


def auth_middleware(accepted: frozenset[str]) -> Any:
    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or not request.path.startswith("/v1/"):
            return await handler(request)
        key = presented_key(request)
        if not key:
            return error(401, "unauthorized", f"send an API key in the {API_KEY_HEADER} header")
        digest = key_hash(key)
        # Compared in constant time, each of them, so timing says nothing about the keys.
        if not any([hmac.compare_digest(digest, h) for h in accepted]):
            return error(403, "forbidden", "this API key is not accepted")
        # The digest, never the key, for the handlers that check what a key may do.
        request[KEY_HASH] = digest
        return await handler(request)

    return check_key


def _template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Times every request by its route template and turns aiohttp's errors into JSON."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        response = error(413, "too_large", exc.text or "the request body is too large")
    except BadQueryError as exc:
        response = error(400, "bad_query", str(exc))
    except BadFlagError as exc:
        response = error(400, "bad_flag", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the route has
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:  # a bug: logged with its traceback, answered and counted as a 500
        log.exception("%s %s failed", request.method, request.path)
        response = error(500, "internal", "the catalog failed on this request; see its log")
    route = _template(request)
    metrics.CATALOG_REQUESTS.labels(route, str(response.status)).inc()
    metrics.CATALOG_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
    return response
