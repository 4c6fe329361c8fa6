"""The executor on its own: outcomes in order, errors as data, crashes and hogs isolated."""

from __future__ import annotations

import os
import time

import pytest

from schemas.events import Envelope, ImageRecord, ImageSubmitted, ObjectRef, Source
from streams.config.settings import BucketSettings
from streams.runner.executor import Executor, Failure, WorkItem
from streams.runner.stage import PermanentError, StageContext, StageResult, TransientError

CTX = StageContext(stage="t", buckets=BucketSettings())


def behave(envelope: Envelope, _blob: bytes | None, _ctx: StageContext) -> StageResult:
    kind = envelope.record.image_id.split("-")[0]
    if kind == "bad":
        raise PermanentError("bad", "refused")
    if kind == "bug":
        raise KeyError("missing")
    if kind == "later":
        raise TransientError("s3 down")
    if kind == "die":
        os._exit(9)
    if kind == "hang":
        time.sleep(60)
    if kind == "hog":
        bytearray(3 * 1024**3)  # 3 GiB
    if kind == "slow":
        time.sleep(0.3)
    if kind == "unsendable":
        # A result its process cannot pickle back (a MemoryError would do the same).
        return StageResult(envelope, blobs=[lambda: None])  # type: ignore[list-item]
    return StageResult(envelope, detail=envelope.record.image_id)


def _item(image_id: str, offset: int) -> WorkItem:
    ref = ObjectRef(bucket="abc", key="k")
    submitted = ImageSubmitted(image_id=image_id, source=Source(object=ref), submitted_at="t")
    record = ImageRecord(image_id=image_id, status="processing", updated_at="t")
    return WorkItem(("t", 0, offset), Envelope(submitted=submitted, route=[], record=record), None)


def _items(*ids: str) -> list[WorkItem]:
    return [_item(image_id, i) for i, image_id in enumerate(ids)]


def _run(executor: Executor, items: list[WorkItem], deadline_s: float = 60) -> list[object]:
    try:
        return [t.outcome for t in executor.run(items, time.monotonic() + deadline_s, lambda: None)]
    finally:
        executor.close()


def _summary(outcomes: list[object]) -> list[str]:
    return [
        o.detail if isinstance(o, StageResult) else f"{o.kind}:{o.reason_class}" for o in outcomes
    ]  # type: ignore[union-attr]


def test_inline_outcomes_are_in_order_and_errors_are_data() -> None:
    executor = Executor(behave, CTX, processes=0, crash_attempts=2, message_timeout_s=5)
    outcomes = _run(executor, _items("ok-1", "bad-1", "bug-1", "ok-2"))
    assert _summary(outcomes) == ["ok-1", "permanent:bad", "error:KeyError", "ok-2"]


def test_a_transient_error_fails_the_whole_batch() -> None:
    executor = Executor(behave, CTX, processes=0, crash_attempts=2, message_timeout_s=5)
    with pytest.raises(TransientError, match="s3 down"):
        _run(executor, _items("ok-1", "later-1"))


def test_the_deadline_cuts_the_batch_after_at_least_one_item() -> None:
    executor = Executor(behave, CTX, processes=0, crash_attempts=2, message_timeout_s=5)
    outcomes = _run(executor, _items("slow-1", "slow-2", "slow-3", "slow-4"), deadline_s=0.5)
    assert 1 <= len(outcomes) < 4
    assert _summary(outcomes) == [f"slow-{i + 1}" for i in range(len(outcomes))]


def test_a_process_killing_input_is_isolated_in_the_pool() -> None:
    executor = Executor(behave, CTX, processes=2, crash_attempts=2, message_timeout_s=30)
    ids = [f"ok-{i}" for i in range(10)]
    outcomes = _run(executor, _items(*ids[:5], "die-1", *ids[5:]))
    assert _summary(outcomes) == [*ids[:5], "crash:worker_crashed", *ids[5:]]


def test_a_hanging_input_is_killed_after_the_message_timeout() -> None:
    executor = Executor(behave, CTX, processes=2, crash_attempts=1, message_timeout_s=2)
    started = time.monotonic()
    outcomes = _run(executor, _items("ok-1", "hang-1", "ok-2"))
    assert _summary(outcomes) == ["ok-1", "crash:worker_crashed", "ok-2"]
    assert time.monotonic() - started < 30


def test_an_input_that_exhausts_memory_is_stopped_by_the_limit() -> None:
    executor = Executor(
        behave, CTX, processes=1, crash_attempts=2, message_timeout_s=30, memory_limit_mb=1024
    )
    outcomes = _run(executor, _items("ok-1", "hog-1", "ok-2"))
    assert _summary(outcomes) == ["ok-1", "permanent:out_of_memory", "ok-2"]
    assert isinstance(outcomes[1], Failure)


def test_a_result_that_cannot_be_sent_back_fails_its_input_alone() -> None:
    executor = Executor(behave, CTX, processes=2, crash_attempts=2, message_timeout_s=30)
    ids = [f"ok-{i}" for i in range(6)]
    outcomes = _run(executor, _items(*ids[:3], "unsendable-1", *ids[3:]))
    summary = _summary(outcomes)
    assert summary[:3] == ids[:3] and summary[4:] == ids[3:]
    assert summary[3].startswith("error:")  # a bug of ours, said; not a dead worker


def test_a_hang_inside_a_long_chunk_is_found_in_one_message_timeout() -> None:
    # One process, so the 30 items go in chunks of seven or so: the parent's own watch
    # would allow a chunk seven timeouts; each item's alarm ends it after one.
    executor = Executor(behave, CTX, processes=1, crash_attempts=1, message_timeout_s=2)
    ids = [f"ok-{i}" for i in range(30)]
    started = time.monotonic()
    outcomes = _run(executor, _items(*ids[:3], "hang-1", *ids[3:]))
    assert _summary(outcomes) == [*ids[:3], "crash:worker_crashed", *ids[3:]]
    assert time.monotonic() - started < 12  # one timeout to find it, one to isolate it
