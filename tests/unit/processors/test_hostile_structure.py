"""Files built to cost a worker minutes or to slip an exception past the gate: each is
refused by validate with a named reason, fast, or processed with its excess left out."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, TiffImagePlugin

from processors import decode
from processors.decode import MAX_JPEG_PADDING, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS, MAX_SCANS
from processors.errors import InputRejectedError
from processors.exif import MAX_CARRIED_BYTES
from processors.sniff import jpeg_scans, tiff_pages
from processors.structure import jpeg_padding, png_chunks
from processors.validate import MAX_TEXT, ValidateSettings, validate
from tests.support.photos import encode, photo

S = ValidateSettings()


def _calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """From here on, `owner.name` still runs and records each call: what it returned.
    The work a file costs is counted in calls, never timed."""
    real = getattr(owner, name)
    made: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        made.append(result)
        return result

    monkeypatch.setattr(owner, name, counted)
    return made


def _rejected(data: bytes, reason_class: str) -> InputRejectedError:
    with pytest.raises(InputRejectedError) as caught:
        validate(data, S)
    assert caught.value.reason_class == reason_class, caught.value
    return caught.value


def test_a_progressive_jpeg_of_endless_scans_is_refused_before_it_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(Image.new("RGB", (320, 320), (120, 30, 200)), "JPEG", progressive=True)
    end = data.rfind(b"\xff\xd9")
    last_scan = data[data.rfind(b"\xff\xda") : end]
    bomb = data[:end] + last_scan * 2000 + data[end:]  # about 20 KB more
    loads = _calls(monkeypatch, ImageFile.ImageFile, "load")
    counted = _calls(monkeypatch, decode, "jpeg_scans")
    error = _rejected(bomb, "too_many_scans")
    assert "more than 100 scans" in error.reason
    assert loads == []  # not one scan decoded: all 2,000 would take far longer
    assert [walk.scans for walk in counted] == [MAX_SCANS + 1]  # to the cap, not the 2,000th
    assert jpeg_scans(bomb, 10_000, MAX_JPEG_SEGMENTS).scans > 2000
    # A real progressive JPEG (a dozen scans or so) goes through.
    assert validate(encode(photo("coffee"), "JPEG", progressive=True, quality=90), S)


def _tiff_with_pages(extra: int) -> bytes:
    """A little-endian TIFF whose first page chains `extra` empty pages after it."""
    data = bytearray(encode(Image.new("L", (320, 320), 90), "TIFF"))
    (first,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, first)
    link = first + 2 + entries * 12
    struct.pack_into("<I", data, link, len(data))
    for n in range(extra):
        after = len(data) + 6
        data += struct.pack("<HI", 0, after if n < extra - 1 else 0)
    return bytes(data)


def test_a_tiff_of_chained_pages_is_counted_to_the_limit_not_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _tiff_with_pages(20_000)
    assert tiff_pages(data, 30_000) == 20_001
    counted = _calls(monkeypatch, decode, "tiff_pages")
    seeks = _calls(monkeypatch, TiffImagePlugin.TiffImageFile, "_seek")
    _rejected(data, "animation_bomb")
    assert counted == [S.max_frames + 1]  # the chain followed to the limit only
    assert len(seeks) == 1  # Pillow read the first page (opening) and walked no other


def test_a_tiff_page_without_dimensions_is_no_crash() -> None:
    # Pillow's own page count raised TypeError on it, which no handler expected.
    result = validate(_tiff_with_pages(1), S)
    assert result.facts["width"] == 320
    assert any("2 frames" in note for note in result.notes)


def test_a_damaged_jpeg_xl_is_refused_as_corrupt() -> None:
    data = encode(photo("coffee").resize((320, 240)), "JXL")
    _rejected(data[: int(len(data) * 0.6)], "corrupt")


def test_a_huge_exif_block_is_left_out_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x010F] = "M" * 600_000  # Make: one tag of 600 KB
    data = encode(Image.new("RGB", (320, 320), 40), "PNG", exif=exif.tobytes())
    assert len(exif.tobytes()) > MAX_CARRIED_BYTES
    parsed = _calls(monkeypatch, Image.Exif, "load")
    result = validate(data, S)
    assert parsed == []  # not one EXIF block parsed
    assert "camera_make" not in result.facts["exif"]
    assert any("EXIF block" in d for d in result.facts["exif_dropped"])


def test_an_exif_value_is_cut_to_what_a_record_may_hold() -> None:
    exif = Image.Exif()
    exif[0x010F] = "M" * 200_000  # within the block limit, far over a record's share
    data = encode(Image.new("RGB", (320, 320), 40), "PNG", exif=exif.tobytes())
    result = validate(data, S)
    assert result.facts["exif"]["camera_make"] == "M" * MAX_TEXT


def _png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def test_a_jpeg_padded_with_fill_bytes_is_refused_before_pillow_walks_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = encode(photo("coffee"), "JPEG", quality=80)
    assert _padding(real) == 0
    # A few fill bytes before a marker are legal and kept.
    assert validate(real[:2] + b"\xff" * 16 + real[2:], S)
    # Stray bytes after the first segment count too.
    after_app0 = 4 + int.from_bytes(real[4:6], "big")
    assert _padding(real[:after_app0] + b"junk" + real[after_app0:]) == 4
    padded = real[:2] + b"\xff" * (4 * 1024 * 1024) + real[2:]
    opened = _calls(monkeypatch, Image, "open")
    caught = _rejected(padded, "too_much_padding")
    assert "4,194,304 bytes of padding" in caught.reason
    assert opened == []  # Pillow never opened it: it took 3 s for this one, 70 s for 49 MB


def _padding(data: bytes) -> int:
    return jpeg_padding(data, MAX_JPEG_PADDING, MAX_JPEG_SEGMENTS).padding


def _scans(data: bytes) -> int:
    return jpeg_scans(data, MAX_SCANS, MAX_JPEG_SEGMENTS).scans


def test_a_png_of_endless_empty_chunks_is_refused_before_it_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = encode(photo("coffee"), "PNG")
    assert png_chunks(real, MAX_PNG_CHUNKS) < 100
    chunked = real[:33] + _png_chunk(b"tEXt") * (MAX_PNG_CHUNKS + 10) + real[33:]
    opened = _calls(monkeypatch, Image, "open")
    counted = _calls(monkeypatch, decode, "png_chunks")
    _rejected(chunked, "too_many_chunks")
    assert opened == []  # Pillow never read a chunk header
    assert counted == [MAX_PNG_CHUNKS + 1]  # counted to the cap, not to IEND


def test_a_tiff_the_decoder_cannot_read_is_refused_with_a_stable_reason() -> None:
    import io

    import numpy as np
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((64, 64, 3), dtype="f4"), photometric="rgb")
    caught = _rejected(buf.getvalue(), "unsupported_layout")
    assert "0x" not in caught.reason  # no object address: the same reason every time
    # A TIFF header with no readable directory is damage, said the same way every time.
    caught = _rejected(buf.getvalue()[:8] + b"\x00" * 2000, "corrupt_header")
    assert "0x" not in caught.reason


def test_a_motion_photo_counts_the_scans_of_its_jpeg_only() -> None:
    """A motion photo is a JPEG with its MP4 after the EOI: the video's bytes hold FF DA by
    chance (about once per 64 KiB, so 150 in a 10 MB clip), and no decoder reads them."""
    jpeg = encode(photo("coffee"), "JPEG", quality=90, progressive=True)
    noise = np.random.default_rng(1).integers(0, 256, (150, 500), dtype=np.uint8)
    video = b"".join(b"\xff\xda" + bytes(row) for row in noise)  # the chance, condensed
    assert video.count(b"\xff\xda") > MAX_SCANS
    motion = jpeg + b"\0\0\0\x18ftypmp42" + video
    assert _scans(motion) == _scans(jpeg) < 20
    assert validate(motion, S).facts["format"] == "JPEG"
    # An EXIF thumbnail's scans sit inside its APP1 segment: they are not the image's.
    exif = Image.Exif()
    exif[0x010F] = "camera"
    thumb = encode(Image.new("RGB", (40, 30), 9), "JPEG", progressive=True)
    with_thumb = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(thumb) + 2) + thumb + jpeg[2:]
    assert _scans(with_thumb) == _scans(jpeg)
    # Stray bytes between segments do not hide the scans after them (libjpeg skips them).
    first_scan = jpeg.index(b"\xff\xda")
    junk = jpeg[:first_scan] + b"junk" + jpeg[first_scan:]
    assert _scans(junk) == _scans(jpeg)
