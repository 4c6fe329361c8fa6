"""Errors said to a person: one line for a mistake (broken settings, a fleet never
initialised, a broker that is down, an unreadable file), with the next step where there is
an obvious one; None for a bug, which keeps its traceback. Settings errors name the setting
or file and what is wrong there, never the value given (pydantic quotes the input, and a
config line or the input of a webhook subscription or of the S3 section holds a secret).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from types import CodeType, FrameType, TracebackType
from typing import Any

from pydantic import ValidationError

DEBUG_ENV = "PIXELFLEET_DEBUG"
ENV_PREFIX = "PIXELFLEET_"  # FleetSettings' env_prefix, without importing the settings

# librdkafka's codes for "the broker is not there" and "the topic is not there".
_KAFKA_UNREACHABLE = {"_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_TIMED_OUT"}
_KAFKA_NO_TOPIC = {"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"}
_INIT_HINT = "run `pixelfleet init`"


def settings_problem(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = [
        f"  {'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return "the settings are not valid:\n" + "\n".join(lines)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def describe(exc: Exception) -> str | None:
    """What went wrong, in words for the person at the terminal; None for a bug."""
    return settings_error(exc) or _runtime_error(exc)


# -- settings: which file or variable, and what is wrong there; never the value


def settings_error(exc: Exception) -> str | None:
    """A settings error in one line (a model that does not validate: one line per field),
    or None when `exc` did not come from reading the settings."""
    # Only the settings' own models: another model's ValidationError is a bug.
    if isinstance(exc, ValidationError) and exc.title.endswith("Settings"):
        return settings_problem(exc)
    env_error = _type("pydantic_settings", "SettingsError")
    if env_error and isinstance(exc, env_error):
        return _env_problem(exc)
    loading = _frame_of(exc, "streams.config.settings", "load_config_file")
    if loading is not None:
        path = loading.f_locals.get("path") or os.environ.get("PIXELFLEET_CONFIG", "")
        return f"{path}: {_file_problem(exc, str(path))}"
    # The minio client refuses an endpoint it cannot use (a path, a bad port) when built.
    if isinstance(exc, ValueError) and _frame_of(exc, "streams.io.clients", "s3"):
        from streams.io.catalog_client import redact_url

        endpoint = redact_url(_setting("s3", "endpoint"))
        return f"s3.endpoint {endpoint}: {exc}; give scheme://host:port and nothing after it"
    return None


def _file_problem(exc: Exception, path: str) -> str:
    """What is wrong with the config file: where, for a syntax error, but never the text of
    the line (pyyaml prints it, and the line may hold a secret)."""
    marked = _type("yaml", "MarkedYAMLError")
    if marked and isinstance(exc, marked):
        return _yaml_problem(exc)
    yaml_error = _type("yaml", "YAMLError")
    if yaml_error and isinstance(exc, yaml_error):
        return "not valid YAML"
    toml_error = _type("tomllib", "TOMLDecodeError")
    if toml_error and isinstance(exc, toml_error):
        # tomllib says "<what> (at line L, column C)": put the place first, like YAML's.
        found = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", str(exc))
        return f"{found[2]}: {found[1]}" if found else str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at byte {exc.start}; save the file as UTF-8"
    if isinstance(exc, FileNotFoundError):
        return "no such file (named by PIXELFLEET_CONFIG)"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).removeprefix(f"{path}: ")


def _yaml_problem(exc: Any) -> str:
    problem_mark, context_mark = exc.problem_mark, exc.context_mark
    where = _mark(problem_mark or context_mark)
    said = exc.problem or exc.context or "not valid YAML"
    if exc.context and exc.problem:
        # The context often points where the trouble began (an unclosed quote).
        began = (
            f" at {_mark(context_mark)}" if context_mark and context_mark != problem_mark else ""
        )
        said = f"{said} ({exc.context}{began})"
    return f"{where}: {said}" if where else said


def _mark(mark: Any) -> str:
    # pyyaml counts from 0; editors count from 1.
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _env_problem(exc: Exception) -> str:
    """pydantic-settings names the field ("stages") but not the variable, and keeps the JSON
    error as the cause: find the variable whose value is not JSON."""
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found[1] if found else ""
    prefix = f"{ENV_PREFIX}{field}".upper()
    suspects = [
        name
        for name, value in sorted(os.environ.items())
        if name.upper() == prefix or name.upper().startswith(prefix + "_")
        if value.lstrip().startswith(("{", "[")) and not _is_json(value)
    ]
    name = suspects[0] if len(suspects) == 1 else f"{prefix}_*"
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return f"{name}: not valid JSON ({cause.msg} at column {cause.colno})"
    return f"{name}: the value could not be read for {field or 'a setting'}"


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


# -- runtime: a short line and, where there is an obvious next step, a hint


def _runtime_error(exc: Exception) -> str | None:
    kafka = _type("confluent_kafka", "KafkaException")
    if kafka and isinstance(exc, kafka):
        return _kafka_problem(exc)
    s3_error = _type("minio.error", "S3Error")
    if s3_error and isinstance(exc, s3_error):
        return _s3_problem(exc)
    minio_error = _type("minio.error", "MinioException")
    if minio_error and isinstance(exc, minio_error):
        return f"S3: {_first_line(str(exc))}"
    unreachable = _type("urllib3.exceptions", "HTTPError")
    if unreachable and isinstance(exc, unreachable):
        reason = getattr(exc, "reason", None) or exc
        return (
            f"S3 did not answer ({type(reason).__name__}); "
            f"is it running at {_redacted_setting('s3', 'endpoint')}?"
        )
    catalog = _type("streams.io.catalog_client", "CatalogUnavailableError")
    if catalog and isinstance(exc, catalog):
        return f"the catalog could not be asked: {exc}"
    if isinstance(exc, OSError):
        said = exc.strerror or _first_line(str(exc)) or type(exc).__name__
        return f"{exc.filename}: {said}" if exc.filename else said
    told = _type("streams.io.failures", "OperationError")
    if told and isinstance(exc, told):
        return _first_line(str(exc)) or type(exc).__name__
    return None  # any other RuntimeError, UnicodeError, ...: a bug, with its traceback


def _kafka_problem(exc: Exception) -> str:
    error = exc.args[0] if exc.args else None
    if error is None or isinstance(error, str):
        text = str(error or "Kafka failed")  # our own code raises it with a sentence
        return text if _INIT_HINT in text else f"Kafka: {text}"
    name, text = error.name(), error.str()
    said = f"Kafka: {text} ({name})"
    if name in _KAFKA_NO_TOPIC:
        return f"{said}; {_INIT_HINT} or check PIXELFLEET_TOPIC_PREFIX"
    if name in _KAFKA_UNREACHABLE:
        return f"{said}; is Kafka running at {_redacted_setting('kafka', 'bootstrap')}?"
    return said


def _s3_problem(exc: Any) -> str:
    where = "/".join(part for part in (exc.bucket_name, exc.object_name) if part)
    said = f"S3 {exc.code}: {exc.message}" + (f" ({where})" if where else "")
    if exc.code == "NoSuchBucket":
        # The fleet's buckets come from init; a bucket given as s3://... may be misspelt.
        return f"{said}; {_INIT_HINT}, or check the bucket's name"
    return said


# -- helpers


def _type(module: str, name: str) -> type[BaseException] | None:
    """An exception class, only if its module is loaded already: an exception of a module
    never imported cannot have been raised, and importing one here would slow every error."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _frame_of(exc: BaseException, module: str, function: str) -> FrameType | None:
    """The frame of `module.function` that `exc` was raised through, if any."""
    target = getattr(sys.modules.get(module), function, None)
    code: CodeType | None = getattr(target, "__code__", None)
    if code is None:
        return None
    for frame in _frames(exc.__traceback__):
        if frame.f_code is code:
            return frame
    return None


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _setting(section: str, key: str) -> str:
    """A fleet setting, for a hint; its variable's name when the settings cannot be read."""
    try:
        from streams.config.settings import FleetSettings

        return str(getattr(getattr(FleetSettings(), section), key))
    except Exception:  # the hint must never hide the error it explains
        return f"{ENV_PREFIX}{section}_{key}".upper()


def _redacted_setting(section: str, key: str) -> str:
    from streams.io.catalog_client import redact_url

    return redact_url(_setting(section, key))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
