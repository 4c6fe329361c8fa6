"""Running stage functions: inline, or in a process pool that survives a crashing input.

A process that dies (segfault in a codec, os._exit, the OOM killer) or hangs past the
per-message timeout breaks the pool. Every message that was in flight is then run again
alone in a fresh pool, so the one that kills its process is found; after
`crash_attempts` deaths it becomes a permanent failure while the others pass.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import resource
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from schemas.events import Envelope
from streams.runner.cpus import usable_cpus
from streams.runner.stage import (
    PermanentError,
    StageContext,
    StageFn,
    StageResult,
    TransientError,
    deadline_of_call,
)

# Set by the runner; called while waiting so the consumer stays in its group.
KeepAlive = Callable[[], None]

# Every wait on running work wakes this often to call keepalive() and check for hangs.
WAIT_TICK_S = 0.5
# Inline mode calls keepalive() between messages at most this often.
KEEPALIVE_EVERY_S = 1.0
# Pool mode sends messages in chunks to amortise pickling: about this many chunks per
# process, each at most MAX_CHUNK messages, so a crash re-runs few messages alone.
CHUNKS_PER_PROCESS, MAX_CHUNK = 4, 32
# Chunks in flight per process: one running, one queued, so no process waits for work.
IN_FLIGHT_PER_PROCESS = 2
# A call's own deadline (batch_deadline()) is the moment the batch stops starting work,
# plus this: enough for what is nearly done, short enough that a batch ends on time.
CALL_GRACE_S = 0.5


class WorkItem(NamedTuple):  # a tuple: built per message, and pickled to the pool
    ident: tuple[str, int, int]  # topic, partition, offset: stable across redeliveries
    envelope: Envelope
    blob: bytes | None


@dataclass(frozen=True)
class Failure:
    kind: str  # "permanent" (bad input), "crash" (killed its process), "error" (a bug)
    reason_class: str
    reason: str


Outcome = StageResult | Failure


class Timed(NamedTuple):
    outcome: Outcome
    seconds: float


@dataclass(frozen=True)
class _Transient:
    # A transient error, carried back as data: exceptions do not always pickle.
    message: str


def _call(
    fn: StageFn, item: WorkItem, ctx: StageContext, deadline: float | None = None
) -> Timed | _Transient:
    """Run one item; every exception becomes data."""
    started = time.perf_counter()
    outcome: Outcome
    try:
        if deadline is None:  # the caller set it for a whole batch (inline), or none applies
            outcome = fn(item.envelope, item.blob, ctx)
        else:
            with deadline_of_call(deadline):
                outcome = fn(item.envelope, item.blob, ctx)
    except PermanentError as exc:
        outcome = Failure("permanent", exc.reason_class, exc.reason)
    except TransientError as exc:
        return _Transient(str(exc))
    except MemoryError:
        outcome = Failure("permanent", "out_of_memory", "the stage ran out of memory on this input")
    except Exception as exc:
        outcome = Failure("error", type(exc).__name__, str(exc) or repr(exc))
    return Timed(outcome, time.perf_counter() - started)


def _call_chunk(
    fn: StageFn, items: Sequence[WorkItem], ctx: StageContext, item_timeout_s: float = 0.0
) -> list[Timed | _Transient]:
    """Run a chunk in a pool process. Each item runs under an alarm whose default action
    ends the process, even inside a codec's C loop that never returns to Python: a hung
    item breaks the pool within `item_timeout_s`, and the isolation that follows finds it.
    (The parent's own watch allows a whole chunk, queued time included: minutes.)"""
    results: list[Timed | _Transient] = []
    for item in items:
        if item_timeout_s > 0:
            signal.alarm(max(1, math.ceil(item_timeout_s)))
        try:
            results.append(_call(fn, item, ctx))
        finally:
            if item_timeout_s > 0:
                signal.alarm(0)
    return results


def _checked(results: list[Timed | _Transient]) -> list[Timed]:
    for result in results:
        if isinstance(result, _Transient):
            raise TransientError(result.message)
    return results  # type: ignore[return-value]


def _limit_memory(limit_mb: int) -> None:
    if limit_mb > 0:
        limit = limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class Executor:
    """Runs a stage function over a batch, keeping the consumer alive while it waits.

    Three modes, chosen once from the StageSpec:
      inline    (processes=0, threads=0) one message after another on the caller's thread;
      threads   (threads>0) up to `threads` messages at once, for stages that batch work
                across messages themselves (restore's model calls);
      pool      (processes>0) a forkserver process pool with a memory limit, where a
                message that kills or hangs its process is isolated and, after
                `crash_attempts`, failed on its own.
    `run()` blocks until its prefix of the batch is done, calling `keepalive` at least every
    WAIT_TICK_S while it waits; `close()` blocks until the pools are shut down.
    """

    def __init__(
        self,
        fn: StageFn,
        ctx: StageContext,
        *,
        processes: int,
        crash_attempts: int,
        message_timeout_s: float,
        memory_limit_mb: int = 0,
        threads: int = 0,
    ) -> None:
        self.fn = fn
        self.ctx = ctx
        self.processes = processes
        self.crash_attempts = crash_attempts
        self.message_timeout_s = message_timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.threads = threads
        self._pool: cf.ProcessPoolExecutor | None = None
        self._thread_pool: cf.ThreadPoolExecutor | None = None
        self._crashes: dict[tuple[str, int, int], int] = {}

    # -- public ------------------------------------------------------------

    def run(self, items: Sequence[WorkItem], deadline: float, keepalive: KeepAlive) -> list[Timed]:
        """Outcomes for a prefix of items, in order; stops starting new work after deadline.

        Raises TransientError when any item hit one: the caller retries the whole batch.
        """
        if self.processes == 0 and self.threads > 0:
            return self._run_threads(items, deadline, keepalive)
        if self.processes == 0:
            return self._run_inline(items, deadline, keepalive)
        return self._run_pool(items, deadline, keepalive)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=True, cancel_futures=True)
            self._thread_pool = None

    # -- inline ------------------------------------------------------------

    def _run_inline(
        self, items: Sequence[WorkItem], deadline: float, keepalive: KeepAlive
    ) -> list[Timed]:
        out: list[Timed | _Transient] = []
        last_ping = time.monotonic()
        # One deadline for the whole batch, set once: a context variable per message costs
        # more than a passthrough stage's own work.
        with deadline_of_call(deadline + CALL_GRACE_S):
            for item in items:
                if out and time.monotonic() > deadline:
                    break
                out.append(_call(self.fn, item, self.ctx))
                if time.monotonic() - last_ping > KEEPALIVE_EVERY_S:
                    keepalive()
                    last_ping = time.monotonic()
        return _checked(out)

    # -- threads -----------------------------------------------------------

    def _run_threads(
        self, items: Sequence[WorkItem], deadline: float, keepalive: KeepAlive
    ) -> list[Timed]:
        """Up to `threads` messages at once, started in order, so what ran is a prefix."""
        if self._thread_pool is None:
            self._thread_pool = cf.ThreadPoolExecutor(self.threads, thread_name_prefix="stage")
        pool = self._thread_pool
        futures: list[cf.Future[Timed | _Transient]] = []
        running: set[cf.Future[Timed | _Transient]] = set()
        for item in items:
            while len(running) >= self.threads:
                _, running = cf.wait(running, timeout=WAIT_TICK_S, return_when=cf.FIRST_COMPLETED)
                keepalive()
            if futures and time.monotonic() > deadline:
                break
            future = pool.submit(_call, self.fn, item, self.ctx, deadline + CALL_GRACE_S)
            futures.append(future)
            running.add(future)
        while running:
            _, running = cf.wait(running, timeout=WAIT_TICK_S)
            keepalive()
        return _checked([future.result() for future in futures])

    # -- pool --------------------------------------------------------------

    def _pool_or_new(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers never inherit librdkafka's threads from this process.
            context = multiprocessing.get_context("forkserver")
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=context,
                initializer=_limit_memory,
                initargs=(self.memory_limit_mb,),
            )
        return self._pool

    def _kill_pool(self) -> None:
        pool = self._pool
        self._pool = None
        if pool is None:
            return
        # A hung worker never returns: kill the processes, then let the executor clean up.
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def _run_pool(
        self, items: Sequence[WorkItem], deadline: float, keepalive: KeepAlive
    ) -> list[Timed]:
        chunk = max(1, min(MAX_CHUNK, len(items) // (self.processes * CHUNKS_PER_PROCESS) or 1))
        chunks = [list(items[i : i + chunk]) for i in range(0, len(items), chunk)]
        results: dict[int, list[Any]] = {}
        broken: list[int] = []
        running: dict[cf.Future[list[Any]], tuple[int, float]] = {}
        next_chunk = 0
        while next_chunk < len(chunks) or running:
            may_start = next_chunk == 0 or time.monotonic() < deadline
            while (
                may_start
                and next_chunk < len(chunks)
                and len(running) < self.processes * IN_FLIGHT_PER_PROCESS
            ):
                try:
                    future = self._pool_or_new().submit(
                        _call_chunk, self.fn, chunks[next_chunk], self.ctx, self.message_timeout_s
                    )
                except cf.process.BrokenProcessPool:
                    # It broke after the last wait: the same as any breakage, then go on.
                    broken.extend(index for index, _ in running.values())
                    running.clear()
                    self._kill_pool()
                    continue
                running[future] = (next_chunk, time.monotonic())
                next_chunk += 1
            if not may_start and next_chunk < len(chunks):
                chunks = chunks[:next_chunk]  # the rest is redelivered in a later batch
            done, _ = cf.wait(list(running), timeout=WAIT_TICK_S, return_when=cf.FIRST_COMPLETED)
            keepalive()
            pool_broke = self._hung(running, chunks)
            for future in done:
                index, _started = running.pop(future)
                try:
                    results[index] = future.result()
                except cf.process.BrokenProcessPool:
                    broken.append(index)
                    pool_broke = True
                except Exception:
                    # The chunk ran, but its results did not come back (a MemoryError or
                    # PicklingError while the process sent them): its items go one by
                    # one, so the one at fault fails alone; the pool itself is fine.
                    broken.append(index)
            if pool_broke:
                # The pool is gone: whatever was still running failed with it.
                broken.extend(index for index, _ in running.values())
                running.clear()
                self._kill_pool()
        for index in sorted(broken):
            results[index] = [self._isolated(item, keepalive) for item in chunks[index]]
        return _checked([r for index in range(len(chunks)) for r in results[index]])

    def _hung(
        self,
        running: dict[cf.Future[list[Any]], tuple[int, float]],
        chunks: list[list[WorkItem]],
    ) -> bool:
        now = time.monotonic()
        return any(
            now - started > self.message_timeout_s * len(chunks[index])
            for index, started in running.values()
        )

    def _isolated(self, item: WorkItem, keepalive: KeepAlive) -> Any:
        """Run one suspect item alone until it passes or has killed its process too often."""
        while True:
            try:
                future = self._pool_or_new().submit(
                    _call_chunk, self.fn, [item], self.ctx, self.message_timeout_s
                )
            except cf.process.BrokenProcessPool:
                self._kill_pool()  # broken by an earlier input: no attempt of this one
                continue
            started = time.monotonic()
            while not future.done():
                cf.wait([future], timeout=WAIT_TICK_S)
                keepalive()
                if not future.done() and time.monotonic() - started > self.message_timeout_s:
                    self._kill_pool()
                    break
            try:
                return future.result()[0]
            except (cf.process.BrokenProcessPool, cf.CancelledError):
                self._kill_pool()
            except Exception as exc:
                failure = Failure(
                    "error",
                    type(exc).__name__,
                    f"the stage's result for this input could not be sent back from its "
                    f"process: {exc}",
                )
                return Timed(failure, time.monotonic() - started)
            count = self._crashes.get(item.ident, 0) + 1
            self._crashes[item.ident] = count
            if count >= self.crash_attempts:
                del self._crashes[item.ident]
                failure = Failure(
                    "crash",
                    "worker_crashed",
                    f"the stage's worker process died or hung on this input {count} times "
                    f"(limit {self.message_timeout_s:.0f} s per attempt)",
                )
                return Timed(failure, time.monotonic() - started)


def default_processes(configured: int) -> int:
    """The pool's size: as configured, else one process per CPU this container may use."""
    return configured or usable_cpus()
