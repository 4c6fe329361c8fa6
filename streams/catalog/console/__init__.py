"""The web console: static pages served by the catalog at `/` and `/console/...`.

Plain HTML, CSS and small scripts shipped as package data, read once at start-up; there is
no build step and nothing to download. The pages hold no secret: they ask the person for an
API key and send it on every API call, exactly as any other client of `/v1` does, so the
pages themselves are served without a key.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from streams.config.settings import FleetSettings

ASSETS = {
    "index.html": "text/html",
    "console.css": "text/css",
    "console.js": "text/javascript",
    "cards.js": "text/javascript",
    "pages.js": "text/javascript",
    "upload.js": "text/javascript",
    "actions.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


def _load() -> dict[str, bytes]:
    folder = resources.files(__package__)
    return {name: (folder / name).read_bytes() for name in ASSETS}


def s3_origin(settings: FleetSettings) -> str:
    """Where presigned links point, for the page's Content-Security-Policy."""
    s3 = settings.s3
    host, secure = settings.catalog.public_s3(s3)
    return f"{'https' if secure else 'http'}://{host}"


def security_headers(settings: FleetSettings) -> dict[str, str]:
    origin = s3_origin(settings)
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' {origin}; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        # A presigned link is a credential for a while: never sent on in a Referer.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def install_console(app: web.Application, settings: FleetSettings) -> None:
    assets = _load()
    headers = security_headers(settings)

    def serve(name: str) -> web.Response:
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=headers)

    async def favicon(_request: web.Request) -> web.Response:
        return serve("favicon.svg")

    async def index(_request: web.Request) -> web.Response:
        return serve("index.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound(text=f"no console file {name!r}")
        return serve(name)

    app.router.add_route("GET", "/", index)
    app.router.add_route("GET", "/console/", index)
    app.router.add_route("GET", "/console/{name}", asset)
    # Browsers ask for it whatever the page says; a 404 would be noise in every console.
    app.router.add_route("GET", "/favicon.ico", favicon)
