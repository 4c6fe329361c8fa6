"""The producer API for upstream services, and what `pixelfleet submit` is built on."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import msgspec
from confluent_kafka import KafkaError, Message, Producer
from minio import Minio

from processors.sniff import media_type
from schemas.events import (
    CORRELATION_ID_MAX,
    Hints,
    ImageId,
    ImageSubmitted,
    ObjectRef,
    Profile,
    Request,
    Source,
    decoder,
    encode,
)
from streams.app.url_list import url_image_id
from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.io.failures import OperationError
from streams.runner.records import CORRELATION_HEADER, SCHEMA_HEADER, now_iso

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# An upstream event's hints and request ride along in every envelope of the image, which
# the stages grow toward the 1,000,000-byte message limit (streams.runner.oversize); an
# event of this size leaves them ample room.
SUBMISSION_MAX_BYTES = 64 * 1024
_submitted = decoder(ImageSubmitted)
# The schema's own ImageId pattern: checked first, to say it in words where the schema's
# refusal would quote the regex.
_IMAGE_ID = re.compile(get_args(ImageId)[1].pattern)
PROFILES: tuple[str, ...] = get_args(Profile)
IMAGE_ID_MAX = 128  # the pattern's bound
# Hex digits of a key's sha256 in an object's id when the key itself cannot be the id:
# 64 bits, so two keys of one bucket share an id only by a deliberate collision.
OBJECT_ID_DIGITS = 16


class EventTooLargeError(ValueError):
    """The event would be over SUBMISSION_MAX_BYTES (its other ValueErrors: unreadable)."""


def content_image_id(data: bytes) -> str:
    """The default id of an uploaded file: its content hash, so a re-upload is the same image."""
    return "sha256-" + hashlib.sha256(data).hexdigest()[:40]


def object_image_id(key: str) -> str:
    """The id of an object referenced where it is: the key itself when cleaning leaves it
    as it is (at most 128 characters, no character an id cannot hold, none of '-' and '.'
    at either end), else the key made safe, cut, then `-` and 16 hex digits of the key's
    sha256.

    Two keys must stay two images: cleaning alone maps `a b`, `a-b` and `a/b` to one id,
    and cutting at 128 characters merges keys that differ only at their end, so their
    results would overwrite each other. A key that was already clean keeps its old id.
    (An id of that form could also be a clean key of its own; only a key chosen to match
    another key's digits would collide.)"""
    cleaned = _UNSAFE.sub("-", key).strip("-.")
    if cleaned == key and len(key) <= IMAGE_ID_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:OBJECT_ID_DIGITS]
    # Room for "-" and the digits inside the 128 characters an id may hold.
    # A key of nothing but punctuation ("..", "///") still names an object, so it still
    # gets an id, the digits under a fixed word.
    prefix = cleaned[: IMAGE_ID_MAX - OBJECT_ID_DIGITS - 1].rstrip("-.") or "object"
    return f"{prefix}-{digest}"


def _clean(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.")[:IMAGE_ID_MAX]


def object_file_name(name: str) -> str:
    """The file-name part of an upload's object key: the name made safe, or "upload" when
    nothing of it is left (".." or "---" name no file, but the bytes are still an image)."""
    return _clean(name) or "upload"


def file_image_id(path: Path) -> str:
    """content_image_id of a file, hashed as it is read."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return "sha256-" + digest[:40]


def distinct_files(paths: list[Path]) -> tuple[dict[str, Path], dict[Path, str]]:
    """The first file of each distinct content by image id, and every later copy with the
    image id it repeats: the same bytes under two names are one image."""
    first: dict[str, Path] = {}
    copies: dict[Path, str] = {}
    for path in paths:
        image_id = file_image_id(path)
        if image_id in first:
            copies[path] = image_id
        else:
            first[image_id] = path
    return first, copies


class Submitter:
    """Publishes ImageSubmitted events; uploads local files to the incoming bucket first."""

    def __init__(
        self, settings: FleetSettings, producer: Producer | None = None, s3: Minio | None = None
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.producer = producer or clients.producer(settings.kafka, **{"linger.ms": 5})
        self.s3 = s3 or clients.s3(settings.s3)
        self.errors: list[str] = []

    @staticmethod
    def check(event: ImageSubmitted) -> bytes:
        """The event's bytes; ValueError for one the fleet would refuse: a correlation id
        validate cannot decode, or hints and a request that leave no room in the message
        limit for what the stages add to the image's envelope."""
        if event.correlation_id and len(event.correlation_id) > CORRELATION_ID_MAX:
            raise ValueError(
                f"{event.image_id}: a correlation id may hold {CORRELATION_ID_MAX} characters, "
                f"not {len(event.correlation_id)}"
            )
        if not _IMAGE_ID.fullmatch(event.image_id):
            raise ValueError(
                f"image id {event.image_id!r} may hold only letters, digits, '.', '_' and '-', "
                "1 to 128 of them"
            )
        value = encode(event)
        try:
            _submitted.decode(value)  # what validate will do with it
        except msgspec.ValidationError as exc:
            raise ValueError(
                f"{event.image_id!r}: the fleet could not read this event: {exc}"
            ) from None
        profile = event.request.profile
        if profile is not None and profile not in PROFILES:
            raise ValueError(
                f"{event.image_id!r}: no enhancement profile {profile!r} "
                f"(one of {', '.join(PROFILES)})"
            )
        if len(value) > SUBMISSION_MAX_BYTES:
            raise EventTooLargeError(
                f"{event.image_id}: the submission would be {len(value):,} bytes; hints and "
                f"request may take {SUBMISSION_MAX_BYTES:,} bytes in all"
            )
        return value

    def submit(self, event: ImageSubmitted) -> None:
        """Queues the event; raises ValueError for one the fleet would refuse (`check`)."""
        value = self.check(event)
        headers = [(SCHEMA_HEADER, b"image_submitted/1")]
        if event.correlation_id:
            headers.append((CORRELATION_HEADER, event.correlation_id.encode()))
        while True:
            try:
                self.producer.produce(
                    self.topics.ingest,
                    key=event.image_id.encode(),
                    value=value,
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.key()!r}: {err}")

    def upload_and_submit(
        self,
        path: Path,
        *,
        image_id: str | None = None,
        hints: Hints | None = None,
        request: Request | None = None,
        correlation_id: str | None = None,
    ) -> ImageSubmitted:
        return self.upload_bytes_and_submit(
            path.read_bytes(),
            path.name,
            image_id=image_id,
            hints=hints or Hints(file_name=path.name),
            request=request,
            correlation_id=correlation_id,
        )

    def upload_bytes_and_submit(
        self,
        data: bytes,
        name: str,
        *,
        image_id: str | None = None,
        hints: Hints | None = None,
        request: Request | None = None,
        correlation_id: str | None = None,
        content_type: str | None = None,
    ) -> ImageSubmitted:
        """Stores the bytes in the incoming bucket under the image's id, then publishes; an
        event the fleet would refuse raises ValueError before anything is stored."""
        image_id = image_id or content_image_id(data)
        key = f"{image_id}/{object_file_name(name)}"
        bucket = self.settings.buckets.incoming
        sha = hashlib.sha256(data).hexdigest()
        event = ImageSubmitted(
            image_id=image_id,
            source=Source(object=ObjectRef(bucket=bucket, key=key, size=len(data), sha256=sha)),
            submitted_at=now_iso(),
            hints=hints or Hints(file_name=name),
            request=request or Request(),
            correlation_id=correlation_id,
        )
        self.check(event)
        # What the bytes are, not what their name says: a presigned link to the original
        # must not serve "<script>" inside a GIF as text/html from the S3 origin.
        content_type = content_type or media_type(data)
        self.s3.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        self.submit(event)
        return event

    def submit_object(
        self,
        bucket: str,
        key: str,
        *,
        hints: Hints | None = None,
        request: Request | None = None,
        correlation_id: str | None = None,
    ) -> ImageSubmitted:
        """An object referenced where it is (nothing is copied), its id from its key
        (object_image_id); the hints' file name, when they have none, is the key's last
        part, which categorize reads as it reads an upload's name."""
        given = hints or Hints()
        if given.file_name is None:
            given = msgspec.structs.replace(given, file_name=key.rsplit("/", 1)[-1])
        event = ImageSubmitted(
            image_id=object_image_id(key),
            source=Source(object=ObjectRef(bucket=bucket, key=key)),
            submitted_at=now_iso(),
            hints=given,
            request=request or Request(),
            correlation_id=correlation_id,
        )
        self.submit(event)
        return event

    def submit_url(
        self,
        url: str,
        *,
        hints: Hints | None = None,
        request: Request | None = None,
        correlation_id: str | None = None,
    ) -> ImageSubmitted:
        """An image by URL: the fetch stage downloads it (the same URL is the same image)."""
        event = ImageSubmitted(
            image_id=url_image_id(url),
            source=Source(url=url),
            submitted_at=now_iso(),
            hints=hints or Hints(),
            request=request or Request(),
            correlation_id=correlation_id,
        )
        self.submit(event)
        return event

    def objects(self, bucket: str, prefix: str) -> Iterator[str]:
        for obj in self.s3.list_objects(bucket, prefix=prefix, recursive=True):
            if obj.object_name and not obj.is_dir:
                yield obj.object_name

    def flush(self, timeout_s: float = 60) -> None:
        left = self.producer.flush(timeout_s)
        if left:
            raise OperationError(
                f"{left} events were not acknowledged by Kafka in {timeout_s:.0f} s"
            )
        # Reported once, then forgotten: a long-lived submitter (the catalog's) must not
        # fail every later flush for one delivery that failed before.
        failed, self.errors = self.errors, []
        if failed:
            raise OperationError(f"{len(failed)} events failed: {failed[:3]}")
