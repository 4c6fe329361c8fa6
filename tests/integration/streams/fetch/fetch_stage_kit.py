"""Helpers of the fetch stage's own tests: envelopes of URL submissions, an S3 stand-in that
reads each body to its end, the stage called as the runner calls it, and a slow body."""

from __future__ import annotations

import time
from typing import Any, Protocol, cast

from minio import Minio

from schemas.events import Envelope, ImageSubmitted, Source
from schemas.events import encode as encode_event
from streams.config.settings import BucketSettings
from streams.config.topics import Topics
from streams.runner.records import decode_input, now_iso
from streams.runner.stage import StageContext, StageResult, deadline_of_call
from streams.stages.fetch.settings import FetchSettings
from streams.stages.fetch.stage import FetchRuntime, fetch, runtime_for
from tests.support.http_servers import LoopbackServer

BUCKET = "incoming"


class Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class Sink:
    """Stores what put_object is given, read in parts as minio reads it; a body the stage
    cuts raises out of the read, as it would out of minio's."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def put_object(
        self, bucket: str, key: str, data: Readable, length: int, part_size: int, **_: object
    ) -> None:
        parts: list[bytes] = []
        for _part in range(100_000):  # bounded: a test body is far smaller
            piece = data.read(part_size)
            if not piece:
                break
            parts.append(piece)
        self.stored[key] = b"".join(parts)


def envelope(url: str, n: int = 0) -> Envelope:
    submitted = ImageSubmitted(image_id=f"url-{n}", source=Source(url=url), submitted_at=now_iso())
    topics = Topics("px")
    return decode_input(topics.ingest, topics, encode_event(submitted), now_iso())


def stage_context(settings: FetchSettings, sink: Sink | None = None) -> StageContext:
    runtime = runtime_for(settings, cast(Minio, sink or Sink()))
    return StageContext("fetch", BucketSettings(incoming=BUCKET), runtime)


def call(ctx: StageContext, env: Envelope, deadline: float) -> StageResult:
    """One call of the stage as the executor makes it: under its batch's deadline."""
    with deadline_of_call(deadline):
        return fetch(env, None, ctx)


def runtime_of(ctx: StageContext) -> FetchRuntime:
    runtime: FetchRuntime = ctx.params
    return runtime


def in_a_batch(seconds: float) -> float:
    return time.monotonic() + seconds


def trickle(
    server: LoopbackServer, path: str, body: bytes, *, chunk: int = 1024, interval_s: float = 0.1
) -> None:
    """Like LoopbackServer.slow, but saying Connection: close: the server hangs up after
    the body, and a client that knew nothing of it could pick the dead connection for its
    next request (a reset that has nothing to do with what a test looks at)."""

    def answer(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.flush()
        for start in range(0, len(body), chunk):
            if server.stopping.wait(interval_s):
                break
            h.wfile.write(body[start : start + chunk])
            h.wfile.flush()
        h.close_connection = True

    server.route(path, answer)
