"""Trivial stage functions for the runner's tests, importable by worker subprocesses.

The image id says how a test input behaves: `poison-*` is refused for good, `crash-*`
kills its process, `slow-*` sleeps, `pace-*` takes 20 ms, `bloat-*` makes a record over
the broker's message limit. Every stage writes one object
whose key and content derive from the image, so exactly-once is checkable in MinIO.
"""

from __future__ import annotations

import os
import sys
import time

from schemas.events import Envelope, ObjectRef
from streams.runner.stage import BlobWrite, PermanentError, StageContext, StageResult, StageSpec

ROUTE = ["validate", "categorize"]
SLOW_S = float(os.environ.get("PIXELFLEET_TEST_SLOW_S", "0.4"))


def _behave(image_id: str) -> None:
    if image_id.startswith("poison"):
        raise PermanentError("poisoned", f"{image_id} is refused by the test stage")
    if image_id.startswith("crash"):
        os._exit(13)  # what a segfaulting codec looks like from outside
    if image_id.startswith("slow"):
        time.sleep(SLOW_S)
    if image_id.startswith("pace"):
        time.sleep(0.02)  # a steady stream that lasts long enough to rebalance under


def _bloat(envelope: Envelope) -> None:
    if envelope.record.image_id.startswith("bloat"):
        # A record no broker takes: more than the 1 MB message limit.
        envelope.record.enhancement = {"pad": "x" * 1_100_000}


def first(envelope: Envelope, _blob: bytes | None, ctx: StageContext) -> StageResult:
    image_id = envelope.record.image_id
    _behave(image_id)
    _bloat(envelope)
    envelope.route = list(ROUTE)
    key = f"validate/{image_id}.txt"
    envelope.record.current = ObjectRef(bucket=ctx.buckets.work, key=key)
    data = f"validated {image_id}".encode()
    return StageResult(envelope, [BlobWrite(ctx.buckets.work, key, data, "text/plain")])


def second(envelope: Envelope, blob: bytes | None, ctx: StageContext) -> StageResult:
    image_id = envelope.record.image_id
    if blob != f"validated {image_id}".encode():
        raise PermanentError("bad_input_blob", f"expected the first stage's blob, got {blob!r}")
    key = f"categorize/{image_id}.txt"
    envelope.record.current = ObjectRef(bucket=ctx.buckets.images, key=key)
    data = f"categorized {image_id}".encode()
    return StageResult(envelope, [BlobWrite(ctx.buckets.images, key, data, "text/plain")])


def passthrough(envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
    return StageResult(envelope)


FIRST = StageSpec("validate", first, reads_blob=False)
FIRST_IN_POOL = StageSpec("validate", first, reads_blob=False, cpu_bound=True)
SECOND = StageSpec("categorize", second, reads_blob=True)
PASSTHROUGH = StageSpec("validate", passthrough, reads_blob=False)


def modules_loaded(envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
    """Passes the image on and records which image libraries this worker process loaded."""
    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(IMAGE_LIBRARIES))
    return StageResult(envelope, detail=f"image libraries: {','.join(loaded) or 'none'}")


IMAGE_LIBRARIES = ("PIL", "numpy", "imagehash", "torch", "processors", "cv2", "skimage")
LIGHT = StageSpec("validate", modules_loaded, reads_blob=False)
# A second stage name, so two light workers join different groups, as two real stages do.
LIGHT_COMPRESS = StageSpec("compress", modules_loaded, reads_blob=False)
