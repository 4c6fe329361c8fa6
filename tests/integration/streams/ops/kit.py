"""What the operations tests share: a one-stage fleet whose refusals a test switches on and
off, running a command as an operator would, and reading objects and topics back."""

from __future__ import annotations

import hashlib
from collections import Counter

import click
from click.testing import CliRunner, Result
from minio import Minio

from schemas.events import Category, Envelope, ObjectRef, Variant
from streams.app.settings import Settings
from streams.io import clients
from streams.runner.stage import BlobWrite, PermanentError, StageContext, StageResult, StageSpec
from tests.integration.streams.runner.fleet import read_topic, settings_env

# Image ids the stage refuses while they are in this set: the "cause" an operator fixes.
REFUSED: set[str] = set()


def checked(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    """validate for the tests: refuses REFUSED ids, else writes one image object and ends
    the route (the image is done)."""
    image_id = envelope.record.image_id
    if image_id in REFUSED:
        raise PermanentError("refused", f"{image_id} is refused until the test fixes it")
    envelope.route = ["validate"]
    key = f"tests/checked/{image_id}.txt"
    data = b"checked " + (blob or b"")
    return StageResult(envelope, [BlobWrite(ctx.buckets.images, key, data, "text/plain")])


CHECKED = StageSpec("validate", checked, reads_blob=True)


def invoke(settings: Settings, command: click.Command, *args: str) -> Result:
    """Runs a command with exactly these settings in its environment."""
    result = CliRunner().invoke(command, list(args), env=settings_env(settings))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def keys(s3: Minio, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))


def counts(settings: Settings, topic: str) -> Counter[str]:
    return Counter(r.key for r in read_topic(settings, topic))


def s3_of(settings: Settings) -> Minio:
    return clients.s3(settings.s3)


# The "compress settings" of the replay tests: the format the variants are written in.
FORMAT = {"ext": "webp"}


def prepare(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    """validate for the replay tests: an intermediate in the work bucket under a key made
    from the input, as the real stages make theirs; then on to compress."""
    record = envelope.record
    source = envelope.record.current or envelope.submitted.source.object
    digest = hashlib.sha256(f"{source}|validate".encode()).hexdigest()[:16]
    key = f"validate/{record.image_id}/{digest}"
    data = blob or b""
    envelope.route = ["validate", "compress"]
    record.category = Category(name="rings", score=1.0)
    record.current = ObjectRef(bucket=ctx.buckets.work, key=key, size=len(data))
    return StageResult(envelope, [BlobWrite(ctx.buckets.work, key, data)])


def finish(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    """compress for the replay tests: one variant in today's FORMAT; the record lists it."""
    record = envelope.record
    ext = FORMAT["ext"]
    key = f"rings/web/{record.image_id}.{ext}"
    data = (blob or b"") + ext.encode()
    obj = ObjectRef(bucket=ctx.buckets.images, key=key, size=len(data))
    record.variants = [
        Variant(variant="web", format=ext, width=1, height=1, bytes=len(data), object=obj)
    ]
    record.current = None
    return StageResult(envelope, [BlobWrite(ctx.buckets.images, key, data)])


PREPARE = StageSpec("validate", prepare, reads_blob=True)
FINISH = StageSpec("compress", finish, reads_blob=True)
