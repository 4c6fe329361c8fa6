"""A worker's bookkeeping: the failure streak that halts a stage, metrics, dead-letter logs."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import get_args

from schemas.events import StageOutcome
from streams.observe.metrics import DEAD_LETTERS, MESSAGES, PROCESSING_SECONDS
from streams.runner.batch import Slot
from streams.runner.stage import StageResult

log = logging.getLogger("pixelfleet.runner")


class StageHaltedError(RuntimeError):
    """Too many permanent failures in a row: stop instead of draining the inbox into the DLQ."""


@dataclass
class WorkerStats:
    """What tests and the bench read back; the same figures go to Prometheus."""

    batches: int = 0
    committed: int = 0
    dead_lettered: int = 0
    retries: int = 0
    assigned: int = 0
    revoked: int = 0
    lost: int = 0
    batch_sizes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class HaltPolicy:
    """When a stage stops instead of dead-lettering on: after `failures_in_a_row` messages
    in a row failed for good. A long run of failures is rarely the inputs' fault (a bad
    deploy, a missing dependency), and draining the inbox into the DLQ would hide it."""

    failures_in_a_row: int

    def breached(self, streak: int) -> bool:
        return streak >= self.failures_in_a_row


class Ledger:
    def __init__(self, stage: str, policy: HaltPolicy) -> None:
        self.stage = stage
        self.policy = policy
        self.stats = WorkerStats()
        self._streak = 0  # as of the last committed batch
        self._pending = 0  # as of the batch in hand; kept only when it commits
        # Every outcome's series exists from the start, at 0: a stage that never commits
        # (wedged, or retrying one batch for ever) has a rate of 0 to alert on, not no
        # series at all, which an alert's `rate(...) == 0` never matches.
        for outcome in get_args(StageOutcome):
            MESSAGES.labels(stage, outcome)

    def check_streak(self, done: list[Slot]) -> None:
        """Raise before commit when the batch completes a run of permanent failures.

        Counts from the last committed batch, so a batch that aborts and is retried is not
        counted twice.
        """
        streak = self._streak
        for slot in done:
            failure = slot.failure
            streak = streak + 1 if failure else 0
            if failure and self.policy.breached(streak):
                raise StageHaltedError(
                    f"stage {self.stage} halted: {streak} messages in a row failed for good "
                    f"(last: {failure.reason_class}: {failure.reason}). Nothing of this batch was "
                    "committed. Fix the cause (a bad deploy, a broken dependency, a poisoned "
                    "upstream) and restart the worker; raise PIXELFLEET_RUNNER_HALT_AFTER_FAILURES "
                    "if such runs are expected."
                )
        self._pending = streak

    def account(self, done: list[Slot]) -> None:
        """Metrics and logs of a committed batch."""
        self._streak = self._pending
        self.stats.committed += len(done)
        # Label lookups once per batch and counters bumped by totals: this runs per message.
        seconds = PROCESSING_SECONDS.labels(self.stage)
        outcomes: Counter[str] = Counter()
        for slot in done:
            seconds.observe(slot.seconds)
            failure = slot.failure
            if failure is None:
                result = slot.outcome
                outcomes[result.outcome if isinstance(result, StageResult) else "ok"] += 1
                continue
            outcomes["rejected" if failure.kind == "permanent" else "failed"] += 1
            DEAD_LETTERS.labels(self.stage, failure.reason_class).inc()
            self.stats.dead_lettered += 1
            log.warning(
                "dead-lettered",
                extra={
                    "stage": self.stage,
                    "image_id": slot.envelope.record.image_id if slot.envelope else None,
                    "partition": slot.origin.partition,
                    "offset": slot.origin.offset,
                    "reason_class": failure.reason_class,
                    "reason": failure.reason,
                },
            )
        for outcome, count in outcomes.items():
            MESSAGES.labels(self.stage, outcome).inc(count)
