"""No-reference measurements for the restore stage: noise level, removed signal and an
upscaler's faithfulness, each on a bounded sample of the image.

Where noise is measured: only where it can show. A pixel counts when its 3x3 neighbourhood
is opaque and touches no exactly flat 7x7 block (equal in every channel). A transparent
canvas, white margins or letterbox bars carry no noise; counted, they pull a median to 0
(the noise-level map said "no noise" for a noisy photo on a canvas) and dilute a mean. On
a noisy photo no such block exists, so every pixel counts and the estimates are the plain
ones; on a clean one mostly clipped areas (black, blown-out white) go, hardly any of a
smooth sky, whose exactly flat spots are mostly smaller than 7x7. A picture that is all
flat areas and thin edges (a logo, a screenshot) has next to nothing left: then every
opaque pixel counts, as before.

Memory: measured in integers, one window of about `_WINDOW` pixels square at a time,
never the whole image as floats (a 50 MP image in float64 is 1.2 GB per call). An image
of up to `SAMPLE_PIXELS` is measured whole; a larger one on a grid of windows spread over
it, `SAMPLE_PIXELS` together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom: PIL's order
Mask = NDArray[np.bool_]
SAMPLE_PIXELS = 2048 * 2048  # four megapixels are plenty for a median and bound the cost
_WINDOW = 512  # side of the windows an image is measured in
_FLAT_BLOCK = 7  # an exactly flat square this large is a canvas, margin or bar, not sky
_MIN_PIXELS = 1024  # fewer measurable pixels than this: every opaque pixel is measured
# Immerkaer's mask (a difference of two Laplacians) gives white noise of sigma s a
# standard deviation of 6 s; a Gaussian's mean absolute value is s * sqrt(2 / pi) and its
# median absolute value 0.6745 s.
_MEAN_TO_SIGMA = math.sqrt(math.pi / 2) / 6.0
_MEDIAN_TO_SIGMA = 1.0 / (0.6745 * 6.0)
_BICUBIC = Image.Resampling.BICUBIC


def sample_boxes(
    width: int, height: int, cap: int = SAMPLE_PIXELS, side: int = _WINDOW, context: int = 2
) -> list[Box]:
    """Where an image is measured, in windows of at most about `side` pixels square.

    An image of at most `cap` pixels is covered whole: its windows overlap by `context`
    pixels (2: each interior pixel's 3x3 response is computed in exactly one of them; 0:
    each pixel is in one), so the figures are those of the whole image. A larger one gets a
    grid of windows spread evenly over it (content off the centre is seen too), at most
    `cap` pixels together.
    """
    if width * height <= cap:
        return [
            (x, y, min(width, x + side + context), min(height, y + side + context))
            for y in range(0, max(1, height - context), side)
            for x in range(0, max(1, width - context), side)
        ]
    side = max(3, min(side, math.isqrt(cap)))
    box_w, box_h = min(side, width), min(side, height)
    count = max(1, cap // (box_w * box_h))
    # Rows and columns of windows in the proportions of the image.
    across, down = width / box_w, height / box_h
    rows = min(height // box_h, max(1, round(math.sqrt(count * down / across))))
    cols = min(width // box_w, max(1, count // rows))
    return [
        (x, y, x + box_w, y + box_h)
        for y in _starts(height, box_h, rows)
        for x in _starts(width, box_w, cols)
    ]


def _starts(length: int, size: int, count: int) -> list[int]:
    if count == 1:
        return [(length - size) // 2]  # one window: the centre
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def _responses(plane: NDArray[np.uint8]) -> NDArray[np.int16]:
    """|Immerkaer's mask| of an (H, W) plane at its interior pixels: separable, as
    [1, -2, 1] across then down. Integers of at most 8 * 255, so int16 holds them exactly in
    a quarter of float64's memory."""
    x = plane.astype(np.int16)
    across = x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:]
    out: NDArray[np.int16] = np.abs(across[:-2] - 2 * across[1:-1] + across[2:])
    return out


def _in_3x3(mask: Mask) -> Mask:
    """At the interior pixels: whether all nine of the 3x3 neighbourhood are set."""
    h, w = mask.shape
    out = mask[1:-1, 1:-1].copy()
    for dy in range(3):
        for dx in range(3):
            out &= mask[dy : dy + h - 2, dx : dx + w - 2]
    return out


def _dilated(mask: Mask, reach: int) -> Mask:
    rows = mask.copy()
    for shift in range(1, reach + 1):
        rows[shift:] |= mask[:-shift]
        rows[:-shift] |= mask[shift:]
    out = rows.copy()
    for shift in range(1, reach + 1):
        out[:, shift:] |= rows[:, :-shift]
        out[:, :-shift] |= rows[:, shift:]
    return out


def _opaque(reference: Image.Image) -> Mask | None:
    if reference.mode not in ("RGBA", "LA"):
        return None
    opaque: Mask = np.asarray(reference.getchannel("A")) > 0
    return _in_3x3(opaque)


def _runs(equal: Mask, length: int, axis: int) -> Mask:
    """Where `length` entries in a row along the axis are all set, at the first of them."""
    along = np.moveaxis(equal, axis, 0)
    count = along.shape[0] - length + 1
    out = along[:count].copy()
    for shift in range(1, length):
        out &= along[shift : shift + count]
    return np.moveaxis(out, 0, axis)


def _near_flat(rgb: NDArray[np.uint8], ring: int = 1) -> Mask:
    """Pixels of an exactly flat `_FLAT_BLOCK`-square block in every channel, and those
    `ring` pixels around one (with 1: those whose 3x3 neighbourhood touches one, their
    response straddles the flat area's rim; with 0: the blocks alone)."""
    h, w = rgb.shape[:2]
    near = np.zeros((h, w), bool)
    size, half = _FLAT_BLOCK, _FLAT_BLOCK // 2
    if h < size or w < size:
        return near
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
    packed |= rgb[..., 2]
    # A block is flat when each of its rows is, and its middle column ties the rows.
    rows = _runs(_runs(packed[:, :-1] == packed[:, 1:], size - 1, axis=1), size, axis=0)
    if not rows.any():  # a noisy photo: nothing more to look for
        return near
    column = _runs(packed[:-1] == packed[1:], size - 1, axis=0)[:, half : w - half]
    near[half : h - half, half : w - half] = rows & column  # the blocks' centres
    return _dilated(near, half + ring)


def _masks(reference: Image.Image, boxes: list[Box]) -> list[Mask]:
    """Per box, at its interior pixels: where noise is measured (see the module's doc)."""
    masks: list[Mask] = []
    fallback: list[Mask] = []
    for box in boxes:
        window = reference.crop(box)
        if min(window.size) < 3:
            masks.append(np.zeros((0, 0), bool))
            fallback.append(masks[-1])
            continue
        opaque = _opaque(window)
        w, h = window.size
        fallback.append(np.ones((h - 2, w - 2), bool) if opaque is None else opaque)
        flat = _near_flat(np.asarray(window.convert("RGB")))[1:-1, 1:-1]
        masks.append(fallback[-1] & ~flat)
    # Few measurable pixels, in absolute terms and as a share of the opaque ones: a
    # graphic's thin edges, not a picture on a flat ground.
    countable = sum(int(m.sum()) for m in fallback)
    if sum(int(m.sum()) for m in masks) < max(1, min(_MIN_PIXELS, countable // 8)):
        return fallback
    return masks


def _measured(
    image: Image.Image, reference: Image.Image, mode: str, cap: int
) -> Iterator[tuple[list[NDArray[np.int16]], Mask]]:
    """Per sample box: |Immerkaer| of each of the image's planes and where it counts, from
    the reference (the same size: what the image was made from, or the image itself)."""
    if image.size != reference.size:
        raise ValueError(f"sizes differ: {image.size} and {reference.size}")
    boxes = sample_boxes(*image.size, cap)
    for box, mask in zip(boxes, _masks(reference, boxes), strict=True):
        if mask.any():
            window = image.crop(box).convert(mode)
            yield [_responses(np.asarray(plane)) for plane in window.split()], mask


def sigma(
    image: Image.Image, reference: Image.Image | None = None, cap: int = SAMPLE_PIXELS
) -> float | None:
    """Immerkaer's fast estimate of Gaussian noise sigma in the luminance (grey levels,
    0-255), over the pixels where the reference shows noise; None when there are none (an
    image under 3 pixels on a side)."""
    total, count = 0, 0
    for (response,), mask in _measured(image, reference or image, "L", cap):
        total += int(response[mask].sum(dtype=np.int64))
        count += int(mask.sum())
    return total / count * _MEAN_TO_SIGMA if count else None


def _channel_values(
    image: Image.Image, reference: Image.Image, cap: int
) -> list[list[NDArray[np.int16]]]:
    values: list[list[NDArray[np.int16]]] = [[], [], []]
    for responses, mask in _measured(image, reference, "RGB", cap):
        for found, response in zip(values, responses, strict=True):
            found.append(response[mask])
    return values


def _median_sigma(values: list[list[NDArray[np.int16]]]) -> float | None:
    if not values[0]:
        return None
    medians = [float(np.median(np.concatenate(found))) for found in values]
    return sum(medians) / len(medians) * _MEDIAN_TO_SIGMA


def channel_sigma(
    image: Image.Image, reference: Image.Image | None = None, cap: int = SAMPLE_PIXELS
) -> float | None:
    """Noise sigma per colour channel, averaged: what a denoiser working on RGB faces.

    The median of the mask's magnitude instead of its mean: edges and texture are a
    minority of pixels, so the median follows the noise where the mean follows the picture.
    None when nothing can be measured.
    """
    return _median_sigma(_channel_values(image, reference or image, cap))


def removed_signal(image: Image.Image, result: Image.Image, cap: int = SAMPLE_PIXELS) -> float:
    """Standard deviation of what a denoiser took out of the luminance, where the input
    shows noise (0.0 where nothing can be measured)."""
    boxes = sample_boxes(*image.size, cap)
    total, squares, count = 0, 0, 0
    for box, mask in zip(boxes, _masks(image, boxes), strict=True):
        if not mask.any():
            continue
        before = np.asarray(image.crop(box).convert("L"), np.int16)[1:-1, 1:-1]
        after = np.asarray(result.crop(box).convert("L"), np.int16)[1:-1, 1:-1]
        taken = (before - after)[mask].astype(np.int32)  # exact sums, in integers
        total += int(taken.sum(dtype=np.int64))
        squares += int(np.square(taken).sum(dtype=np.int64))
        count += taken.size
    if not count:
        return 0.0
    mean = total / count
    return math.sqrt(max(0.0, squares / count - mean**2))


def upscale_noise(
    image: Image.Image, result: Image.Image, scale: int, cap: int = SAMPLE_PIXELS
) -> tuple[float, float] | None:
    """(bicubic, result): the noise sigma per channel of a bicubic upscale of the input and
    of the upscaler's result, at the output's size over the same pixels. Like with like: the
    input's own noise estimate would compare a picture with a larger, smoother one, whose
    estimate is lower anyway, and grain added at the output's scale mostly averages away
    when the result is scaled back down. None when nothing can be measured."""
    bicubic: list[list[NDArray[np.int16]]] = [[], [], []]
    mine: list[list[NDArray[np.int16]]] = [[], [], []]
    for reference, scaled in _upscaled_windows(image, result, scale, cap):
        for into, found in (
            (bicubic, _channel_values(reference, reference, cap)),
            (mine, _channel_values(scaled, reference, cap)),
        ):
            for channel, values in zip(into, found, strict=True):
                channel.extend(values)
    levels = (_median_sigma(bicubic), _median_sigma(mine))
    return None if levels[0] is None or levels[1] is None else (levels[0], levels[1])


def _upscaled_windows(
    image: Image.Image, result: Image.Image, scale: int, cap: int
) -> Iterator[tuple[Image.Image, Image.Image]]:
    """Per sample box of the input: its bicubic upscale and the same part of the result."""
    # Resized as RGB, as the model saw it (PIL would premultiply an RGBA image's alpha).
    rgb = image.convert("RGB")
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    for left, top, right, bottom in sample_boxes(*image.size, max(1, cap // scale**2)):
        size, box = ((right - left) * scale, (bottom - top) * scale), (left, top, right, bottom)
        # A box of the input, resized: exactly that part of the whole image's upscale.
        reference = rgb.resize(size, _BICUBIC, box=box)
        if alpha is not None:
            reference.putalpha(alpha.resize(size, _BICUBIC, box=box))
        yield reference, result.crop((left * scale, top * scale, right * scale, bottom * scale))


def _flat_sums(reference: Image.Image, result: Image.Image) -> tuple[int, int]:
    """(sum of |luminance change|, pixels) over the reference's opaque, exactly flat areas."""
    if min(reference.size) < 3:
        return 0, 0
    # The blocks alone: the ring around them is the picture's edge, which a denoiser
    # rightly changes by about the noise level.
    flat = _near_flat(np.asarray(reference.convert("RGB")), ring=0)[1:-1, 1:-1]
    opaque = _opaque(reference)
    if opaque is not None:
        flat &= opaque
    if not flat.any():
        return 0, 0
    before = np.asarray(reference.convert("L"), np.int16)[1:-1, 1:-1]
    after = np.asarray(result.convert("L"), np.int16)[1:-1, 1:-1]
    return int(np.abs(after - before)[flat].sum(dtype=np.int64)), int(flat.sum())


def flat_change(
    image: Image.Image, result: Image.Image, scale: int = 1, cap: int = SAMPLE_PIXELS
) -> float | None:
    """Mean |luminance change| (grey levels) over the flat areas the noise measures leave
    out: a canvas, margins, bars, where a restorer has nothing to do. (An upscaler's result
    is compared with a bicubic upscale.) None when the image has no such area."""
    if scale == 1:
        pairs: Iterator[tuple[Image.Image, Image.Image]] = (
            (image.crop(box), result.crop(box)) for box in sample_boxes(*image.size, cap)
        )
    else:
        pairs = _upscaled_windows(image, result, scale, cap)
    total, count = 0, 0
    for reference, changed in pairs:
        part, pixels = _flat_sums(reference, changed)
        total, count = total + part, count + pixels
    return total / count if count else None


def consistency_db(
    image: Image.Image, result: Image.Image, scale: int, cap: int = SAMPLE_PIXELS
) -> float:
    """PSNR of the result scaled back down to the input's size against the input, on the
    sample boxes (each box of the result resized alone gives exactly that part of the
    whole result resized)."""
    total, count = 0.0, 0
    rgb = result.convert("RGB")  # PIL would premultiply an RGBA image's alpha
    for left, top, right, bottom in sample_boxes(*image.size, cap, context=0):
        scaled = (left * scale, top * scale, right * scale, bottom * scale)
        back = rgb.resize((right - left, bottom - top), _BICUBIC, box=scaled, reducing_gap=None)
        given = np.asarray(image.crop((left, top, right, bottom)).convert("RGB"), np.float32)
        total += float(((np.asarray(back, np.float32) - given) ** 2).sum(dtype=np.float64))
        count += given.size
    return 10 * math.log10(255.0**2 / max(total / max(count, 1), 1e-10))
