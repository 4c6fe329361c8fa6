"""Before submitting files: ask the catalog which of them are already done."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from schemas.events import Request
from streams.app.settings import Settings
from streams.io.catalog_client import CatalogClient, CatalogUnavailableError, redact_url
from streams.stages.fingerprint import fingerprint

log = logging.getLogger(__name__)


def catalog_client(settings: Settings) -> CatalogClient:
    catalog = settings.catalog
    if not catalog.url:
        raise CatalogUnavailableError("no catalog configured (PIXELFLEET_CATALOG_URL)")
    key = catalog.api_key.get_secret_value() if catalog.api_key else None
    return CatalogClient(catalog.url, key, catalog.client_timeout_s)


def already_done(settings: Settings, files: dict[str, Path], request: Request) -> dict[str, str]:
    """content id -> the finished image of the same bytes under the same settings, for the
    files that have one. Without a catalog, or when it does not answer, nothing is known."""
    if not settings.catalog.url or not files:
        return {}
    printed = fingerprint(settings.stages, request)
    found: dict[str, str] = {}
    client: CatalogClient | None = None
    try:
        # Built inside: a client it cannot build (a key no header can carry) is a catalog
        # that cannot be asked, like one that does not answer.
        client = catalog_client(settings)
        for content_id, path in files.items():
            with path.open("rb") as handle:
                sha = hashlib.file_digest(handle, "sha256").hexdigest()
            existing = client.lookup(sha256=sha, fingerprint=printed).duplicate_of
            if existing:
                found[content_id] = existing
    except CatalogUnavailableError as exc:
        # Redacted here too: whatever raised it, the catalog URL may hold a password.
        log.warning(
            "the catalog could not be asked, so every file is submitted: %s", redact_url(str(exc))
        )
        return {}
    finally:
        if client is not None:
            client.close()
    return found
