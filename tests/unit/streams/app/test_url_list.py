"""A crawler's export in each of its shapes; bad lines named, the rest kept."""

from __future__ import annotations

import re
from pathlib import Path

from streams.app.url_list import read_url_list, url_image_id


def test_one_url_a_line_with_comments_blanks_repeats_and_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_text(
        "# export of 2026-12-01\n"
        "https://cdn.shop.test/rings/gold.jpg\n"
        "\n"
        "ftp://cdn.shop.test/x.jpg\n"
        "https://cdn.shop.test/rings/gold.jpg\n"
        "http://img.test/a/b/pendant.webp?w=800\n"
    )
    read = read_url_list(path)
    assert [(i.line, i.url) for i in read.items] == [
        (2, "https://cdn.shop.test/rings/gold.jpg"),
        (6, "http://img.test/a/b/pendant.webp?w=800"),
    ]
    assert read.problems == ["line 4: not an http(s) URL"]
    assert read.repeats == 1
    assert read.items[1].hints.file_name == "pendant.webp"


def test_csv_with_hints(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "URL,page_url,title,keywords\n"
        'https://cdn.shop.test/1.jpg,https://shop.test/p/1,"Gold ring, 18k",gold;ring\n'
        ",https://shop.test/p/2,no url here,\n"
        'https://cdn.shop.test/3.jpg,,,"pearl, necklace"\n'
    )
    read = read_url_list(path)
    first, third = read.items
    assert first.url == "https://cdn.shop.test/1.jpg"
    assert first.hints.title == "Gold ring, 18k"
    assert first.hints.page_url == "https://shop.test/p/1"
    assert first.hints.keywords == ["gold", "ring"]
    assert third.hints.keywords == ["pearl", "necklace"] and third.hints.title is None
    assert read.problems == ["line 3: no url"]


def test_json_lines_with_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(
        '{"url": "https://cdn.shop.test/a.jpg", "title": "A", "keywords": ["x", "y"]}\n'
        "{not json\n"
        '["a list"]\n'
        '{"url": "https://cdn.shop.test/b.jpg", "page_url": "https://shop.test/b"}\n'
    )
    read = read_url_list(path)
    assert [i.url for i in read.items] == [
        "https://cdn.shop.test/a.jpg",
        "https://cdn.shop.test/b.jpg",
    ]
    assert read.items[0].hints.keywords == ["x", "y"]
    assert [p.split(":")[0] for p in read.problems] == ["line 2", "line 3"]


def test_the_same_url_is_the_same_image() -> None:
    url = "https://cdn.shop.test/rings/gold.jpg"
    assert url_image_id(url) == url_image_id(url)
    assert url_image_id(url).startswith("url-") and len(url_image_id(url)) == 44
    assert url_image_id(url) != url_image_id(url + "?v=2")


def test_csv_after_blank_lines_keeps_its_rows_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("\n   \r\nurl,title\nhttps://cdn.shop.test/1.jpg,One\n,no url\n")
    read = read_url_list(path)
    assert [(i.line, i.url, i.hints.title) for i in read.items] == [
        (4, "https://cdn.shop.test/1.jpg", "One")
    ]
    assert read.problems == ["line 5: no url"]


def test_a_latin1_file_is_one_problem_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("url,title\nhttps://cdn.shop.test/1.jpg,Café\n".encode("latin-1"))
    read = read_url_list(path)
    assert read.items == []
    # "url,title\n" is 10 bytes, the URL and comma 28, "Caf" 3: é is at offset 41.
    assert read.problems == ["line 2: not UTF-8 at byte 41; save the file as UTF-8"]


def test_a_utf8_bom_is_not_part_of_the_first_url(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_bytes("\ufeffhttps://cdn.shop.test/é.jpg\n".encode())
    read = read_url_list(path)
    assert [i.url for i in read.items] == ["https://cdn.shop.test/é.jpg"]


def test_an_upper_case_scheme_is_lowered_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_text(
        "HTTPS://CDN.shop.test/Rings/Gold.JPG?Size=L\n"
        "Http://img.test/A.webp\n"
        "https://CDN.shop.test/Rings/Gold.JPG?Size=L\n"
    )
    read = read_url_list(path)
    assert [i.url for i in read.items] == [
        "https://CDN.shop.test/Rings/Gold.JPG?Size=L",
        "http://img.test/A.webp",
    ]
    assert read.repeats == 1  # the same URL once its scheme is lowered
    assert all(re.match(r"^https?://", i.url) for i in read.items)  # the event's pattern
