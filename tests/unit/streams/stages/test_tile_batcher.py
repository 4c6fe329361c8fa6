from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch

from streams.stages.tile_batcher import TileBatcher


class Recording:
    """A 'model' that doubles its input and remembers the shape of every batch."""

    def __init__(self, fail_above: int | None = None) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.fail_above = fail_above
        self.lock = threading.Lock()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.batches.append(tuple(batch.shape))
        if self.fail_above is not None and batch.shape[0] > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return batch * 2


@pytest.fixture
def model() -> Recording:
    return Recording()


@pytest.fixture
def batcher(model: Recording) -> Iterator[TileBatcher]:
    b = TileBatcher({"m": model, "n": model}, max_batch=8, max_wait_s=0.2)
    yield b
    b.close()


def _tiles(image: int, count: int, side: int) -> list[torch.Tensor]:
    # Each tile's pixels say which image and tile it is, so a mix-up shows in the output.
    return [torch.full((3, side, side), image * 100 + i, dtype=torch.int32) for i in range(count)]


def test_concurrent_images_batch_together_by_shape_and_get_their_own_outputs(
    batcher: TileBatcher, model: Recording
) -> None:
    jobs = [(image, 3, 16 if image % 2 else 24) for image in range(6)]
    results: dict[int, list[torch.Tensor]] = {}

    def restore(image: int, count: int, side: int) -> None:
        results[image] = batcher("m", _tiles(image, count, side))

    threads = [threading.Thread(target=restore, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for image, count, side in jobs:
        expected = [t * 2 for t in _tiles(image, count, side)]
        assert all(torch.equal(a, b) for a, b in zip(results[image], expected, strict=True))
    # One shape per call, never more than max_batch, and tiles of several images shared calls.
    assert all(shape[1:] in ((3, 16, 16), (3, 24, 24)) for shape in model.batches)
    assert max(shape[0] for shape in model.batches) <= 8
    assert sum(shape[0] for shape in model.batches) == 18
    assert len(model.batches) <= 4  # 9 tiles of each shape: 2 calls each, not one per image


def test_models_are_never_mixed(batcher: TileBatcher, model: Recording) -> None:
    futures = batcher.submit("m", _tiles(1, 2, 8)) + batcher.submit("n", _tiles(2, 2, 8))
    assert [int(f.result()[0, 0, 0]) for f in futures] == [200, 202, 400, 402]
    assert sorted(model.batches) == [(2, 3, 8, 8), (2, 3, 8, 8)]


def test_a_lone_tile_waits_at_most_max_wait(batcher: TileBatcher) -> None:
    started = time.monotonic()
    batcher("m", _tiles(1, 1, 8))
    assert time.monotonic() - started < 2.0  # 0.2 s wait plus scheduling, far below a stall


def test_a_full_batch_does_not_wait(model: Recording) -> None:
    slow = TileBatcher({"m": model}, max_batch=4, max_wait_s=30.0)
    try:
        started = time.monotonic()
        slow("m", _tiles(1, 4, 8))
        assert time.monotonic() - started < 5.0
    finally:
        slow.close()


def test_out_of_memory_splits_the_batch_before_failing() -> None:
    model = Recording(fail_above=2)
    b = TileBatcher({"m": model}, max_batch=8, max_wait_s=0.05)
    try:
        out = b("m", _tiles(1, 8, 8))
        assert [int(t[0, 0, 0]) for t in out] == [200 + 2 * i for i in range(8)]
        assert [s[0] for s in model.batches] == [8, 4, 2, 2, 4, 2, 2]
        lone = TileBatcher({"m": Recording(fail_above=0)}, max_batch=8, max_wait_s=0.01)
        with pytest.raises(torch.OutOfMemoryError):
            lone("m", _tiles(1, 1, 8))
        lone.close()
    finally:
        b.close()


def test_unknown_model_and_closed_batcher_are_errors(batcher: TileBatcher) -> None:
    with pytest.raises(KeyError):
        batcher("other", _tiles(1, 1, 8))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher("m", _tiles(1, 1, 8))


class Gated(Recording):
    """A Recording whose calls wait for `go`, remembering each tile by its first pixel; a
    call holding tile `fails` raises at once, without waiting."""

    def __init__(self, fails: int | None = None) -> None:
        super().__init__()
        self.go = threading.Event()
        self.fails = fails
        self.seen: list[int] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        tiles = [int(tile[0, 0, 0]) for tile in batch]
        with self.lock:
            self.seen.extend(tiles)
        if self.fails in tiles:
            raise ValueError(f"tile {self.fails} is broken")
        self.go.wait(timeout=10)
        return super().__call__(batch)


def test_a_due_lone_tile_is_not_held_back_by_a_big_images_full_batches() -> None:
    model = Gated()
    b = TileBatcher({"m": model}, max_batch=4, max_wait_s=0.0)
    try:
        big = b.submit("m", _tiles(1, 5 * 4, 8))  # five full batches
        lone = b.submit("m", _tiles(2, 1, 16))  # another shape: its own group, due at once
        model.go.set()
        for future in big + lone:
            future.result(timeout=10)
    finally:
        b.close()
    # The big image's groups take turns with the lone tile: it runs after the batch in the
    # model when it came and at most one more (whether the model thread had put the big
    # group back in line before the lone tile came). In insertion order it ran last.
    assert sorted(shape[0] for shape in model.batches) == [1, 4, 4, 4, 4, 4]
    assert model.batches.index((1, 3, 16, 16)) <= 2


def test_when_a_tile_fails_the_images_other_tiles_are_withdrawn() -> None:
    model = Gated(fails=100)
    b = TileBatcher({"m": model}, max_batch=1, max_wait_s=0.0)
    try:
        with pytest.raises(ValueError, match="tile 100 is broken"):
            b("m", _tiles(1, 6, 8))
        # At most the tile taken while the first one failed went to the model (and waits
        # there); the rest were withdrawn. They used to run, to no use, one after another.
        assert set(model.seen) <= {100, 101}
        model.go.set()
        assert [int(t[0, 0, 0]) for t in b("m", _tiles(3, 2, 8))] == [600, 602]  # still works
    finally:
        b.close()
    assert set(model.seen) <= {100, 101, 300, 301}


def test_a_cancelled_tile_is_skipped_and_a_running_one_is_not_cancelled() -> None:
    model = Gated()
    b = TileBatcher({"m": model}, max_batch=1, max_wait_s=0.0)
    try:
        futures = b.submit("m", _tiles(1, 3, 8))
        b.cancel(futures[1:])
        model.go.set()
        assert int(futures[0].result(timeout=10)[0, 0, 0]) == 200
        assert futures[1].cancelled() and futures[2].cancelled()
        b.cancel(futures[:1])  # done already: nothing happens
    finally:
        b.close()
    assert model.seen == [100]
