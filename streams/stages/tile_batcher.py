"""Dynamic batching across messages: tiles of the same model and shape, from any number of
images restored at once, go through the model together.

One thread owns the model calls. A group is due as soon as it holds `max_batch` tiles, or
when its oldest tile has waited `max_wait_s`: a lone image pays at most that much latency,
a busy worker fills whole batches without waiting at all. Due groups take turns, one batch
each, so a big image's many full batches do not hold back a small one's tile that is due.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from processors.restore.restore import is_out_of_memory

Model = Callable[[torch.Tensor], torch.Tensor]
GroupKey = tuple[str, tuple[int, ...]]
# Told of each model call: model name, batch size, seconds.
Observer = Callable[[str, int, float], None]


@dataclass
class _Pending:
    tile: torch.Tensor
    future: cf.Future[torch.Tensor]
    since: float = field(default_factory=time.monotonic)


class TileBatcher:
    """A TileRunner that batches; `close()` stops its thread and fails what is left."""

    def __init__(
        self,
        models: dict[str, Model],
        max_batch: int,
        max_wait_s: float,
        observe: Observer | None = None,
    ) -> None:
        self.models = models
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.observe = observe
        self._groups: dict[GroupKey, list[_Pending]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tile-batcher", daemon=True)
        self._thread.start()

    def __call__(self, model: str, tiles: list[torch.Tensor]) -> list[torch.Tensor]:
        if model not in self.models:
            raise KeyError(f"no model {model!r} in this batcher")
        futures = self.submit(model, tiles)
        cf.wait(futures, return_when=cf.FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None:
            # One tile failed, so the image has no use for the rest: they leave the queue
            # (those already in a model call run to the end, unread).
            self.cancel(futures)
            failed.result()  # raises the tile's exception
        return [future.result() for future in futures]

    def submit(self, model: str, tiles: list[torch.Tensor]) -> list[cf.Future[torch.Tensor]]:
        pending = [_Pending(tile, cf.Future()) for tile in tiles]
        with self._cond:
            if self._closed:
                raise RuntimeError("the tile batcher is closed")
            for item in pending:
                self._groups.setdefault((model, tuple(item.tile.shape)), []).append(item)
            self._cond.notify()
        return [item.future for item in pending]

    def cancel(self, futures: list[cf.Future[torch.Tensor]]) -> None:
        """Withdraw the tiles of these futures that no model call has taken yet."""
        with self._cond:
            if not any([future.cancel() for future in futures]):  # a list: cancel them all
                return
            for key in list(self._groups):
                kept = [item for item in self._groups[key] if not item.future.cancelled()]
                if kept:
                    self._groups[key] = kept
                else:
                    del self._groups[key]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the model thread --------------------------------------------------

    def _next_group(self) -> tuple[str, list[_Pending]] | None:
        """Wait for a group that is due; None once closed and drained."""
        with self._cond:
            while True:
                now = time.monotonic()
                key = self._due(now)
                if key is not None:
                    items = self._groups.pop(key)
                    taken, rest = items[: self.max_batch], items[self.max_batch :]
                    if rest:
                        # Back in at the end: due groups take turns, a batch each, rather
                        # than the first one inserted running for as long as it is full.
                        self._groups[key] = rest
                    # A cancelled tile is skipped; once running, a tile cannot be cancelled.
                    taken = [item for item in taken if item.future.set_running_or_notify_cancel()]
                    if taken:
                        return key[0], taken
                    continue
                if self._closed:
                    return None
                due_at = min(
                    (items[0].since + self.max_wait_s for items in self._groups.values()),
                    default=None,
                )
                self._cond.wait(None if due_at is None else max(0.0, due_at - now))

    def _due(self, now: float) -> GroupKey | None:
        """The first group in turn that is full, has waited long enough, or is left over."""
        for key, items in self._groups.items():
            if (
                len(items) >= self.max_batch
                or items[0].since + self.max_wait_s <= now
                or self._closed
            ):
                return key
        return None

    def _loop(self) -> None:
        while (group := self._next_group()) is not None:
            self._run(*group)

    def _run(self, model: str, items: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.models[model](torch.stack([item.tile for item in items]))
        except Exception as exc:
            if len(items) > 1 and is_out_of_memory(exc):
                # Smaller batches first; only a single tile that does not fit fails.
                half = len(items) // 2
                self._run(model, items[:half])
                self._run(model, items[half:])
                return
            for item in items:
                item.future.set_exception(exc)
            return
        if self.observe is not None:
            self.observe(model, len(items), time.perf_counter() - started)
        for item, out in zip(items, outputs.unbind(0), strict=True):
            item.future.set_result(out)
