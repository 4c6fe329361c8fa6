"""One waiting call of a batch lingers until the deadline unless the batch has work; the
others, and calls outside any batch, return at once."""

from __future__ import annotations

import threading
import time

from streams.stages.fetch.lull import Lull

BATCH = 100.0  # a batch's deadline stands for the batch
FAR = 30.0  # a linger's end no test reaches: only work or a new batch ends it


def _lingering(lull: Lull, batch: float) -> tuple[threading.Thread, list[bool]]:
    waited: list[bool] = []
    thread = threading.Thread(
        target=lambda: waited.append(lull.linger(batch, time.monotonic() + FAR))
    )
    thread.start()
    for _ in range(500):  # until it holds the batch's one lingering place
        if lull._lingering:
            break
        time.sleep(0.01)
    return thread, waited


def test_a_call_outside_a_batch_never_lingers() -> None:
    assert Lull().linger(None, time.monotonic() + FAR) is False


def test_work_in_the_batch_ends_the_linger_and_later_calls_do_not_linger() -> None:
    lull = Lull()
    thread, waited = _lingering(lull, BATCH)
    # A second waiting call of the same batch does not linger beside the first.
    assert lull.linger(BATCH, time.monotonic() + FAR) is False
    lull.work(BATCH)
    thread.join(5)
    assert not thread.is_alive() and waited == [True]
    assert lull.linger(BATCH, time.monotonic() + FAR) is False


def test_a_batch_of_waiting_calls_lingers_until_its_deadline() -> None:
    clock = [0.0]
    lull = Lull(clock=lambda: clock[0])
    clock[0] = 5.0  # the deadline has passed: the linger ends without any work
    assert lull.linger(BATCH, until=5.0) is True


def test_a_new_batch_ends_the_last_ones_linger() -> None:
    lull = Lull()
    thread, waited = _lingering(lull, BATCH)
    lull.work(BATCH + 1)
    thread.join(5)
    assert not thread.is_alive() and waited == [True]
