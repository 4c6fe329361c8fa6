"""Work never done twice: what validate asks the catalog once it knows an image's content.

Exact: the same sha256 already finished under the same settings fingerprint makes this image
a duplicate; it stops after validate, pointing at that image and its variants. Near: images
whose perceptual hash is within the fleet's distance are noted on the record; under the
`skip` policy the nearest finished one is treated like an exact duplicate.

Advice only. With no catalog configured, or one that does not answer, the image is processed
as if it were new: a race or an outage costs work, never a wrong result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Literal

from schemas.events import Envelope, ImageRecord, NearDuplicate, decoder
from streams.io.catalog_client import CatalogClient, CatalogUnavailableError

log = logging.getLogger(__name__)
_record = decoder(ImageRecord)


@dataclass(frozen=True)
class CatalogLink:
    """How validate reaches the catalog; picklable, so it travels to the pool processes."""

    url: str
    api_key: str | None
    timeout_s: float
    near_dup_distance: int
    near_dup_policy: Literal["record", "skip"]


@cache  # one client (and its keep-alive connections) per process
def _client(link: CatalogLink) -> CatalogClient:
    return CatalogClient(link.url, link.api_key, link.timeout_s)


@dataclass(frozen=True)
class Verdict:
    duplicate_of: ImageRecord | None
    near: list[NearDuplicate]
    note: str | None = None  # why the catalog could not help, when it could not


def ask(link: CatalogLink, envelope: Envelope, sha256: str, phash: str | None) -> Verdict:
    record = envelope.record
    client = _client(link)
    try:
        found = client.lookup(
            sha256=sha256,
            fingerprint=record.fingerprint,
            phash=phash,
            max_distance=link.near_dup_distance if phash else None,
            exclude=record.image_id,
        )
        near = [NearDuplicate(image_id=i, distance=d) for i, d in found.near_duplicates]
        candidate = found.duplicate_of
        if candidate == record.image_id:  # this very image, done before: do it again
            candidate = None
        if candidate is None and link.near_dup_policy == "skip" and near:
            candidate = near[0].image_id
        existing = (
            _finished(client, candidate)
            if candidate and not envelope.submitted.request.force
            else None
        )
        return Verdict(existing, near)
    except CatalogUnavailableError as exc:
        log.warning("no deduplication for %s: %s", record.image_id, exc)
        return Verdict(None, [], note=f"catalog unavailable: {exc}")


def _finished(client: CatalogClient, image_id: str) -> ImageRecord | None:
    raw = client.record(image_id)
    if raw is None:
        return None
    existing = _record.decode(raw)
    # Only finished work can stand in for this image, and only work done on its own.
    if existing.status != "done" or existing.duplicate_of or not existing.variants:
        return None
    return existing


def mark_duplicate(envelope: Envelope, existing: ImageRecord) -> None:
    """The record of an image that is not processed: it points at the one that was."""
    record = envelope.record
    record.duplicate_of = existing.image_id
    record.variants = list(existing.variants)
    record.category = existing.category
    record.current = None
    # The route ends here: the next topic after validate is `done`.
    envelope.route = [s for s in envelope.route if s in ("fetch", "validate")]
