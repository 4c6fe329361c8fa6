"""S3 trouble of every kind is transient for the batch: retried, never a dead worker."""

from __future__ import annotations

from typing import Any, cast

import pytest
from minio import Minio
from minio.error import InvalidResponseError

from streams.config.settings import BucketSettings
from streams.runner.blobs import BlobStore
from streams.runner.stage import BlobWrite, TransientError
from tests.unit.streams.runner.fakes import envelope


class ProxyInFront:
    """An S3 endpoint behind a proxy that answers HTML: minio raises InvalidResponseError."""

    def _refuse(self, *_args: Any, **_kwargs: Any) -> None:
        raise InvalidResponseError(429, "text/html", "<html>Too Many Requests</html>")

    get_object = put_object = copy_object = _refuse


def test_an_answer_that_is_not_s3s_is_transient_for_reads_writes_and_copies() -> None:
    store = BlobStore(cast(Minio, ProxyInFront()), BucketSettings(), "enhance", threads=2)
    try:
        with pytest.raises(TransientError):
            store.fetch_many([envelope("img-1")])
        with pytest.raises(TransientError):
            store.upload([BlobWrite("work", "k", b"x", "image/png")])
        with pytest.raises(TransientError):
            store.quarantine_many([envelope("img-1")])
    finally:
        store.close()
