"""How many messages the next batch takes: sized so that a batch fits its time budget.

A batch is one transaction, and a commit costs tens of milliseconds, so fast stages want
thousands of messages a batch; a slow stage (seconds a message) must stay well inside the
consumer's poll interval. The rate is measured, smoothed, and the next batch is sized to
take a share of the budget at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The first batch, before any rate is known: small enough for the slowest stage.
FIRST_BATCH = 50
# A batch is sized to fill this share of the budget, leaving room for a slower message.
BUDGET_SHARE = 0.5
# Weight of the newest measurement in the smoothed seconds per message.
NEWEST_WEIGHT = 0.3
# No stage is faster than this per message; keeps an empty measurement from dividing by 0.
MIN_SECONDS_PER_MESSAGE = 1e-6


@dataclass
class BatchSizer:
    """The adaptive batch size of one worker, between `minimum` and `batch_max`."""

    budget_s: float
    batch_max: int
    # The smallest batch: a stage with a pool of n processes needs n messages to use them
    # all, however slow each is; the worker asks for 2n, so that the images of one batch
    # even out and a pool process seldom waits for the batch's slowest image.
    minimum: int = 1
    size: int = field(init=False)
    seconds_per_message: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.size = min(self.batch_max, max(FIRST_BATCH, self.minimum))

    def observe(self, processed: int, elapsed_s: float, asked: int | None = None) -> int:
        """Learn from a finished batch of `asked` messages; the size of the next one.

        A batch smaller than `minimum` that finished all it was asked (the inbox held no
        more) teaches nothing: its time is one message's latency, not its share of a full
        batch's, and a stage of many threads would be sized as if it ran one at a time
        (fetch_throughput: a warm-up URL kept the batches at 128 for eight rounds). One
        cut short by its deadline does teach, however small.
        """
        if processed <= 0:
            return self.size
        if processed < self.minimum and asked is not None and processed >= asked:
            return self.size
        latest = elapsed_s / processed
        self.seconds_per_message = (
            latest
            if not self.seconds_per_message
            else (1 - NEWEST_WEIGHT) * self.seconds_per_message + NEWEST_WEIGHT * latest
        )
        rate = max(self.seconds_per_message, MIN_SECONDS_PER_MESSAGE)
        fits = int(self.budget_s * BUDGET_SHARE / rate)
        self.size = max(1, min(self.batch_max, max(self.minimum, fits)))
        return self.size
