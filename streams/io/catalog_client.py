"""A client of the catalog's HTTP API, for the CLI and the stages.

Everything here is advice: an unreachable or slow catalog makes each call raise
CatalogUnavailableError, and the caller goes on as if the catalog did not exist (the work is
done again, which deterministic keys make harmless).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY_HEADER = "X-API-Key"

# scheme://user:password@ : everything between "//" and the last "@" of the authority. A
# password may also hold a raw "/", "?" or "#" (people paste them unescaped): when what follows
# "user:" is no port (not all digits up to the path), the credentials run to the first "@".
# A password of digits then "/" stays ambiguous with host:port/path and is left as it is.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?:[^/?#\s]*@"
    r"|[^/?#\s@:\[]*:(?![0-9]*(?:[/?#\s]|$))[^\s@]*@)"
)


def redact_url(text: str) -> str:
    """`text` with the user:password@ of every URL in it replaced by ***@.

    A URL may carry its credentials (PIXELFLEET_CATALOG_URL=http://bob:secret@host/), and
    the messages that name the URL end up in terminals, logs and bug reports."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


class CatalogUnavailableError(Exception):
    """The catalog did not answer usefully; the message says why."""


@dataclass(frozen=True)
class Lookup:
    duplicate_of: str | None = None
    near_duplicates: list[tuple[str, int]] = field(default_factory=list)  # (image_id, distance)


class CatalogClient:
    def __init__(self, url: str, api_key: str | None, timeout_s: float = 2.0) -> None:
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

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
        body = answer.json()
        near = [(n["image_id"], int(n["distance"])) for n in body.get("near_duplicates", [])]
        return Lookup(duplicate_of=body.get("duplicate_of"), near_duplicates=near)

    def record(self, image_id: str) -> bytes | None:
        """The image's latest record as JSON bytes, or None if the catalog has none."""
        answer = self._get(f"/v1/images/{image_id}")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise CatalogUnavailableError(f"record: HTTP {answer.status_code} {answer.text[:200]}")
        return answer.content
