"""A client of the catalog's HTTP API, for the CLI and the stages.

Everything here is advice: an unreachable or slow catalog makes each call raise
CatalogUnavailableError, and the caller goes on as if the catalog did not exist (the work is
done again, which deterministic keys make harmless).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from streams.config.urls import http_url_problem, redact_url

# redact_url is re-exported: the CLI and the app redact with it from here (it lives in
# config so that the settings can use it too).
__all__ = ["API_KEY_HEADER", "CatalogClient", "CatalogUnavailableError", "Lookup", "redact_url"]

API_KEY_HEADER = "X-API-Key"


class CatalogUnavailableError(Exception):
    """The catalog did not answer usefully; the message says why."""


@dataclass(frozen=True)
class Lookup:
    duplicate_of: str | None = None
    near_duplicates: list[tuple[str, int]] = field(default_factory=list)  # (image_id, distance)


# What /v1/lookup answers; anything else in a 200 is not the catalog's answer.
class _Near(msgspec.Struct):
    image_id: str
    distance: int


class _LookupAnswer(msgspec.Struct):
    duplicate_of: str | None = None
    near_duplicates: list[_Near] = msgspec.field(default_factory=list)


class _ErrorAnswer(msgspec.Struct):
    error: str


class _RecordAnswer(msgspec.Struct):
    """Enough of a record to know the answer is one; the caller reads the rest."""

    image_id: str


_lookup_answer = msgspec.json.Decoder(_LookupAnswer)
_error_answer = msgspec.json.Decoder(_ErrorAnswer)
_record_answer = msgspec.json.Decoder(_RecordAnswer)


class CatalogClient:
    def __init__(self, url: str, api_key: str | None, timeout_s: float = 2.0) -> None:
        """Raises CatalogUnavailableError, never the HTTP library's own error, for a URL or
        key it cannot use: the caller goes on without the catalog, and the library's
        message may quote part of a password."""
        problem = http_url_problem(url)
        if problem is not None:
            raise CatalogUnavailableError(f"PIXELFLEET_CATALOG_URL {redact_url(url)}: {problem}")
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        try:
            self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        except UnicodeError:
            # The header is encoded here; the error would quote a character of the key.
            raise CatalogUnavailableError(
                "PIXELFLEET_CATALOG_API_KEY holds a character an HTTP header cannot carry "
                "(ASCII only)"
            ) from None
        except (httpx.InvalidURL, ValueError, TypeError):
            raise CatalogUnavailableError(
                f"PIXELFLEET_CATALOG_URL {redact_url(url)}: an HTTP client cannot use it"
            ) from None

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            answer = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            # The exception's own text may quote the URL too.
            raise CatalogUnavailableError(redact_url(f"{self._http.base_url}: {exc}")) from exc
        if answer.status_code in (401, 403):
            # It answered: the key is the problem, and the person can mend it.
            given = "no key" if API_KEY_HEADER not in self._http.headers else "the key"
            raise CatalogUnavailableError(
                redact_url(
                    f"{self._http.base_url} refused {given} (HTTP {answer.status_code}): set "
                    "PIXELFLEET_CATALOG_API_KEY to a key it accepts (catalog.api_key_hashes)"
                )
            )
        if answer.status_code >= 500:
            raise CatalogUnavailableError(
                redact_url(
                    f"{self._http.base_url}{path}: HTTP {answer.status_code} {answer.text[:200]}"
                )
            )
        return answer

    def lookup(
        self,
        sha256: str | None = None,
        fingerprint: str | None = None,
        phash: str | None = None,
        max_distance: int | None = None,
        exclude: str | None = None,
    ) -> Lookup:
        """The finished image of this content under these settings, and near-duplicates of
        this perceptual hash."""
        params = {
            k: v
            for k, v in {
                "sha256": sha256,
                "fingerprint": fingerprint,
                "phash": phash,
                "max_distance": max_distance,
                "exclude": exclude,
            }.items()
            if v is not None
        }
        answer = self._get("/v1/lookup", params)
        if answer.status_code != 200:
            raise CatalogUnavailableError(f"lookup: HTTP {answer.status_code} {answer.text[:200]}")
        try:
            body = _lookup_answer.decode(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A 200 that is not the catalog's answer: a proxy's login page, another service
            # at that URL. The error names what was wrong, never the body.
            raise CatalogUnavailableError(
                redact_url(f"{self._http.base_url}/v1/lookup: not the catalog's answer ({exc})")
            ) from None
        near = [(n.image_id, n.distance) for n in body.near_duplicates]
        return Lookup(duplicate_of=body.duplicate_of, near_duplicates=near)

    def record(self, image_id: str) -> bytes | None:
        """The image's latest record as JSON bytes, or None when the catalog answers that it
        has none: a 404 with its `not_found` error. Any other 404 (a proxy's page) raises,
        and so does a 200 that is no record. Even a `not_found` is weak evidence (the
        catalog may still be reading the topic, and its answer to a path it has no route
        for, such as a URL already ending in /v1, is `not_found` too): callers that must
        be sure read the metadata topic."""
        answer = self._get(f"/v1/images/{quote(image_id, safe='')}")
        if answer.status_code == 404:
            try:
                said = _error_answer.decode(answer.content).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                said = None
            if said == "not_found":
                return None
        if answer.status_code != 200:
            raise CatalogUnavailableError(
                redact_url(f"record: HTTP {answer.status_code} {answer.text[:200]}")
            )
        try:
            _record_answer.decode(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CatalogUnavailableError(
                redact_url(f"{self._http.base_url}: not a record in its answer ({exc})")
            ) from None
        return answer.content
