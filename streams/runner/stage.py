"""What a stage is, to the runner: a function from an envelope (and its blob) to a result.

A stage function is pure: it neither reads nor writes Kafka or S3. The runner fetches the
blob the envelope points at, calls the function (in a process pool when it is CPU-bound),
uploads the blobs it returns, and produces the envelope it returns, all in one transaction.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.events import Envelope
from streams.config.settings import BucketSettings


class PermanentError(Exception):
    """This input can never succeed: it is dead-lettered and the image is rejected."""

    def __init__(self, reason_class: str, reason: str) -> None:
        super().__init__(f"{reason_class}: {reason}")
        self.reason_class = reason_class
        self.reason = reason


class StageSetupError(Exception):
    """The stage cannot start as configured (a missing model, a bad device): the worker exits."""


class TransientError(Exception):
    """Something outside the input failed (S3, the broker): the batch is retried later."""


@dataclass(frozen=True)
class BlobWrite:
    """An object the runner must upload before the event that references it is produced."""

    bucket: str
    key: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class StageContext:
    """What a stage function may know besides its input: names and parameters, never clients."""

    stage: str
    buckets: BucketSettings
    params: Any = None


@dataclass
class StageResult:
    envelope: Envelope
    blobs: list[BlobWrite] = field(default_factory=list)
    outcome: Literal["ok", "skipped"] = "ok"  # recorded in the image's per-stage state
    detail: str | None = None


StageFn = Callable[[Envelope, bytes | None, StageContext], StageResult]


@dataclass(frozen=True)
class StageSpec:
    """A stage as the runner runs it. `name` is its stable id: topic, group and metric label."""

    name: str
    fn: StageFn
    # Whether the runner fetches `record.current` (or the submitted object) before the call.
    reads_blob: bool = True
    # CPU-bound functions run in the process pool, where a crash is isolated.
    cpu_bound: bool = False
    params: Any = None
    # Messages run at once on threads of the worker process, for stages that batch work
    # across messages themselves (restore's model calls); 0 runs them one after another.
    threads: int = 0
    # Called once with `params` before the worker joins its group: load models, warm up.
    prepare: Callable[[Any], None] | None = None


def load_spec(reference: str) -> StageSpec:
    """A StageSpec from `package.module:attribute`, for custom and test stages."""
    module_name, _, attribute = reference.partition(":")
    if not attribute:
        raise LookupError(f"--spec wants module:attribute, got {reference!r}")
    spec = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(spec, StageSpec):
        raise LookupError(f"{reference} is a {type(spec).__name__}, not a StageSpec")
    return spec
