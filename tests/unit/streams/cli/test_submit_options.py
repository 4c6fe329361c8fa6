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


def test_a_timeout_without_wait_is_a_usage_error(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    result = CliRunner().invoke(main.cli, ["submit", str(photo), "--timeout", "5"])
    assert result.exit_code == 2
    assert "--timeout is how long --wait waits; give --wait too" in result.output


def test_nothing_to_submit_says_what_was_empty(tmp_path: Path) -> None:
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    in_folder = CliRunner().invoke(main.cli, ["submit", str(tmp_path)])
    assert in_folder.exit_code == 1
    assert f"nothing to submit: {tmp_path} hold no file (hidden files are skipped)" in (
        in_folder.output
    )
    bare = CliRunner().invoke(main.cli, ["submit"])
    assert bare.exit_code == 1
    assert "name files, folders or s3://bucket/prefix, or --urls FILE" in bare.output
