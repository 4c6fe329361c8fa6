"""The event contracts of pixelfleet, version 1.

These models are the source of the language-neutral JSON Schema files in
`schemas/json/v1/` (regenerate with `python -m schemas.generate`; a test fails
when the files and the models drift apart). Unknown fields are ignored on
decode, so a consumer keeps working when a newer producer adds fields.

Unknown *values* are not: the enumerations (`StageOutcome`, `RecordStatus`, `RestoreMode`,
`StageName`) are Literals, and a value an older reader does not know fails the decoding of
the whole message (a stage then dead-letters it as undecodable). So a new value is a new
schema version: bump SCHEMA_VERSION (the `pixelfleet-schema` header then says `kind/2`),
generate `json/v2/`, and roll out every reader that knows the value (the stages, the
catalog, notify, upstream consumers of `done`) before any writer sends it. Adding a field
with a default needs none of that. See "Schema evolution" in docs/architecture.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct, field

SCHEMA_VERSION = 1
T = TypeVar("T")

ImageId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        description="Stable id of one image: 1-128 of A-Z a-z 0-9 . _ -",
    ),
]
Timestamp = Annotated[str, Meta(description="RFC 3339 UTC time, e.g. 2026-11-21T09:40:11.123Z")]
# Upstream's own id of a request, carried on every record and header of the image: bounded,
# so that no record grows past the broker's message limit on its account.
CORRELATION_ID_MAX = 256
CorrelationId = Annotated[str, Meta(max_length=CORRELATION_ID_MAX)]
StageName = Literal["validate", "categorize", "enhance", "restore", "compress"]
RestoreMode = Literal["auto", "denoise", "upscale", "none"]
# The enhance stage's profiles (processors.enhance): a request names one of these or none.
Profile = Literal["none", "auto", "product", "match"]
RecordStatus = Literal["processing", "done", "rejected", "failed"]
# deferred: the stage will try again later (fetch: a slow or rate-limited host).
StageOutcome = Literal["ok", "skipped", "deferred", "rejected", "failed"]


class ObjectRef(Struct, frozen=True, kw_only=True):
    """A blob in S3."""

    bucket: Annotated[str, Meta(min_length=3, max_length=63)]
    key: Annotated[str, Meta(min_length=1, max_length=1024)]
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None


class Source(Struct, frozen=True, kw_only=True):
    """Where the original is: exactly one of `object` or `url`."""

    object: ObjectRef | None = None
    url: Annotated[str, Meta(pattern=r"^https?://", max_length=4096)] | None = None

    def __post_init__(self) -> None:
        if (self.object is None) == (self.url is None):
            raise ValueError("source needs exactly one of `object` or `url`")


class Hints(Struct, frozen=True, kw_only=True):
    """What upstream knows about the image; used to categorize it."""

    title: str | None = None
    keywords: list[str] = field(default_factory=list)
    page_url: str | None = None
    file_name: str | None = None


class Request(Struct, frozen=True, kw_only=True):
    """Optional per-image overrides of the fleet's configuration."""

    # One of `Profile`, checked where a request is made (Submitter, the catalog, the CLI),
    # not here: records stored before that check may hold another name, and must still
    # decode.
    profile: str | None = None
    variants: list[str] | None = None
    formats: list[str] | None = None
    restore: RestoreMode = "auto"
    # Process it even when the same content is already done under the same settings.
    force: bool = False


class ImageSubmitted(Struct, frozen=True, kw_only=True):
    """What upstream publishes on `<prefix>.ingest`, keyed by image_id."""

    image_id: ImageId
    source: Source
    submitted_at: Timestamp
    hints: Hints = field(default_factory=Hints)
    request: Request = field(default_factory=Request)
    correlation_id: CorrelationId | None = None


class StageState(Struct, kw_only=True):
    """What one stage did to one image."""

    outcome: StageOutcome
    started_at: Timestamp
    seconds: float
    attempts: int = 1
    detail: str | None = None


class ErrorInfo(Struct, frozen=True, kw_only=True):
    stage: str
    reason_class: str
    reason: str
    at: Timestamp


class Category(Struct, frozen=True, kw_only=True):
    name: str
    score: float
    evidence: list[str] = field(default_factory=list)


class Variant(Struct, frozen=True, kw_only=True):
    """One finished output."""

    variant: str
    format: str
    width: int
    height: int
    bytes: int
    object: ObjectRef
    quality: int | None = None
    compression_ratio: float | None = None


class FetchInfo(Struct, kw_only=True):
    """What the fetch stage saw downloading a URL source."""

    url: str
    attempts: int = 0
    final_url: str | None = None  # after redirects
    status: int | None = None  # the final response's HTTP status
    content_type: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    seconds: float | None = None
    redirects: list[str] = field(default_factory=list)
    # Where the body was stored: the incoming bucket, under a key derived from the URL.
    object: ObjectRef | None = None
    # While deferred: not before this time, and why.
    not_before: Timestamp | None = None
    last_error: str | None = None
    # Tries that never had a fair chance (every lookup thread or connection of ours busy,
    # or started too late in its batch), not yet counted: not held against the URL, but
    # every few of them count as one attempt (and start this again), so none goes round
    # for ever.
    uncounted_tries: int = 0


class NearDuplicate(Struct, frozen=True, kw_only=True):
    """Another image whose perceptual hash is within the fleet's distance of this one's."""

    image_id: ImageId
    distance: Annotated[int, Meta(ge=0, le=64, description="Hamming distance of the hashes")]


class ImageRecord(Struct, kw_only=True):
    """The full current record of one image, as written to the compacted metadata topic."""

    image_id: ImageId
    status: RecordStatus
    updated_at: Timestamp
    stages: dict[str, StageState] = field(default_factory=dict)
    route: list[str] = field(default_factory=list)
    original: dict[str, Any] | None = None
    quality: dict[str, float] | None = None
    category: Category | None = None
    restore: dict[str, Any] | None = None
    enhancement: dict[str, Any] | None = None
    variants: list[Variant] = field(default_factory=list)
    errors: list[ErrorInfo] = field(default_factory=list)
    fetch: FetchInfo | None = None  # for a URL source
    # The blob the next stage of the route reads.
    current: ObjectRef | None = None
    correlation_id: str | None = None
    # The processing settings this image was made under (see streams.stages.fingerprint).
    fingerprint: str | None = None
    # Set when the same content was already done under the same settings: this image was
    # not processed again and `variants` are that image's.
    duplicate_of: ImageId | None = None
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    # The submission's per-image request, when it asked for anything: what a replay
    # rebuilt from the record (its events gone past the retention) asks for again.
    request: Request | None = None


class Envelope(Struct, kw_only=True):
    """What passes between stages: the submitted event, the route and the record so far."""

    submitted: ImageSubmitted
    route: list[str]
    record: ImageRecord
    attempt: int = 0
    # With compress.keep_original: the normalized original enhance stored in the images
    # bucket. It rides here, not in `record.variants`, because a record lists only finished
    # outputs (the console's thumbnail, the variants endpoint, a replay's sweep read them);
    # compress adds it to the variants when the image is done.
    kept_original: Variant | None = None


class DeadLetter(Struct, frozen=True, kw_only=True):
    """A message that failed for good, on `<prefix>.dlq`."""

    image_id: str
    stage: str
    reason_class: str
    reason: str
    topic: str
    partition: int
    offset: int
    attempts: int
    at: Timestamp
    original: str
    original_encoding: Literal["utf-8", "base64"] = "utf-8"
    quarantined: ObjectRef | None = None
    # Set when the original event was too large to keep in the letter (`original` is then
    # empty): its size in bytes. It stays at topic/partition/offset while the topic keeps it.
    original_size: int | None = None
    # With the original left out, what a `rejected` webhook would have read from it.
    category: str | None = None
    correlation_id: str | None = None


class ImageProcessed(Struct, frozen=True, kw_only=True):
    """The completion event for upstream systems, on `<prefix>.done`."""

    image_id: ImageId
    status: RecordStatus
    finished_at: Timestamp
    variants: list[Variant] = field(default_factory=list)
    category: Category | None = None
    correlation_id: str | None = None
    duplicate_of: ImageId | None = None


CONTRACTS: dict[str, type[Struct]] = {
    "image_submitted": ImageSubmitted,
    "envelope": Envelope,
    "image_record": ImageRecord,
    "dead_letter": DeadLetter,
    "image_processed": ImageProcessed,
}

_encoder = msgspec.json.Encoder()


def encode(event: Struct) -> bytes:
    return _encoder.encode(event)


def decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    return msgspec.json.Decoder(kind)
