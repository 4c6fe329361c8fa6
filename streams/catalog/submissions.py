"""Submissions through the API: checked, deduplicated, stored and published.

Runs in a worker thread of the web server (the S3 put and Kafka produce block). The answer
is data, `Outcome`, which the handler turns into a response.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import urllib3
from confluent_kafka import KafkaException
from minio.error import MinioException

from processors.sniff import sniff
from schemas.events import Hints, Request
from streams.app.settings import Settings
from streams.app.submit import EventTooLargeError, Submitter, content_image_id
from streams.catalog.index import CatalogIndex
from streams.stages.fingerprint import fingerprint

# Idempotency keys are remembered this long, and this many at most, per replica.
IDEMPOTENCY_TTL_S = 24 * 3600
IDEMPOTENCY_MAX = 100_000


@dataclass
class Outcome:
    status: int = 202
    image_id: str = ""
    duplicate_of: str | None = None
    problem: tuple[int, str, str] | None = None  # (status, code, message)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "image_id": self.image_id,
            "location": f"/v1/images/{self.image_id}",
        }
        if self.duplicate_of:
            body["duplicate_of"] = self.duplicate_of
        return {**body, **self.extra}


def _problem(status: int, code: str, message: str) -> Outcome:
    return Outcome(status=status, problem=(status, code, message))


# What Kafka or S3 trouble raises while an upload is stored and its event published.
_UNAVAILABLE = (RuntimeError, OSError, KafkaException, MinioException, urllib3.exceptions.HTTPError)
FLUSH_TIMEOUT_S = 10.0


def _refused(exc: ValueError) -> Outcome:
    """An event Submitter refused before anything was stored: too large, or one the fleet
    could not read (an unknown profile)."""
    if isinstance(exc, EventTooLargeError):
        return _problem(413, "too_large", str(exc))
    return _problem(422, "bad_request", str(exc))


def _names(kind: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(kind))


_META = frozenset({"hints", "request"})
_URL_BODY = _META | {"url"}


def _parts(
    body: dict[str, Any], allowed: frozenset[str], where: str, force: bool
) -> tuple[Hints, Request] | Outcome:
    """A submission's `hints` and `request`, every name checked. The stored events keep
    reading unknown fields (older or newer writers), but a client's misspelt `restor` would
    be dropped and its image processed as it did not ask. `?force=true` goes on the event,
    so that validate processes content it has already done under another id too."""
    # (the unknown name, the names known where it stands)
    unknown = [(key, allowed) for key in sorted(set(body) - allowed)]
    for name, kind in (("hints", Hints), ("request", Request)):
        part = body.get(name)
        if isinstance(part, dict):
            names = _names(kind)
            unknown += [(f"{name}.{key}", names) for key in sorted(set(part) - names)]
    if unknown:
        field, known = unknown[0]
        listed = ", ".join(sorted(known))
        return _problem(400, "bad_field", f"{where}: unknown field {field!r} (known: {listed})")
    try:
        hints = msgspec.convert(body.get("hints") or {}, Hints)
        request = msgspec.convert(body.get("request") or {}, Request)
    except msgspec.ValidationError as exc:
        return _problem(422, "bad_meta" if where == "meta" else "bad_body", f"{where}: {exc}")
    if force:
        request = msgspec.structs.replace(request, force=True)
    return hints, request


def _unavailable(exc: BaseException) -> Outcome:
    return _problem(
        503,
        "unavailable",
        f"Kafka or S3 did not take the submission ({exc}); send it again (with the same "
        "Idempotency-Key, a retry is safe)",
    )


@dataclass
class _Gate:
    """One Idempotency-Key's turn: its lock, and how many requests hold or wait for it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class Submissions:
    def __init__(self, settings: Settings, index: CatalogIndex) -> None:
        self.settings = settings
        self.index = index
        self._submitter: Submitter | None = None
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[float, str, Outcome]] = OrderedDict()
        self._gates: dict[str, _Gate] = {}  # keys with a request under way or waiting

    @property
    def submitter(self) -> Submitter:
        with self._lock:
            if self._submitter is None:
                self._submitter = Submitter(self.settings)
            return self._submitter

    def submit_bytes(
        self,
        data: bytes,
        name: str,
        meta: dict[str, Any],
        file_type: str | None,
        *,
        idempotency: str | None,
        force: bool,
    ) -> Outcome:
        body_hash = hashlib.sha256(data + msgspec.json.encode(meta)).hexdigest()
        return self._once(idempotency, body_hash, lambda: self._upload(data, name, meta, force))

    def submit_url(self, body: Any, *, idempotency: str | None, force: bool) -> Outcome:
        body_hash = hashlib.sha256(msgspec.json.encode(body)).hexdigest()
        return self._once(idempotency, body_hash, lambda: self._url(body, force))

    def _once(self, key: str | None, body_hash: str, work: Any) -> Outcome:
        """The first answer to an Idempotency-Key again; the same key with another body is
        a client's mistake, said as such. Requests with one key run one at a time (on this
        replica): a retry sent while the first is still under way waits for its answer."""
        if key is None:
            result: Outcome = work()
            return result
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) > IDEMPOTENCY_MAX
                or next(iter(self._seen.values()))[0] < now - IDEMPOTENCY_TTL_S
            ):
                self._seen.popitem(last=False)
            gate = self._gates.setdefault(key, _Gate())
            gate.users += 1
        try:
            with gate.lock:
                return self._first(key, body_hash, work, now)
        finally:
            with self._lock:
                gate.users -= 1
                if not gate.users:
                    del self._gates[key]

    def _first(self, key: str, body_hash: str, work: Any, now: float) -> Outcome:
        with self._lock:
            seen = self._seen.get(key)
        if seen is not None:
            if seen[1] != body_hash:
                return _problem(
                    422, "idempotency_key_reused", "this Idempotency-Key came with another body"
                )
            return seen[2]
        result: Outcome = work()
        if result.problem is None:
            with self._lock:
                self._seen[key] = (now, body_hash, result)
        return result

    def _upload(self, data: bytes, name: str, meta: dict[str, Any], force: bool) -> Outcome:
        if not data:
            return _problem(400, "empty_file", "the file part is empty")
        if sniff(data) is None:
            return _problem(
                415, "not_an_image", f"{name!r} is not in an image format pixelfleet reads"
            )
        parts = _parts(meta, _META, "meta", force)
        if isinstance(parts, Outcome):
            return parts
        hints, request = parts
        if hints.file_name is None:
            hints = msgspec.structs.replace(hints, file_name=name)
        sha = hashlib.sha256(data).hexdigest()
        done = self.index.done_with(sha, fingerprint(self.settings.stages, request))
        if done is not None and not force:
            # The same bytes under the same settings: the work exists, nothing is published.
            return Outcome(status=200, image_id=done, duplicate_of=done)
        try:
            event = self.submitter.upload_bytes_and_submit(
                data, name, image_id=content_image_id(data), hints=hints, request=request
            )
            self.submitter.flush(FLUSH_TIMEOUT_S)
        except ValueError as exc:  # checked before anything is stored
            return _refused(exc)
        except _UNAVAILABLE as exc:
            return _unavailable(exc)
        return Outcome(status=202, image_id=event.image_id, extra={"sha256": sha})

    def _url(self, body: Any, force: bool) -> Outcome:
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return _problem(400, "missing_url", 'send {"url": "https://...", ...}')
        parts = _parts(body, _URL_BODY, "body", force)
        if isinstance(parts, Outcome):
            return parts
        hints, request = parts
        url = body["url"]
        if not url.startswith(("http://", "https://")) or len(url) > 4096:
            return _problem(422, "bad_url", "url is an http(s) URL of at most 4096 characters")
        try:
            event = self.submitter.submit_url(url, hints=hints, request=request)
            self.submitter.flush(FLUSH_TIMEOUT_S)
        except ValueError as exc:
            return _refused(exc)
        except _UNAVAILABLE as exc:
            return _unavailable(exc)
        return Outcome(status=202, image_id=event.image_id)
