"""Cutting an image into fixed-size overlapping windows and stitching the outputs back.

Every window of an image at least one window large has the same shape, so windows of many
images batch together. Each window carries `overlap` pixels of real context around the
part of it that is kept (except at the image's own border), so when the overlap is at least
the model's receptive radius the stitched result equals running the model on the whole
image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    start: int  # the window, in input pixels
    size: int
    keep_from: int  # the kept part, in input pixels
    keep_to: int


@dataclass(frozen=True)
class Window:
    rows: Span
    cols: Span


def _spans(length: int, tile: int, overlap: int) -> list[Span]:
    window = tile + 2 * overlap
    if length <= window:
        return [Span(0, length, 0, length)]
    spans = []
    for keep_from in range(0, length, tile):
        keep_to = min(length, keep_from + tile)
        # Shifted inward at the far border so every window has the full size.
        start = min(max(0, keep_from - overlap), length - window)
        spans.append(Span(start, window, keep_from, keep_to))
    return spans


def plan(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """The windows covering an image; their kept parts tile it exactly once."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
    return [
        Window(rows, cols)
        for rows in _spans(height, tile, overlap)
        for cols in _spans(width, tile, overlap)
    ]


def cut(image: torch.Tensor, window: Window) -> torch.Tensor:
    """The window's pixels of a (C, H, W) image, as a view."""
    r, c = window.rows, window.cols
    return image[:, r.start : r.start + r.size, c.start : c.start + c.size]


def stitch(
    outputs: list[torch.Tensor], windows: list[Window], height: int, width: int, scale: int
) -> torch.Tensor:
    """The (C, H*scale, W*scale) image made of each output's kept part."""
    channels = outputs[0].shape[0]
    result = outputs[0].new_empty((channels, height * scale, width * scale))
    for out, window in zip(outputs, windows, strict=True):
        r, c = window.rows, window.cols
        top, bottom = (r.keep_from - r.start) * scale, (r.keep_to - r.start) * scale
        left, right = (c.keep_from - c.start) * scale, (c.keep_to - c.start) * scale
        result[
            :, r.keep_from * scale : r.keep_to * scale, c.keep_from * scale : c.keep_to * scale
        ] = out[:, top:bottom, left:right]
    return result
