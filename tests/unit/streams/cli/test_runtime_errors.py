"""Ordinary mistakes at run time (a fleet never initialised, Kafka or S3 down, a file that
cannot be read) end in one `error:` line with a hint and exit code 1; click's own exits,
Ctrl-C and real bugs are left alone."""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest
import urllib3
from click.testing import CliRunner, Result
from confluent_kafka import KafkaError, KafkaException
from minio.error import S3Error

from streams.cli import main
from streams.io.catalog_client import CatalogUnavailableError
from streams.io.failures import OperationError
from streams.io.topic_reader import IncompleteReadError

# What the `boom` command raises; each test sets it.
_raise: list[Callable[[], BaseException]] = []


@click.command()
def boom() -> None:
    raise _raise[0]()


@pytest.fixture(autouse=True)
def _boom_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(main.COMMANDS, "boom", f"{__name__}:boom")
    monkeypatch.delenv("PIXELFLEET_DEBUG", raising=False)
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    monkeypatch.setenv("PIXELFLEET_KAFKA_BOOTSTRAP", "kafka.test:9092")
    monkeypatch.setenv("PIXELFLEET_S3_ENDPOINT", "http://s3.test:9000")
    _raise.clear()


def _run(make: Callable[[], BaseException]) -> Result:
    _raise.append(make)
    return CliRunner().invoke(main.cli, ["boom"])


def _error(make: Callable[[], BaseException]) -> str:
    result = _run(make)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def _s3_error(code: str, bucket: str) -> S3Error:
    return S3Error(
        None,  # type: ignore[arg-type]  # the HTTP response; the message does not use it
        code,
        "The specified bucket does not exist",
        f"/{bucket}",
        "request-1",
        "host-1",
        bucket_name=bucket,
    )


def test_kafka_unreachable_names_the_bootstrap() -> None:
    error = KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Broker transport failure")
    line = _error(lambda: KafkaException(error))
    assert "Broker transport failure" in line
    assert line.endswith("is Kafka running at kafka.test:9092?")


def test_an_unknown_topic_says_run_init() -> None:
    line = _error(lambda: KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
    assert "UNKNOWN_TOPIC_OR_PART" in line
    assert line.endswith("run `pixelfleet init` or check PIXELFLEET_TOPIC_PREFIX")


def test_a_kafka_exception_with_a_sentence_is_said_as_it_is() -> None:
    sentence = "topic p.metadata does not exist; run `pixelfleet init`"
    assert _error(lambda: KafkaException(sentence)) == f"error: {sentence}"


def test_no_such_bucket_says_run_init() -> None:
    line = _error(lambda: _s3_error("NoSuchBucket", "pixelfleet-incoming"))
    assert line.startswith("error: S3 NoSuchBucket: The specified bucket does not exist")
    assert "(pixelfleet-incoming)" in line and "run `pixelfleet init`" in line


def test_other_s3_errors_have_no_init_hint() -> None:
    line = _error(lambda: _s3_error("AccessDenied", "b"))
    assert line.startswith("error: S3 AccessDenied") and "init" not in line


def test_s3_unreachable_names_the_endpoint() -> None:
    def refused() -> BaseException:
        reason = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
        return urllib3.exceptions.MaxRetryError(None, "/b", reason)  # type: ignore[arg-type]

    line = _error(refused)
    assert line.endswith("is it running at http://s3.test:9000?")
    assert "NewConnectionError" in line


def test_an_unreadable_file_is_named() -> None:
    line = _error(lambda: PermissionError(13, "Permission denied", "/data/a.jpg"))
    assert line == "error: /data/a.jpg: Permission denied"


def test_an_operation_error_is_its_message() -> None:
    message = "3 events were not acknowledged by Kafka in 30 s"
    assert _error(lambda: OperationError(message)) == f"error: {message}"


def test_a_read_cut_short_is_its_message() -> None:
    """A strict read that did not reach the topic's end (a slow broker): said, no trace."""
    cut = "px.metadata was not read to its end in 60 s; nothing was changed: run it again"
    assert _error(lambda: IncompleteReadError(cut)) == f"error: {cut}"


@pytest.mark.parametrize(
    "make",
    [
        lambda: RuntimeError("dictionary changed size during iteration"),
        lambda: UnicodeDecodeError("utf-8", b"caf\xe9", 3, 4, "invalid byte"),
    ],
)
def test_a_plain_runtime_or_decode_error_is_a_bug_with_its_traceback(
    make: Callable[[], BaseException],
) -> None:
    """Said as one line, these hid bugs: only failures written for the user are."""
    result = _run(make)
    assert isinstance(result.exception, type(make()))
    assert "error: " not in result.output


def test_an_unanswering_catalog() -> None:
    line = _error(lambda: CatalogUnavailableError("http://***@cat.test: refused"))
    assert line == "error: the catalog could not be asked: http://***@cat.test: refused"


@pytest.mark.parametrize(
    ("make", "code", "said"),
    [
        (lambda: click.UsageError("no such thing"), 2, "Error: no such thing"),
        (lambda: click.ClickException("said by the command"), 1, "Error: said by the command"),
        (click.Abort, 1, "Aborted!"),
        (lambda: SystemExit(3), 3, ""),
        (lambda: click.exceptions.Exit(4), 4, ""),
        (KeyboardInterrupt, 1, "Aborted!"),  # click's main turns Ctrl-C into Abort
    ],
)
def test_click_exits_and_ctrl_c_pass_through(
    make: Callable[[], BaseException], code: int, said: str
) -> None:
    result = _run(make)
    assert result.exit_code == code
    assert "error: " not in result.output
    assert said in result.output


def test_a_bug_keeps_its_traceback() -> None:
    result = _run(lambda: KeyError("missing"))
    assert isinstance(result.exception, KeyError)
    assert "error: " not in result.output


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_DEBUG", "1")
    result = _run(lambda: OperationError("not acknowledged"))
    assert isinstance(result.exception, OperationError)
    assert "error: " not in result.output


def test_debug_0_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELFLEET_DEBUG", "0")
    assert _error(lambda: OperationError("not acknowledged")) == "error: not acknowledged"
