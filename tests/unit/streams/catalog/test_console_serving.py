"""The console's files and list endpoint on a real aiohttp server (127.0.0.1, a free port),
behind the catalog's own middlewares: pages without a key, `/v1` with one, no secret in
any file, thumbnails only as presigned URLs."""

from __future__ import annotations

import asyncio
import random
import re
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from minio import Minio
from pydantic import ValidationError

from schemas.events import encode
from streams.catalog.api import CatalogApi
from streams.catalog.console import ASSETS, install_console, security_headers
from streams.catalog.console_api import ConsoleApi
from streams.catalog.fleet import FleetView
from streams.catalog.http_support import auth_middleware, errors_and_metrics, key_hash
from streams.catalog.listing import ListedIndex
from streams.config.settings import FleetSettings
from tests.support.catalog_kit import fake_record

KEY = "console-unit-key"
ROOT = Path(__file__).parents[4]
Client = TestClient[web.Request, web.Application]


def _app(settings: FleetSettings, index: ListedIndex) -> web.Application:
    app = web.Application(
        middlewares=[errors_and_metrics, auth_middleware(frozenset({key_hash(KEY)}))]
    )
    presigner = Minio(
        settings.s3.host,
        access_key=settings.s3.access_key,
        secret_key=settings.s3.secret_key.get_secret_value(),
        secure=False,
        region=settings.s3.region,
    )
    console = ConsoleApi(index, FleetView(settings, None), presigner, 600)
    app.router.add_get("/v1/images", console.list_images)
    install_console(app, settings)
    return app


def _serve(index: ListedIndex, check: Callable[[Client], Awaitable[None]]) -> None:
    async def run() -> None:
        client: Client = TestClient(TestServer(_app(FleetSettings(), index), host="127.0.0.1"))
        await client.start_server()
        try:
            await check(client)
        finally:
            await client.close()

    asyncio.run(run())


def test_the_pages_are_served_without_a_key_with_a_strict_policy() -> None:
    async def check(client: Client) -> None:
        for path in ("/", "/console/", *(f"/console/{name}" for name in ASSETS)):
            answer = await client.get(path)
            assert answer.status == 200, path
            policy = answer.headers["Content-Security-Policy"]
            assert (
                "script-src 'self'" in policy and "img-src 'self' http://127.0.0.1:9000" in policy
            )
            assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert (await client.get("/console/../pyproject.toml")).status == 404
        assert (await client.get("/console/secrets.txt")).status == 404
        assert (await client.get("/v1/images")).status == 401

    _serve(ListedIndex(), check)


def test_no_file_holds_a_secret_an_inline_script_or_an_outside_address() -> None:
    folder = ROOT / "streams/catalog/console"
    defaults = FleetSettings()
    for name in ASSETS:
        text = (folder / name).read_text()
        assert defaults.s3.secret_key.get_secret_value() not in text, name
        # Only relative links; an SVG names its XML namespace, which is never fetched.
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://(?!…)[a-z0-9]", text), name
        assert "<script>" not in text and " on" + "click=" not in text, name
    assert "sessionStorage" in (folder / "console.js").read_text()
    assert "localStorage" not in (folder / "console.js").read_text()


def test_the_files_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["streams.catalog.console"]
    suffixes = {Path(name).suffix for name in ASSETS}
    assert suffixes <= {Path(p).suffix for p in patterns}


def test_the_list_answers_pages_with_presigned_thumbnails_and_a_cursor() -> None:
    index = ListedIndex()
    records = [fake_record(f"img-{n}", random.Random(n)) for n in range(5)]
    index.apply_many([(r.image_id.encode(), encode(r)) for r in records])
    headers = {"X-API-Key": KEY}

    async def check(client: Client) -> None:
        first: dict[str, Any] = await (
            await client.get("/v1/images?limit=3", headers=headers)
        ).json()
        assert [i["image_id"] for i in first["images"]] == ["img-4", "img-3", "img-2"]
        url = urlsplit(first["images"][0]["thumb_url"])
        assert url.path == "/pixelfleet-images/rings/web/img-4.webp"
        assert "X-Amz-Signature" in parse_qs(url.query)
        rest = await (
            await client.get(f"/v1/images?limit=3&cursor={first['cursor']}", headers=headers)
        ).json()
        assert [i["image_id"] for i in rest["images"]] == ["img-1", "img-0"]
        assert rest["cursor"] is None
        named = await (await client.get("/v1/images?ids=img-0,nope,img-3", headers=headers)).json()
        assert [i["image_id"] for i in named["images"]] == ["img-0", "img-3"]
        epoch = index.epoch
        for bad in (
            "limit=0",
            "limit=x",
            "cursor=-1",
            "cursor=3",
            f"cursor={epoch}.0",
            f"cursor={epoch}.%C2%B2",  # a superscript two: a digit to str.isdigit, not to int
            f"cursor={epoch}.{'9' * 5000}",  # past the digits int() converts
            "limit=201",
        ):
            assert (await client.get(f"/v1/images?{bad}", headers=headers)).status == 400, bad
        # A cursor of another replica (or of this one before a restart): refused, not
        # answered with another numbering's page.
        foreign = first["cursor"].replace(epoch, ListedIndex().epoch)
        stale = await client.get(f"/v1/images?limit=3&cursor={foreign}", headers=headers)
        assert (stale.status, (await stale.json())["error"]) == (409, "stale_cursor")

    _serve(index, check)


def test_presigned_links_point_at_the_public_endpoint_in_the_policy() -> None:
    settings = FleetSettings(catalog={"public_s3_endpoint": "images.shop.test"})  # type: ignore[arg-type]
    assert (
        "img-src 'self' http://images.shop.test;"
        in security_headers(settings)["Content-Security-Policy"]
    )


def test_a_public_endpoint_may_name_https_while_the_fleet_talks_http() -> None:
    """S3 behind TLS for clients, plain inside: links and policy say https (a console
    served over https would block http images as mixed content)."""
    settings = FleetSettings(catalog={"public_s3_endpoint": "https://images.shop.test/"})  # type: ignore[arg-type]
    assert not settings.s3.secure
    assert settings.catalog.public_s3(settings.s3) == ("images.shop.test", True)
    policy = security_headers(settings)["Content-Security-Policy"]
    assert "img-src 'self' https://images.shop.test;" in policy
    api = CatalogApi(settings, None, ListedIndex(), None, None)  # type: ignore[arg-type]
    url = api.presigner.presigned_get_object("images", "k.jpg")
    assert url.startswith("https://images.shop.test/images/k.jpg?")
    for bad in ("ftp://images.shop.test", "https://images.shop.test/s3", "images.shop.test/x"):
        with pytest.raises(ValidationError):
            FleetSettings(catalog={"public_s3_endpoint": bad})  # type: ignore[arg-type]
