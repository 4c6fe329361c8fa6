"""The catalog's middlewares on a real aiohttp server (127.0.0.1, a free port): API keys,
errors as JSON, request metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from streams.catalog.http_support import (
    API_KEY_HEADER,
    OPEN_PATHS,
    auth_middleware,
    errors_and_metrics,
    key_hash,
    may_act,
)

KEY = "unit-test-key"
OTHER_KEY = "another-accepted-key"
MAX_BODY = 1024
Client = TestClient[web.Request, web.Application]


async def image(request: web.Request) -> web.Response:
    image_id = request.match_info["image_id"]
    if image_id == "missing":
        raise web.HTTPNotFound(text=f"no image {image_id}")
    if image_id == "boom":
        raise RuntimeError("a bug in a handler")
    return web.json_response({"image_id": image_id})


async def upload(request: web.Request) -> web.Response:
    body = await request.read()  # where aiohttp enforces client_max_size
    return web.json_response({"bytes": len(body)})


async def plain(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def acting(request: web.Request) -> web.Response:
    return web.json_response({"act": may_act(request, frozenset({key_hash(OTHER_KEY)}))})


def serve(check: Callable[[Client], Awaitable[None]]) -> None:
    """Runs check against a server with the service's middlewares, in the service's order
    (errors_and_metrics outside, so the answers of auth are counted too)."""

    async def run() -> None:
        app = web.Application(
            client_max_size=MAX_BODY,
            middlewares=[
                errors_and_metrics,
                auth_middleware(frozenset({key_hash(KEY), key_hash(OTHER_KEY)})),
            ],
        )
        app.router.add_get("/v1/images/{image_id}", image)
        app.router.add_post("/v1/images", upload)
        app.router.add_get("/v1/access", acting)
        for path in [*OPEN_PATHS, "/internal/ping"]:
            app.router.add_get(path, plain)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(run())


def requests_counted(route: str, code: int) -> float:
    value = REGISTRY.get_sample_value(
        "pixelfleet_catalog_requests_total", {"route": route, "code": str(code)}
    )
    return value or 0.0


def seconds_observed(route: str) -> float:
    value = REGISTRY.get_sample_value("pixelfleet_catalog_request_seconds_count", {"route": route})
    return value or 0.0


async def answer(
    client: Client, path: str, headers: dict[str, str] | None = None, method: str = "GET", **kw: Any
) -> tuple[int, str, Any]:
    """Status, content type and the body (JSON when it is)."""
    async with client.request(method, path, headers=headers or {}, **kw) as response:
        if response.content_type == "application/json":
            return response.status, response.content_type, await response.json()
        return response.status, response.content_type, await response.text()


def test_a_request_without_a_key_is_refused_with_401() -> None:
    async def check(client: Client) -> None:
        status, kind, body = await answer(client, "/v1/images/a")
        assert (status, kind, body["error"]) == (401, "application/json", "unauthorized")
        assert API_KEY_HEADER in body["message"]
        # An Authorization header that is not a bearer token carries no key either.
        status, _, body = await answer(client, "/v1/images/a", {"Authorization": "Basic eDp5"})
        assert (status, body["error"]) == (401, "unauthorized")
        status, _, _ = await answer(client, "/v1/images/a", {"Authorization": "Bearer "})
        assert status == 401

    serve(check)


@pytest.mark.parametrize(
    "headers",
    [{API_KEY_HEADER: "wrong"}, {"Authorization": "Bearer wrong"}, {API_KEY_HEADER: KEY.upper()}],
)
def test_a_wrong_key_is_refused_with_403(headers: dict[str, str]) -> None:
    async def check(client: Client) -> None:
        status, kind, body = await answer(client, "/v1/images/a", headers)
        assert (status, kind, body["error"]) == (403, "application/json", "forbidden")

    serve(check)


@pytest.mark.parametrize(
    "headers",
    [
        {API_KEY_HEADER: KEY},
        {API_KEY_HEADER: OTHER_KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {OTHER_KEY}"},
        # The API-key header wins when both are sent.
        {API_KEY_HEADER: KEY, "Authorization": "Bearer wrong"},
    ],
)
def test_an_accepted_key_reaches_the_handler(headers: dict[str, str]) -> None:
    async def check(client: Client) -> None:
        assert await answer(client, "/v1/images/a", headers) == (
            200,
            "application/json",
            {"image_id": "a"},
        )

    serve(check)


def test_the_open_paths_and_paths_outside_v1_need_no_key() -> None:
    async def check(client: Client) -> None:
        for path in [*sorted(OPEN_PATHS), "/internal/ping"]:
            assert await answer(client, path) == (200, "text/plain", "ok"), path
        # A path under /v1/ that merely starts like an open one is not open.
        status, _, body = await answer(client, "/v1/docs/images")
        assert (status, body["error"]) == (401, "unauthorized")

    serve(check)


def test_an_http_error_of_a_handler_becomes_json_with_its_status() -> None:
    async def check(client: Client) -> None:
        assert await answer(client, "/v1/images/missing", {API_KEY_HEADER: KEY}) == (
            404,
            "application/json",
            {"error": "not_found", "message": "no image missing"},
        )
        # aiohttp's own: no route, and a method the route does not take.
        status, kind, body = await answer(client, "/v1/nowhere", {API_KEY_HEADER: KEY})
        assert (status, kind, set(body)) == (404, "application/json", {"error", "message"})
        assert body["error"] == "not_found"
        status, kind, body = await answer(
            client, "/v1/images/a", {API_KEY_HEADER: KEY}, method="DELETE"
        )
        assert (status, kind, body["error"]) == (405, "application/json", "method_not_allowed")

    serve(check)


def test_a_body_over_client_max_size_becomes_413_json() -> None:
    async def check(client: Client) -> None:
        headers = {API_KEY_HEADER: KEY}
        status, kind, body = await answer(
            client, "/v1/images", headers, method="POST", data=b"x" * (4 * MAX_BODY)
        )
        assert (status, kind, body["error"]) == (413, "application/json", "too_large")
        assert str(MAX_BODY) in body["message"]
        # Up to the limit it is read.
        ok = await answer(client, "/v1/images", headers, method="POST", data=b"x" * MAX_BODY)
        assert ok == (200, "application/json", {"bytes": MAX_BODY})

    serve(check)


def test_requests_are_counted_by_route_template_and_status_code() -> None:
    template = "/v1/images/{image_id}"
    wanted = [(template, 200), (template, 404), (template, 401), (template, 403)]
    wanted += [("/v1/images", 413), ("/healthz", 200), ("unmatched", 404)]
    before = {w: requests_counted(*w) for w in wanted}
    timed_before = seconds_observed(template)

    async def check(client: Client) -> None:
        key = {API_KEY_HEADER: KEY}
        await answer(client, "/v1/images/a", key)
        await answer(client, "/v1/images/b", key)  # another id, the same route
        await answer(client, "/v1/images/missing", key)
        await answer(client, "/v1/images/a")
        await answer(client, "/v1/images/a", {API_KEY_HEADER: "wrong"})
        await answer(client, "/v1/images", key, method="POST", data=b"x" * (2 * MAX_BODY))
        await answer(client, "/healthz")
        await answer(client, "/v1/nowhere", key)

    serve(check)
    counted = {w: requests_counted(*w) - before[w] for w in wanted}
    assert counted == {
        (template, 200): 2,
        (template, 404): 1,
        (template, 401): 1,
        (template, 403): 1,
        ("/v1/images", 413): 1,
        ("/healthz", 200): 1,
        ("unmatched", 404): 1,
    }
    # One timing per request of the route, whatever its answer.
    assert seconds_observed(template) - timed_before == 5
    # The ids themselves never become labels.
    assert (
        REGISTRY.get_sample_value(
            "pixelfleet_catalog_requests_total", {"route": "/v1/images/a", "code": "200"}
        )
        is None
    )


def test_an_unexpected_exception_is_a_json_500_and_is_counted() -> None:
    template = "/v1/images/{image_id}"
    before = requests_counted(template, 500)

    async def check(client: Client) -> None:
        status, kind, body = await answer(client, "/v1/images/boom", {API_KEY_HEADER: KEY})
        assert (status, kind) == (500, "application/json")
        assert set(body) >= {"error", "message"}

    serve(check)
    assert requests_counted(template, 500) - before == 1


def test_only_the_acting_keys_may_act() -> None:
    """The middleware leaves the accepted key's digest on the request; may_act compares it
    with the acting digests. The key itself is never kept."""

    async def check(client: Client) -> None:
        _, _, body = await answer(client, "/v1/access", {API_KEY_HEADER: KEY})
        assert body == {"act": False}
        _, _, body = await answer(client, "/v1/access", {"Authorization": f"Bearer {OTHER_KEY}"})
        assert body == {"act": True}

    serve(check)


def test_an_acting_digest_counts_only_for_an_accepted_key() -> None:
    from streams.config.settings import CatalogSettings

    accepted, stray = key_hash(KEY), key_hash("not accepted")
    settings = CatalogSettings(
        api_key_hashes=f" {accepted.upper()} ,", acting_key_hashes=f"{accepted},{stray}"
    )
    assert settings.acting_hashes() == {accepted}
    assert CatalogSettings(api_key_hashes=accepted).acting_hashes() == frozenset()
