"""Pillow set up for one untrusted decode: its limits, and PNG text read leniently.

Pillow's limits (`MAX_IMAGE_PIXELS`, `LOAD_TRUNCATED_IMAGES`) and the warning filters are
process globals; `strict_decoding` sets them for one decode and puts them back. Inside it,
a PNG text chunk Pillow refuses is left out with a note instead of failing the file.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from PIL import Image, ImageFile, PngImagePlugin

from processors.errors import InputRejectedError

# Text chunks of one PNG left out before the file is refused as `too_much_text`: a real
# file has one bloated XMP, or a raw profile beside it. Within MAX_COMPRESSED_TEXT, this
# refuses the file of many oversized ones sooner (each left out cost its 1 MB inflate).
MAX_TEXT_SKIPPED = 8
# Where a decoded PNG's info lists the kinds of text chunk left out (each kind once).
TEXT_SKIPPED = "pixelfleet_text_skipped"
_TEXT_CHUNKS = ("chunk_tEXt", "chunk_zTXt", "chunk_iTXt")
# How deep inside strict_decoding this thread is: the readers below are installed once, for
# the whole process, and lenient only where this is set (a context variable, one per
# thread), so a decode in another thread or outside validate keeps Pillow's own behaviour.
# A count, not a flag: exits in any order bring it back to 0.
_LENIENT_TEXT: ContextVar[int] = ContextVar("pixelfleet_lenient_text", default=0)
# The count of chunks left out, kept on the PngStream: one per file, open and load alike.
_SKIP_COUNT = "_pixelfleet_text_skips"


def _lenient_text(chunk: Any) -> Any:
    """A PNG text chunk reader that skips a chunk Pillow refuses (one over MAX_TEXT_CHUNK
    once inflated, text past MAX_TEXT_MEMORY, an unknown compression) instead of failing
    the file: text is metadata, and bloated XMP (Photoshop's DocumentAncestors run to
    megabytes) must not cost a photo whose pixels are fine. Past MAX_TEXT_SKIPPED chunks
    left out the file is refused: the inflating each one costs is the attack."""

    def read(stream: PngImagePlugin.PngStream, pos: int, length: int) -> bytes:
        if not _LENIENT_TEXT.get():
            return chunk(stream, pos, length)  # type: ignore[no-any-return]
        try:
            return chunk(stream, pos, length)  # type: ignore[no-any-return]
        except (ValueError, SyntaxError):
            skips = getattr(stream, _SKIP_COUNT, 0) + 1
            setattr(stream, _SKIP_COUNT, skips)
            if skips > MAX_TEXT_SKIPPED:
                raise InputRejectedError(
                    "too_much_text",
                    f"more than {MAX_TEXT_SKIPPED} PNG text chunks too large or unreadable "
                    "(real files have one or two)",
                ) from None
            assert stream.fp is not None
            names = stream.im_info.setdefault(TEXT_SKIPPED, [])
            name = _chunk_name(stream.fp, pos)
            if name not in names:
                names.append(name)
            stream.fp.seek(pos)  # the chunk's bytes again, for the CRC check that follows
            return ImageFile._safe_read(stream.fp, length)

    return read


def _chunk_name(fp: Any, pos: int) -> str:
    fp.seek(pos - 4)
    return str(fp.read(4).decode("latin-1"))


for _name in _TEXT_CHUNKS:
    _reader = getattr(PngImagePlugin.PngStream, _name)
    setattr(PngImagePlugin.PngStream, _name, _lenient_text(_reader))

# Pillow's limits and the warning filters are process globals. Holding this lock while they
# are set keeps two threads from interleaving their save and restore (which left them set);
# threads then decode one after another inside strict_decoding. Re-entrant: normalizing a
# colour key decodes again while validate's own decode may hold it.
_PILLOW_GLOBALS = threading.RLock()


class _Outermost:
    """What the outermost strict_decoding found and must put back, whatever the order in
    which the inner ones exit: Pillow's limits and the warning filters."""

    depth = 0
    limits: tuple[int | None, bool] = (None, False)
    filters: warnings.catch_warnings[None] | None = None


@contextlib.contextmanager
def strict_decoding(max_pixels: int | None) -> Iterator[None]:
    """Pillow's limits set for one decode (`max_pixels`, None for none; truncated files
    refused, a decompression bomb warning raised), PNG text read leniently; all restored
    when the outermost one exits.

    Thread-safe but serial: Pillow's limits are module globals, so a second thread waits
    here until the first is done; a stage scales by processes, one image at a time each."""
    with _PILLOW_GLOBALS:
        saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
        if _Outermost.depth == 0:
            _Outermost.limits = saved
            _Outermost.filters = warnings.catch_warnings()
            _Outermost.filters.__enter__()
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow warns of corrupt EXIF as it opens; exif.read names what it skipped in
            # the record instead of the worker's log.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")
        _Outermost.depth += 1
        _LENIENT_TEXT.set(_LENIENT_TEXT.get() + 1)
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            _LENIENT_TEXT.set(_LENIENT_TEXT.get() - 1)
            _Outermost.depth -= 1
            if _Outermost.depth:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
            else:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = _Outermost.limits
                if _Outermost.filters is not None:
                    _Outermost.filters.__exit__(None, None, None)
                    _Outermost.filters = None


@contextlib.contextmanager
def truncated_allowed() -> Iterator[None]:
    """Pillow decoding what a truncated file holds (to measure the damage), for one decode:
    LOAD_TRUNCATED_IMAGES is a process global, set and put back under the same lock."""
    with _PILLOW_GLOBALS:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
