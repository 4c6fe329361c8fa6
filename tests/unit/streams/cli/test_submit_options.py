"""`submit` refuses options it could not honour before it talks to Kafka or S3."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from streams.cli import main


def test_an_image_id_for_a_url_is_refused_not_ignored(tmp_path: Path) -> None:
    urls = tmp_path / "one.txt"
    urls.write_text("https://images.example/a.jpg\n")
    result = CliRunner().invoke(main.cli, ["submit", "--urls", str(urls), "--image-id", "mine"])
    assert result.exit_code == 1
    assert "--image-id names an uploaded file" in result.output


def test_a_profile_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    result = CliRunner().invoke(main.cli, ["submit", str(photo), "--profile", "glow"])
    assert result.exit_code == 2
    assert "'glow' is not one of" in result.output
