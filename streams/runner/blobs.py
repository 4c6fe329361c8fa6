"""S3 work of a stage: fetch the input blobs, upload outputs, copy rejected originals aside.

Every call is concurrent over a small thread pool. S3 being down, slow or erroring is
transient (the batch is retried); a missing input object is permanent for that image.
Errors are caught as MinioException, not only S3Error: an answer that is not S3's XML (an
HTML 429 or 403 from a proxy in front of it) is an InvalidResponseError, and escaping the
batch it would stop the worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import posixpath
from collections.abc import Callable, Sequence
from typing import TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error

from schemas.events import Envelope, ObjectRef
from streams.config.settings import BucketSettings
from streams.io.clients import read_object
from streams.observe.metrics import BYTES
from streams.runner.stage import BlobWrite, PermanentError, TransientError

T = TypeVar("T")
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


def input_ref(envelope: Envelope) -> ObjectRef | None:
    """The blob a stage reads: what the previous stage left, else the submitted original."""
    return envelope.record.current or envelope.submitted.source.object


def _transient(what: str, exc: Exception) -> TransientError:
    return TransientError(f"S3 {what} failed: {type(exc).__name__}: {exc}")


class BlobStore:
    def __init__(self, client: Minio, buckets: BucketSettings, stage: str, threads: int) -> None:
        self.client = client
        self.buckets = buckets
        self.stage = stage
        self._pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"s3-{stage}")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _all(self, fn: Callable[[T], object], things: Sequence[T]) -> list[object]:
        return list(self._pool.map(fn, things))

    # -- reads ---------------------------------------------------------------

    def fetch_many(self, envelopes: Sequence[Envelope]) -> dict[int, bytes | PermanentError]:
        """Blob bytes by id(envelope), or the permanent reason it cannot be had."""
        results = self._all(self._fetch, envelopes)
        return {id(env): res for env, res in zip(envelopes, results, strict=True)}  # type: ignore[misc]

    def _fetch(self, envelope: Envelope) -> bytes | PermanentError:
        ref = input_ref(envelope)
        if ref is None:
            # validate sends URL sources to fetch before reading; only a custom stage that
            # reads the original of a URL source without a fetch stage gets here.
            return PermanentError(
                "url_not_fetched",
                "a URL source reached a stage before the fetch stage downloaded it",
            )
        try:
            data = read_object(self.client, ref.bucket, ref.key)
        except S3Error as exc:
            if exc.code in _MISSING:
                return PermanentError("source_missing", f"s3://{ref.bucket}/{ref.key}: {exc.code}")
            raise _transient("get", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transient("get", exc) from exc
        BYTES.labels(self.stage, "in").inc(len(data))
        return data

    # -- writes --------------------------------------------------------------

    def upload(self, blobs: Sequence[BlobWrite]) -> None:
        self._all(self._put, blobs)

    def _put(self, blob: BlobWrite) -> None:
        try:
            self.client.put_object(
                blob.bucket,
                blob.key,
                io.BytesIO(blob.data),
                len(blob.data),
                content_type=blob.content_type,
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transient(f"put s3://{blob.bucket}/{blob.key}", exc) from exc
        BYTES.labels(self.stage, "out").inc(len(blob.data))

    def quarantine_many(self, envelopes: Sequence[Envelope]) -> list[ObjectRef | None]:
        """Copy each rejected original into the quarantine bucket (server side)."""
        return self._all(self._quarantine, envelopes)  # type: ignore[return-value]

    def _quarantine(self, envelope: Envelope) -> ObjectRef | None:
        fetched = envelope.record.fetch.object if envelope.record.fetch else None
        source = envelope.submitted.source.object or fetched
        if source is None:
            return None
        name = posixpath.basename(source.key) or "original"
        target = ObjectRef(
            bucket=self.buckets.quarantine, key=f"{self.stage}/{envelope.record.image_id}/{name}"
        )
        try:
            self.client.copy_object(
                target.bucket, target.key, CopySource(source.bucket, source.key)
            )
        except S3Error as exc:
            if exc.code in _MISSING and exc.bucket_name != self.buckets.quarantine:
                return None  # nothing to keep: the original itself is gone
            raise _transient(f"copy to s3://{target.bucket}/{target.key}", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transient("copy", exc) from exc
        return target
