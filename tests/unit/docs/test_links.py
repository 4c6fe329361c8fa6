"""The README and the pages under docs/ and bench/: no dead relative link, a short README,
and no path that exists only on one person's machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
README_MAX_LINES = 180

# The pages whose links are checked: the README, the benchmarks' page and every docs page.
PAGES = sorted([README, ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])

# Folders that are not part of the repository's own text (environments, build output).
NOT_OURS = {".git", ".venv", "venv", "build", "dist", "node_modules", "__pycache__"}

# Inline links and images: [text](target) or ![alt](target "title").
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Reference definitions: [name]: target
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:")
# Absolute paths of the machines this project is worked on.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home)/")


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _targets(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def _markdown_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(
            part in NOT_OURS or part.endswith(".egg-info")
            for part in path.relative_to(ROOT).parts[:-1]
        )
    )


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_pages_exist() -> None:
    assert README.is_file()
    assert (ROOT / "docs" / "architecture.md").is_file()
    assert len(PAGES) > 2, "docs/ holds no page"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    dead: list[str] = []
    for target in _targets(page):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(ROOT):
            dead.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            dead.append(f"{target} (no such file or folder)")
    assert dead == [], f"{_name(page)} links to: {', '.join(dead)}"


def test_the_readme_stays_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it under {README_MAX_LINES} and move detail to docs/"
    )


def test_no_markdown_file_names_a_path_of_this_machine() -> None:
    found = [
        f"{_name(path)}:{number}: {line.strip()}"
        for path in _markdown_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert found == [], "absolute paths of one machine:\n" + "\n".join(found)


def test_the_link_finder_sees_links() -> None:
    text = (
        "See [a](docs/a.md#part), ![b](b.jpg), [c](https://x.org) and `[d](no.md)`.\n"
        "```\n[e](code.md)\n```\n[f]: ref.md\n"
    )
    prose = _prose(text)
    assert INLINE_LINK.findall(prose) == ["docs/a.md#part", "b.jpg", "https://x.org"]
    assert REFERENCE_LINK.findall(prose) == ["ref.md"]
    assert MACHINE_PATH.search("see /work/main/README.md")
    assert not MACHINE_PATH.search("~/.local/share/pixelfleet and deploy/work/x")
