"""A crawler's export, read for `pixelfleet submit --urls FILE`.

Three shapes, told apart by the file's first non-blank line:
  - JSON Lines: one object a line with `url` and optional `page_url`, `title`, `keywords`;
  - CSV with a header row naming a `url` column (and optionally the other three);
  - anything else: one URL a line (`#` starts a comment).
`keywords` is a list in JSON, and `;`- or `,`-separated text in CSV. A line that cannot be
used is reported with its number and reason; the others are kept. A file that is not UTF-8
is one problem and no items: its bytes cannot be read as the URLs the crawler meant.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from schemas.events import Hints

MAX_URL = 4096  # the contract's limit on source.url


@dataclass(frozen=True)
class UrlItem:
    line: int
    url: str
    hints: Hints


@dataclass
class UrlList:
    items: list[UrlItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line N: why"
    repeats: int = 0  # the same URL again, dropped


def url_image_id(url: str) -> str:
    """The id of a URL source: the same URL is the same image, whoever submits it."""
    return "url-" + hashlib.sha256(url.encode()).hexdigest()[:40]


def _keywords(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(k).strip() for k in value if str(k).strip()]
    if isinstance(value, str):
        separator = ";" if ";" in value else ","
        return [k.strip() for k in value.split(separator) if k.strip()]
    return []


def _text(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None


def _check(url: str) -> str | None:
    if not url.lower().startswith(("http://", "https://")):
        return "not an http(s) URL"
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    return None


def _lower_scheme(url: str) -> str:
    """HTTPS://Host/Path -> https://Host/Path: the event contract's pattern is `^https?://`,
    and only the scheme is case-insensitive (a path or query may not be)."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest


def _decode(raw: bytes) -> tuple[str, str | None]:
    """The file's text, or a problem when it is not UTF-8 (a spreadsheet's "CSV" is often
    latin-1 or cp1252; guessing which would submit wrong URLs without a word)."""
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8"), None
    except UnicodeDecodeError as exc:
        at = start + exc.start  # an offset in the file, as a hex editor shows it
        line = raw.count(b"\n", 0, at) + 1
        return "", f"line {line}: not UTF-8 at byte {at}; save the file as UTF-8"


def read_url_list(path: Path) -> UrlList:
    text, problem = _decode(path.read_bytes())
    if problem:
        return UrlList(problems=[problem])
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    rows: list[tuple[int, dict[str, object] | None, str]] = []  # line, fields, problem
    if first.startswith("{"):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((number, None, f"not JSON: {exc.msg}"))
                continue
            if not isinstance(value, dict):
                rows.append((number, None, "not a JSON object"))
                continue
            rows.append((number, value, ""))
    elif "url" in [c.strip().lower() for c in next(csv.reader([first]))]:
        reader = csv.DictReader(io.StringIO(text))
        # The header is the first non-blank row: DictReader would take a blank first line
        # for an empty header and then find no url in any row. Reading past the blanks with
        # its own csv reader keeps line_num counting the file's lines.
        header = next((row for row in reader.reader if any(c.strip() for c in row)), [])
        reader.fieldnames = [name.strip().lower() for name in header]
        for record in reader:
            rows.append((reader.line_num, dict(record), ""))
    else:
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                rows.append((number, {"url": stripped}, ""))
    return _collect(rows)


def _collect(rows: list[tuple[int, dict[str, object] | None, str]]) -> UrlList:
    out = UrlList()
    seen: set[str] = set()
    for number, fields, problem in rows:
        if fields is None:
            out.problems.append(f"line {number}: {problem}")
            continue
        url = str(fields.get("url") or "").strip()
        why = "no url" if not url else _check(url)
        if why:
            out.problems.append(f"line {number}: {why}")
            continue
        url = _lower_scheme(url)
        if url in seen:
            out.repeats += 1
            continue
        seen.add(url)
        hints = Hints(
            title=_text(fields.get("title")),
            keywords=_keywords(fields.get("keywords")),
            page_url=_text(fields.get("page_url")),
            file_name=url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None,
        )
        out.items.append(UrlItem(number, url, hints))
    return out
