"""The demo's HTML report: one self-contained folder (the page and local copies of the
images it shows), readable without a server."""

from __future__ import annotations

import html
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas.events import DeadLetter, ImageRecord, ObjectRef
from streams.demo.summary import Summary

SHOWN_VARIANT = "preview"


class ObjectReader(Protocol):
    def __call__(self, ref: ObjectRef) -> bytes: ...


@dataclass(frozen=True)
class Entry:
    """One submitted file and what became of it."""

    image_id: str
    file: str
    shows: str
    source: ObjectRef
    record: ImageRecord | None
    letter: DeadLetter | None


def _e(value: object) -> str:
    return html.escape(str(value))


def _copy(read: ObjectReader, ref: ObjectRef, folder: Path, name: str) -> str:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(read(ref))
    return posixpath.join(folder.name, name)


def _metrics(values: Mapping[str, object] | None, keys: tuple[str, ...]) -> str:
    if not values:
        return ""
    cells = "".join(
        f"<span><b>{_e(k)}</b> {_e(values[k])}</span>" for k in keys if values.get(k) is not None
    )
    return f'<div class="metrics">{cells}</div>'


def _card(entry: Entry, read: ObjectReader, files: Path) -> str:
    record = entry.record
    status = record.status if record else "missing"
    head = (
        f'<div class="head"><span class="file">{_e(entry.file)}</span>'
        f'<span class="pill {_e(status)}">{_e(status)}</span></div>'
        f'<div class="shows">{_e(entry.shows)}</div>'
    )
    if record is None or status != "done":
        reason = entry.letter.reason if entry.letter else "no record"
        where = f"{entry.letter.stage}: {entry.letter.reason_class}" if entry.letter else ""
        return (
            f'<article class="card rejected">{head}<div class="reason"><b>{_e(where)}</b>'
            f"<p>{_e(reason)}</p></div></article>"
        )
    original = record.original or {}
    source_key = f"{entry.image_id}/original{Path(entry.file).suffix.lower()}"
    pictures = [
        (
            "original",
            _copy(read, entry.source, files, source_key),
            f"{original.get('width')}x{original.get('height')} {original.get('format', '')}, "
            f"{int(original.get('bytes') or 0) / 1024:.0f} KB",
        )
    ]
    for variant in record.variants:
        if variant.variant != SHOWN_VARIANT:
            continue
        name = f"{entry.image_id}/{variant.variant}.{variant.format}"
        pictures.append(
            (
                f"{variant.variant} {variant.format}",
                _copy(read, variant.object, files, name),
                f"{variant.width}x{variant.height}, {variant.bytes / 1024:.0f} KB, "
                f"q {variant.quality}, {variant.compression_ratio or 0:.1f}:1",
            )
        )
    figures = "".join(
        f'<figure><img src="{_e(src)}" alt="{_e(label)}" loading="eager">'
        f"<figcaption><b>{_e(label)}</b><br>{_e(caption)}</figcaption></figure>"
        for label, src, caption in pictures
    )
    category = record.category
    evidence = ", ".join(category.evidence[:4]) if category else ""
    restore_text = _restore_text(record.restore or {})
    enhancement = record.enhancement or {}
    facts = (
        f"<dl><dt>category</dt><dd>{_e(category.name if category else '-')}"
        f" <small>{_e(evidence)}</small></dd><dt>route</dt><dd>{_e(' > '.join(record.route))}</dd>"
        f"<dt>restore</dt><dd>{_e(restore_text)}</dd>"
        f"<dt>enhance</dt><dd>{_e(enhancement.get('profile', '-'))}"
        f" <small>{_e(', '.join(enhancement.get('applied') or []))}</small></dd>"
        f"<dt>variants</dt><dd>{len(record.variants)}</dd></dl>"
    )
    quality_keys = ("sharpness", "noise", "contrast", "brightness", "resolution_score")
    before = _metrics(record.quality, quality_keys)
    after = _metrics(enhancement.get("after"), quality_keys)
    quality = (
        f'<div class="quality"><div><h4>measured at validate</h4>{before}</div>'
        + (f"<div><h4>after enhance</h4>{after}</div>" if after else "")
        + "</div>"
    )
    return (
        f'<article class="card">{head}<div class="pictures">{figures}</div>'
        f"{facts}{quality}</article>"
    )


def _restore_text(restore: Mapping[str, object]) -> str:
    if not restore.get("model"):
        return str(restore.get("outcome", "not needed"))
    before = restore.get("before") or {}
    after = restore.get("after") or {}
    assert isinstance(before, dict) and isinstance(after, dict)
    if "noise" in before and "noise" in after:
        change = f"noise sigma {before['noise']} -> {after['noise']}"
    else:
        change = f"{before.get('width')}x{before.get('height')} -> "
        change += f"{after.get('width')}x{after.get('height')}"
    return (
        f"{restore.get('outcome')}: {change} ({restore.get('model')} on "
        f"{restore.get('device')}, {restore.get('tiles')} tiles, {restore.get('seconds')} s)"
    )


def _latency_chart(summary: Summary) -> str:
    """p50 and p95 seconds per stage as horizontal bars (inline SVG, no script)."""
    rows = [s for s in summary.stages if s.p95_s is not None]
    if not rows:
        return ""
    top = max(s.p95_s or 0 for s in rows) or 1.0
    bars = []
    for i, s in enumerate(rows):
        y = 6 + i * 40
        w95, w50 = 170 * (s.p95_s or 0) / top, 170 * (s.p50_s or 0) / top
        bars.append(
            f'<text x="0" y="{y + 17}" class="label">{_e(s.stage)}</text>'
            f'<rect x="84" y="{y}" width="{max(w95, 1):.1f}" height="26" rx="3" class="p95"/>'
            f'<rect x="84" y="{y + 7}" width="{max(w50, 1):.1f}" height="12" rx="2" class="p50"/>'
            f'<text x="{92 + w95:.1f}" y="{y + 11}" class="value">p50 {s.seconds()[0]} s</text>'
            f'<text x="{92 + w95:.1f}" y="{y + 24}" class="value">p95 {s.seconds()[1]} s</text>'
        )
    height = 12 + 40 * len(rows)
    return f'<svg viewBox="0 0 340 {height}" class="chart">{"".join(bars)}</svg>'


def _summary_table(summary: Summary) -> str:
    rows = "".join(
        f"<tr><td>{_e(s.stage)}</td><td>{s.processed}</td><td>{s.rejected}</td>"
        f"<td>{s.seconds()[0]}</td><td>{s.seconds()[1]}</td></tr>"
        for s in summary.stages
    )
    return (
        "<table><thead><tr><th>stage</th><th>processed</th><th>rejected</th><th>p50 s</th>"
        f"<th>p95 s</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _tiles(summary: Summary) -> str:
    tiles = [
        ("images", summary.images),
        ("done", summary.status.get("done", 0)),
        ("rejected", summary.status.get("rejected", 0) + summary.status.get("failed", 0)),
        ("variants", summary.variants),
        ("bytes in → out", f"{summary.bytes_in / 1e6:.1f} → {summary.bytes_out / 1e6:.1f} MB"),
        ("compression", f"{summary.ratio:.1f}:1"),
        ("duplicates", sum(len(g) for g in summary.duplicates)),
    ]
    return "".join(f"<div class='tile'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in tiles)


def write_report(
    folder: Path, summary: Summary, entries: list[Entry], read: ObjectReader, title: str
) -> Path:
    """Write index.html and the images it shows into `folder`; return the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = folder / "files"
    cards = "".join(_card(entry, read, files) for entry in entries)
    counters = "".join(
        f"<li><b>{_e(k)}</b> {v}</li>"
        for k, v in [*summary.routes.most_common(), *summary.restore.most_common()]
    )
    letters = "".join(f"<li>{_e(k)}: {v}</li>" for k, v in summary.dead_letters.most_common())
    dupes = "".join(f"<li>{_e(' = '.join(g))}</li>" for g in summary.duplicates)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{_e(title)}</h1><div class="tiles">{_tiles(summary)}</div></header>
<section class="overview"><div><h2>Stages</h2>{_summary_table(summary)}</div>
<div><h2>Latency per stage</h2>{_latency_chart(summary)}</div>
<div><h2>Routes and restore</h2><ul>{counters}</ul>
<h2>Dead letters</h2><ul>{letters or "<li>none</li>"}</ul>
<h2>Duplicates (pHash)</h2><ul>{dupes or "<li>none</li>"}</ul></div></section>
<main>{cards}</main>
<script>
// Marks the page with how many pictures failed to load, for headless checks.
addEventListener("load", () => {{
  const pictures = [...document.images];
  document.body.dataset.images = pictures.length;
  document.body.dataset.broken = pictures.filter(i => !i.complete || !i.naturalWidth).length;
}});
</script></body></html>
"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


_CSS = """
:root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f6f7f9; --ok:#12805c;
  --bad:#b42318; --accent:#3b5bdb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color:var(--ink); background:var(--bg); }
header { padding:24px 32px 8px; }
h1 { margin:0 0 16px; font-size:22px; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted);
  margin:0 0 8px; }
h4 { margin:0 0 4px; font-size:12px; color:var(--muted); font-weight:600; }
.tiles { display:flex; flex-wrap:wrap; gap:12px; }
.tile { background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px 16px;
  min-width:120px; }
.tile b { display:block; font-size:20px; }
.tile span { color:var(--muted); font-size:12px; }
.overview { display:grid; grid-template-columns:repeat(auto-fit, minmax(320px, 1fr)); gap:24px;
  padding:16px 32px; }
.overview > div { background:#fff; border:1px solid var(--line); border-radius:10px;
  padding:16px; }
.overview ul { margin:0 0 12px; padding-left:18px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:right; padding:4px 8px; border-bottom:1px solid var(--line); }
th:first-child, td:first-child { text-align:left; }
.chart { width:100%; }
.chart .label { font-size:13px; fill:var(--ink); }
.chart .value { font-size:10px; fill:var(--muted); }
.chart .p95 { fill:#c5d0fa; }
.chart .p50 { fill:var(--accent); }
main { display:grid; grid-template-columns:repeat(auto-fill, minmax(560px, 1fr)); gap:20px;
  padding:8px 32px 40px; }
.card { background:#fff; border:1px solid var(--line); border-radius:12px; padding:16px; }
.card.rejected { border-color:#f1c0bb; background:#fffafa; }
.head { display:flex; justify-content:space-between; align-items:center; gap:8px; }
.file { font-weight:600; word-break:break-all; }
.shows { color:var(--muted); font-size:12px; margin:2px 0 10px; }
.pill { border-radius:999px; padding:2px 10px; font-size:12px; font-weight:600; color:#fff;
  background:var(--muted); }
.pill.done { background:var(--ok); }
.pill.rejected, .pill.failed, .pill.missing { background:var(--bad); }
.pictures { display:grid; grid-template-columns:repeat(4, 1fr); gap:8px; }
figure { margin:0; }
figure img { width:100%; height:120px; object-fit:contain; border-radius:6px;
  background:repeating-conic-gradient(#eef0f3 0 25%, #fff 0 50%) 0 0/16px 16px; }
figcaption { font-size:11px; color:var(--muted); margin-top:4px; }
dl { display:grid; grid-template-columns:80px 1fr; gap:2px 12px; margin:12px 0 8px; }
dt { color:var(--muted); }
dd { margin:0; }
dd small { color:var(--muted); }
.quality { display:flex; gap:24px; flex-wrap:wrap; }
.metrics { display:flex; flex-wrap:wrap; gap:4px 12px; font-size:12px; }
.metrics b { color:var(--muted); font-weight:500; }
.reason p { margin:4px 0 0; }
"""
