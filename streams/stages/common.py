"""What every image stage adapter needs: decoding the input blob, keys, errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from PIL import Image

from processors import intermediate
from processors.errors import InputRejectedError
from schemas.events import Envelope, ObjectRef
from streams.config.topics import INGEST_STAGE
from streams.runner.stage import PermanentError

T = TypeVar("T")


def rejected_as_permanent(call: Callable[[], T]) -> T:
    """A processor's rejection is a permanent error of the stage."""
    try:
        return call()
    except InputRejectedError as exc:
        raise PermanentError(exc.reason_class, exc.reason) from exc


def open_intermediate(blob: bytes | None, stage: str) -> Image.Image:
    """The lossless image a previous stage left in the work bucket (processors.intermediate)."""
    if blob is None:
        raise PermanentError("missing_input", f"{stage} needs the previous stage's image")
    try:
        image = intermediate.decode(blob)
    except Exception as exc:  # our own intermediate: anything wrong here is corruption
        raise PermanentError("corrupt_intermediate", f"{stage}: {exc}") from exc
    return image


def work_key(stage: str, envelope: Envelope, *parts: object) -> str:
    """Deterministic: the same input, stage and parameters always give the same key."""
    source = envelope.record.current or envelope.submitted.source.object
    identity = f"{source.bucket}/{source.key}" if source else envelope.submitted.image_id
    digest = hashlib.sha256("|".join(map(str, (identity, stage, *parts))).encode()).hexdigest()[:16]
    # No extension: the object is a framed QOI or a PNG, as its content type says.
    return f"{stage}/{envelope.record.image_id}/{digest}"


def ref(bucket: str, key: str, data: bytes, content_type: str) -> ObjectRef:
    return ObjectRef(
        bucket=bucket,
        key=key,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
    )


def admit_url(envelope: Envelope) -> str | None:
    """validate's admission: a URL source not downloaded yet goes to fetch first, before
    anything is read (one cheap hop; object sources never see fetch)."""
    if envelope.submitted.source.url and envelope.record.current is None:
        # The route planned so far, as for an uploaded file at validate (`["validate"]`):
        # validate plans the rest once it has the bytes. A URL rejected at fetch used to
        # list categorize, enhance and compress, which it never reached.
        envelope.route = ["fetch", INGEST_STAGE]
        return "fetch"
    return None
