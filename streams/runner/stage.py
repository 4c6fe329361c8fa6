"""What a stage is, to the runner: a function from an envelope (and its blob) to a result.

A stage function is pure: it neither reads nor writes Kafka or S3. The runner fetches the
blob the envelope points at, calls the function (in a process pool when it is CPU-bound),
uploads the blobs it returns, and produces the envelope it returns, all in one transaction.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    # Recorded in the image's per-stage state. deferred: the stage sends the image to
    # itself again, to try later (with `forward_to` set to its own name).
    outcome: Literal["ok", "skipped", "deferred"] = "ok"
    detail: str | None = None
    # Send the image to this stage's inbox instead of the next stage of its route.
    forward_to: str | None = None


StageFn = Callable[[Envelope, bytes | None, StageContext], StageResult]
# Before its input is fetched, a stage may send an image elsewhere: the name of the stage
# to send it to, or None to run it here. validate sends URL sources to fetch this way.
Admit = Callable[[Envelope], str | None]

# The time (time.monotonic) by which the call in progress should return, set by the
# executor. Stages that wait on the outside world (fetch) cut their waits at it, so a slow
# host never holds a batch past its budget; others may ignore it.
_DEADLINE: ContextVar[float | None] = ContextVar("pixelfleet_batch_deadline", default=None)


def batch_deadline() -> float | None:
    return _DEADLINE.get()


@contextmanager
def deadline_of_call(deadline: float | None) -> Iterator[None]:
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


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
    admit: Admit | None = None
    # The stage's own time budget per batch, when shorter than the runner's: a stage that
    # waits on other hosts keeps its batches short so one slow host delays little.
    batch_budget_s: float | None = None
    # The bytes an input takes while the stage works on it, when the stage knows better
    # than the size of its blob (decoded pixels); None for an input it cannot tell. The
    # runner's batch_max_bytes counts these, so a few huge images go one batch at a time.
    working_bytes: Callable[[Envelope], int | None] | None = None


def load_spec(reference: str) -> StageSpec:
    """A StageSpec from `package.module:attribute`, for custom and test stages."""
    module_name, _, attribute = reference.partition(":")
    if not attribute:
        raise LookupError(f"--spec wants module:attribute, got {reference!r}")
    spec = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(spec, StageSpec):
        raise LookupError(f"{reference} is a {type(spec).__name__}, not a StageSpec")
    return spec
