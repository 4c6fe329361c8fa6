"""Work never done twice: what validate asks the catalog once it knows an image's content.

Exact: the same sha256 already finished under the same settings fingerprint makes this image
a duplicate; it stops after validate, pointing at that image and its variants. Near: images
whose perceptual hash is within the fleet's distance are noted on the record; under the
`skip` policy the nearest one finished on its own under the same settings is treated like an
exact duplicate.

Advice only. With no catalog configured, or one that does not answer (or answers something
that cannot be read), the image is processed as if it were new: a race or an outage costs
work, never a wrong result.
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
# Near-duplicates whose records are read under the `skip` policy, nearest first: each is one
# request to the catalog, and one further away than this is unlikely to be the one.
MAX_NEAR_TRIED = 8
# What an answer that is not the catalog's JSON raises as it is read: a body that is not
# JSON (ValueError, msgspec's errors among them), or JSON of another shape.
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)


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
    try:
        client = _client(link)  # inside: a client that cannot be built is a catalog unavailable
        found = client.lookup(
            sha256=sha256,
            fingerprint=record.fingerprint,
            phash=phash,
            max_distance=link.near_dup_distance if phash else None,
            exclude=record.image_id,
        )
        near = [NearDuplicate(image_id=i, distance=d) for i, d in found.near_duplicates]
        if envelope.submitted.request.force:
            return Verdict(None, near)
        if found.duplicate_of and found.duplicate_of != record.image_id:
            # The same content under the same settings: it stands in, or nothing does (the
            # same work still under way is no reason to take a near one instead).
            candidates = [found.duplicate_of]
        elif link.near_dup_policy == "skip":
            candidates = [n.image_id for n in near[:MAX_NEAR_TRIED]]
        else:  # none, or this very image done before: it is done again
            candidates = []
        existing = next(
            (done for i in candidates if (done := _finished(client, i, record)) is not None), None
        )
        return Verdict(existing, near)
    except CatalogUnavailableError as exc:
        return _unhelpful(record, f"catalog unavailable: {exc}")
    except _UNREADABLE as exc:
        return _unhelpful(record, f"catalog answer unreadable: {type(exc).__name__}: {exc}")


def _unhelpful(record: ImageRecord, note: str) -> Verdict:
    log.warning("no deduplication for %s: %s", record.image_id, note)
    return Verdict(None, [], note=note[:300])  # a note, not a copy of whatever came back


def _finished(client: CatalogClient, image_id: str, wanted: ImageRecord) -> ImageRecord | None:
    raw = client.record(image_id)
    if raw is None:
        return None
    existing = _record.decode(raw)
    # Only finished work can stand in for this image, only work done on its own, and only
    # under the same settings: another image's outputs in other formats or sizes are not
    # what this submission asked for.
    if existing.status != "done" or existing.duplicate_of or not existing.variants:
        return None
    if existing.fingerprint != wanted.fingerprint:
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
