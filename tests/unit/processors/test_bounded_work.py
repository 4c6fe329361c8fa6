"""What a hostile file costs is bounded by what it is made of, counted in work done (chunks
inflated, segments walked, decodes), never timed; colour keys of every depth read right;
strict_decoding leaves Pillow as it found it, whatever the order of exits or the thread."""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from processors import decode
from processors.colour_key import key_mask
from processors.decode import (
    MAX_COMPRESSED_TEXT,
    MAX_JPEG_PADDING,
    MAX_JPEG_SEGMENTS,
    MAX_SCANS,
)
from processors.errors import InputRejectedError
from processors.pillow_limits import MAX_TEXT_SKIPPED, strict_decoding
from processors.sniff import jpeg_scans
from processors.validate import ValidateSettings, validate
from tests.support.photos import encode, photo
from tests.unit.processors.test_hostile_structure import _calls

S = ValidateSettings(min_bytes=0)


def _rejected(data: bytes, reason_class: str) -> None:
    with pytest.raises(InputRejectedError) as caught:
        validate(data, S)
    assert caught.value.reason_class == reason_class, caught.value


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# -- PNG text ---------------------------------------------------------------------------

# 1 KB that inflates past the 1 MB Pillow allows one text chunk.
_TEXT_BOMB = _chunk(
    b"zTXt", b"k\x00\x00" + zlib.compress(b"\0" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), 9)
)


def _png_with_text(chunks: bytes) -> bytes:
    png = encode(Image.new("RGB", (100, 100), (10, 200, 30)), "PNG")
    at = png.index(b"IDAT") - 4
    return png[:at] + chunks + png[at:]


@pytest.fixture
def inflates(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each text inflate Pillow starts, by the size of what it inflates, counted before it
    runs (many of these raise or swallow an error)."""
    made: list[int] = []
    real = PngImagePlugin._safe_zlib_decompress

    def counting(data: bytes) -> bytes:
        made.append(len(data))
        return real(data)

    monkeypatch.setattr(PngImagePlugin, "_safe_zlib_decompress", counting)
    return made


def _bad_block(size: int) -> bytes:
    """A deflate stream that inflates `size` bytes and then meets an invalid block: Pillow
    swallows the zlib.error, after the inflate, and keeps no text."""
    stream = zlib.compressobj(9)
    return stream.compress(b"\0" * size) + stream.flush(zlib.Z_SYNC_FLUSH) + b"\xff" * 4


def _reviewed_bombs(size: int) -> dict[str, bytes]:
    """The compressed text chunks Pillow inflates and never refuses, so the rule on chunks
    left out never counted them: a bad block after `size` bytes, in a zTXt and in a
    compressed iTXt, and a zTXt with an empty keyword (Pillow skips its 64 MB total then)
    that inflates `size` bytes cleanly."""
    return {
        "zTXt, bad block": _chunk(b"zTXt", b"k\x00\x00" + _bad_block(size)),
        "iTXt, bad block": _chunk(b"iTXt", b"k\x00\x01\x00\x00\x00" + _bad_block(size)),
        "zTXt, no keyword": _chunk(b"zTXt", b"\x00\x00" + zlib.compress(b"\0" * size, 9)),
    }


def test_compressed_text_past_the_budget_is_refused_before_a_single_inflate(
    monkeypatch: pytest.MonkeyPatch, inflates: list[int]
) -> None:
    walks = _calls(monkeypatch, decode, "png_compressed_text")
    # 2,000 of the first kind (2 MB) took 4.9 s and were accepted, each a 1 MB inflate.
    for kind, bomb in _reviewed_bombs(PngImagePlugin.MAX_TEXT_CHUNK - 64).items():
        _rejected(_png_with_text(bomb * 2_000), "too_much_text")
        assert inflates == [], kind
    # The 10,000 over Pillow's limit that took 21 s go the same way now.
    _rejected(_png_with_text(_TEXT_BOMB * 10_000), "too_much_text")
    assert inflates == []
    assert walks == [MAX_COMPRESSED_TEXT + 1] * 4  # each walk stopped at the cap


def test_the_budget_is_the_most_inflating_a_file_may_cost(inflates: list[int]) -> None:
    for kind, chunk in _reviewed_bombs(64 * 1024).items():
        accepted = validate(_png_with_text(chunk * MAX_COMPRESSED_TEXT), S)
        assert accepted.image.size == (100, 100)
        assert len(inflates) == MAX_COMPRESSED_TEXT, kind  # each one, once
        inflates.clear()
        _rejected(_png_with_text(chunk * (MAX_COMPRESSED_TEXT + 1)), "too_much_text")
        assert inflates == [], kind
    # Uncompressed text is never charged (no inflate), nor an iTXt whose flag is clear.
    plain = _chunk(b"tEXt", b"k\x00v") + _chunk(b"iTXt", b"k\x00\x00\x00\x00\x00v")
    validate(_png_with_text(plain * (MAX_COMPRESSED_TEXT + 1)), S)
    assert inflates == []


def test_oversized_text_past_the_few_a_photo_may_have_is_refused_after_that_few_inflates(
    inflates: list[int],
) -> None:
    # Within the budget, chunks Pillow refuses (each inflated to 1 MB first) still count
    # against the rule on chunks left out, which stops sooner.
    _rejected(_png_with_text(_TEXT_BOMB * (MAX_TEXT_SKIPPED + 5)), "too_much_text")
    assert len(inflates) == MAX_TEXT_SKIPPED + 1  # the chunks left out, then the one refused


def test_many_small_text_chunks_and_one_bloated_xmp_are_accepted(inflates: list[int]) -> None:
    small = b"".join(_chunk(b"tEXt", b"Comment\x00line %d" % n) for n in range(900))
    xmp = zlib.compress(b"<x:xmpmeta>" + b" " * 2_000_000 + b"</x:xmpmeta>", 9)
    bloated = _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + xmp)
    result = validate(_png_with_text(small + bloated), S)
    assert result.image.size == (100, 100)
    assert "PNG text left out as unreadable or too large: iTXt" in result.notes
    assert len(inflates) == 1  # the XMP's, left out; the 900 tEXt cost none


def test_a_few_text_chunks_left_out_are_named_once_each() -> None:
    small = _chunk(b"tEXt", b"Title\x00kept")
    itxt = _chunk(b"iTXt", b"k\x00\x01\x00\x00\x00" + zlib.compress(b"x" * 2_000_000))
    data = _png_with_text(_TEXT_BOMB * 3 + small + itxt + _TEXT_BOMB * 2)
    result = validate(data, S)
    assert "PNG text left out as unreadable or too large: zTXt, iTXt" in result.notes
    assert result.image.size == (100, 100)


# -- JPEG segments ----------------------------------------------------------------------


def _jpeg() -> bytes:
    return encode(photo("coffee"), "JPEG", quality=80)


def test_endless_tiny_segments_after_the_first_scan_are_refused_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jpeg = _jpeg()
    walks = _calls(monkeypatch, decode, "jpeg_scans")
    loads = _calls(monkeypatch, ImageFile.ImageFile, "load")
    # Ten million 4-byte comments (38 MB) took 12 s; 24 million TEMs 5.3 s.
    for filler in (b"\xff\xfe\x00\x02", b"\xff\x01"):
        _rejected(jpeg[:-2] + filler * 50_000 + jpeg[-2:], "too_many_segments")
    assert [walk.segments for walk in walks] == [MAX_JPEG_SEGMENTS + 1] * 2
    assert loads == []  # refused before a pixel decodes
    # A real file's segments are tens, and fill bytes or restart markers are none.
    real = jpeg_scans(jpeg, MAX_SCANS, MAX_JPEG_SEGMENTS)
    assert 3 < real.segments < 30 and real.scans == 1
    restarts = encode(photo("coffee"), "JPEG", quality=80, restart_marker_blocks=1)
    assert jpeg_scans(restarts, MAX_SCANS, MAX_JPEG_SEGMENTS).segments < 30


def test_endless_tiny_segments_before_the_first_scan_are_refused_before_pillow_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jpeg = _jpeg()
    walks = _calls(monkeypatch, decode, "jpeg_padding")
    opened = _calls(monkeypatch, Image, "open")
    _rejected(jpeg[:2] + b"\xff\xfe\x00\x02" * 50_000 + jpeg[2:], "too_many_segments")
    assert [walk.segments for walk in walks] == [MAX_JPEG_SEGMENTS + 1]
    assert opened == []  # Pillow walks these in Python too: it never started
    # Stray escaped bytes are padding, and the walk stops once past the padding cap.
    stray = jpeg[:2] + b"\xff\x00a" * 1_000_000 + jpeg[2:]
    _rejected(stray, "too_much_padding")
    assert MAX_JPEG_PADDING < walks[-1].padding <= MAX_JPEG_PADDING + 3


# -- colour keys ------------------------------------------------------------------------


def _rgb16(pixels: np.ndarray[Any, Any], key: tuple[int, int, int]) -> bytes:
    """A 16-bit RGB PNG (Pillow writes none) of `pixels`, with tRNS `key`."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    key_chunk = _chunk(b"tRNS", struct.pack(">HHH", *key))
    pixel_chunk = _chunk(b"IDAT", zlib.compress(rows))
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", header) + key_chunk + pixel_chunk + _chunk(b"IEND", b"")


def _alpha(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Image.Image | None, int]:
    """The mask key_mask makes for the file, and how many decodes it took to make it."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        opens = _calls(monkeypatch, Image, "open")
        return key_mask(image, data), len(opens)


def test_a_16_bit_key_decodes_again_only_where_high_bytes_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pixels = np.full((60, 80, 3), 1000, dtype=np.uint16)
    # No pixel's high bytes are the key's (5 >> 8 == 0, 1000 >> 8 == 3): opaque, no second decode.
    mask, decodes = _alpha(_rgb16(pixels, (5, 5, 5)), monkeypatch)
    assert decodes == 0 and mask is not None
    assert int((np.asarray(mask) == 0).sum()) == 0
    # Same high bytes, low bytes apart: only the exact 16-bit colour is transparent.
    pixels[:10, :] = (1001, 1001, 1001)
    pixels[:10, :20] = (1000 + 256, 1000, 1000)  # another high byte: never a candidate
    mask, decodes = _alpha(_rgb16(pixels, (1001, 1001, 1001)), monkeypatch)
    assert decodes == 1 and mask is not None
    assert int((np.asarray(mask) == 0).sum()) == 10 * 60


def _bilevel(key: int) -> bytes:
    image = Image.fromarray(np.tile(np.array([0, 255], np.uint8), (64, 32))).convert("1")
    png = encode(image, "PNG")
    at = png.index(b"IDAT") - 4
    return png[:at] + _chunk(b"tRNS", struct.pack(">H", key)) + png[at:]


def test_a_1_bit_key_is_a_level_of_0_or_1_and_any_other_leaves_the_image_opaque() -> None:
    for key, transparent in ((0, 2048), (1, 2048)):
        out = validate(_bilevel(key), S).image
        assert out.mode == "RGBA"
        alpha = np.asarray(out.getchannel("A"))
        assert int((alpha == 0).sum()) == transparent
        grey = np.asarray(out.convert("L"))
        assert (grey[alpha == 0] == 255 * key).all()  # the keyed level, not the other
    for key in (2, 255):  # Pillow reads them as white; no 1-bit pixel holds them
        assert validate(_bilevel(key), S).image.mode == "RGB"


# -- strict_decoding --------------------------------------------------------------------


def test_strict_decoding_restores_pillow_whatever_the_order_of_exits() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    outer, inner = strict_decoding(1), strict_decoding(None)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # out of order, as two interleaved users would
    inner.__exit__(None, None, None)
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    assert after == before
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):  # Pillow's own refusal again
        Image.open(io.BytesIO(_png_with_text(_TEXT_BOMB)))


def test_strict_decoding_is_lenient_in_its_own_thread_only_and_one_thread_at_a_time() -> None:
    data = _png_with_text(_TEXT_BOMB)
    inside, release = threading.Event(), threading.Event()
    entered: list[str] = []

    def holder() -> None:
        with strict_decoding(None):
            entered.append("holder")
            inside.set()
            release.wait(10)

    def waiter() -> None:
        with strict_decoding(None):
            entered.append("waiter")

    first = threading.Thread(target=holder)
    first.start()
    assert inside.wait(10)
    # Another thread outside strict_decoding reads text as Pillow does, meanwhile.
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):
        Image.open(io.BytesIO(data))
    second = threading.Thread(target=waiter)
    second.start()
    second.join(0.2)
    assert entered == ["holder"]  # the second waits for the first to be done
    release.set()
    first.join(10)
    second.join(10)
    assert entered == ["holder", "waiter"]
    with strict_decoding(None):
        assert Image.open(io.BytesIO(data)).size == (100, 100)
