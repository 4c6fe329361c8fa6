"""`submit` with a fake Submitter: what it sends for s3:// objects, and what it prints when
a later file is refused after earlier ones were sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from schemas.events import Hints, ImageSubmitted, ObjectRef, Source
from streams.cli import fleet, main


class _Submitter:
    """Records every call; refuses the file named `refused.jpg` as the real one refuses an
    event the fleet could not read (a ValueError, before anything is stored)."""

    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self, _settings: object) -> None:
        type(self).calls = []

    def objects(self, bucket: str, prefix: str) -> Iterator[str]:
        yield from (f"{prefix}a b.jpg", f"{prefix}c.jpg")

    def _event(self, image_id: str, hints: Hints | None) -> ImageSubmitted:
        source = Source(object=ObjectRef(bucket="bkt", key=image_id))
        return ImageSubmitted(
            image_id=image_id, source=source, submitted_at="now", hints=hints or Hints()
        )

    def upload_and_submit(self, path: Path, **kwargs: Any) -> ImageSubmitted:
        if path.name == "refused.jpg":
            raise ValueError(f"{path.name}: the fleet could not read this event")
        self.calls.append(("file", kwargs))
        return self._event(kwargs["image_id"], kwargs.get("hints"))

    def submit_object(self, bucket: str, key: str, **kwargs: Any) -> ImageSubmitted:
        self.calls.append(("object", kwargs))
        return self._event(key.replace("/", "-").replace(" ", "-"), kwargs.get("hints"))

    def flush(self, timeout_s: float = 60) -> None:
        pass


@pytest.fixture(autouse=True)
def _fake(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIXELFLEET_CONFIG", "PIXELFLEET_CATALOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fleet, "Submitter", _Submitter)


def test_an_object_gets_the_title_and_keywords_given() -> None:
    args = ["submit", "s3://bkt/shop/", "--title", "gold ring", "--keyword", "ring"]
    result = CliRunner().invoke(main.cli, [*args, "--keyword", "gold"])
    assert result.exit_code == 0, result.stderr
    hints = [kwargs["hints"] for kind, kwargs in _Submitter.calls if kind == "object"]
    assert hints == [Hints(title="gold ring", keywords=["ring", "gold"])] * 2
    assert result.stdout.split() == ["shop-a-b.jpg", "shop-c.jpg"]


def test_ids_already_sent_are_printed_before_a_later_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"first")
    (tmp_path / "b.jpg").write_bytes(b"second")
    (tmp_path / "refused.jpg").write_bytes(b"third")
    result = CliRunner().invoke(main.cli, ["submit", str(tmp_path)])
    assert result.exit_code == 1
    sent = [kwargs["image_id"] for _kind, kwargs in _Submitter.calls]
    assert len(sent) == 2 and result.stdout.split() == sent
    assert result.stderr.strip() == "error: refused.jpg: the fleet could not read this event"
