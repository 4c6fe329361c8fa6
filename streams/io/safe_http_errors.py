"""FetchError, what safe_http raises, and how statuses, urllib3's errors and the clock of a
fetch map onto its kinds and reason classes."""

from __future__ import annotations

import email.utils
import http.client
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from urllib3.exceptions import (
    ClosedPoolError,
    EmptyPoolError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

Kind = Literal["refused", "permanent", "transient"]

# A server may ask for a long pause; the stage should not park a URL for longer than this.
MAX_RETRY_AFTER_S = 3600.0


class FetchError(Exception):
    """Why a fetch failed. `kind` tells the stage what to do: "refused" (policy: never
    retry), "permanent" (the URL will not work: give up) or "transient" (retry later,
    after `retry_after_s` when the server said so). A transient "busy" says our own
    connections or name lookups were all in use: the host was not asked."""

    def __init__(
        self,
        kind: Kind,
        reason_class: str,
        reason: str,
        *,
        url: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(kind, reason_class, reason, url)
        self.kind: Kind = kind
        self.reason_class = reason_class
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        self.url = url

    # Exception's default pickling replays `args` positionally, which the keyword-only
    # arguments would not survive (a worker process may hand the error on).
    def __reduce__(self) -> tuple[Callable[[_Fields], FetchError], tuple[_Fields]]:
        fields = (self.kind, self.reason_class, self.reason, self.url)
        return (_restore, ((*fields, self.status, self.retry_after_s),))

    def __str__(self) -> str:
        # netguard's reasons already start with their class ("ssrf: ..."); say it once.
        if self.reason.startswith(f"{self.reason_class}:"):
            return self.reason
        return f"{self.reason_class}: {self.reason}"


_Fields = tuple[Kind, str, str, str, int | None, float | None]


def _restore(fields: _Fields) -> FetchError:
    kind, reason_class, reason, url, status, retry_after_s = fields
    return FetchError(
        kind, reason_class, reason, url=url, status=status, retry_after_s=retry_after_s
    )


class Clock:
    """The one end time of a fetch: the total timeout or the caller's deadline, whichever
    comes first; every socket wait is cut to what is left of it."""

    def __init__(self, total_s: float, deadline: float | None) -> None:
        start = time.monotonic()
        self.end = start + total_s
        self.by_deadline = deadline is not None and deadline <= self.end
        if deadline is not None:
            self.end = min(self.end, deadline)

    def expired(self, url: str) -> FetchError:
        if self.by_deadline:
            return FetchError("transient", "deadline", "the batch deadline passed", url=url)
        return FetchError("transient", "timeout", "the total fetch time ran out", url=url)

    def is_expired(self) -> bool:
        # A socket timeout that fires a hair early still counts as the end.
        return time.monotonic() >= self.end - 0.01

    def wait(self, limit: float, url: str) -> float:
        """`limit` cut to the time left; raises once nothing is left."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired(url)
        return min(limit, left)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now (delta seconds or an HTTP-date), within 0..1 hour."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(min(int(text), int(MAX_RETRY_AFTER_S)))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _cause(exc: BaseException) -> BaseException | None:
    # urllib3 keeps the low-level error among its arguments (ProtocolError's second,
    # SSLError's first), or chains it.
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return arg
    return exc.__cause__ or exc.__context__


def from_urllib3_error(exc: BaseException, clock: Clock, url: str, *, in_body: bool) -> FetchError:
    """A urllib3 error while sending, waiting for or reading a response, as a FetchError."""
    if isinstance(exc, EmptyPoolError):
        # Every connection of the pool was in use until the wait ran out (it may take the
        # whole clock): nothing was sent, so this says nothing about the host.
        reason = "every connection to this server was in use by other fetches"
        return FetchError("transient", "busy", reason, url=url)
    if clock.is_expired():
        # Whatever broke last, the clock ran out first (the watch may have cut the socket).
        return clock.expired(url)
    if isinstance(exc, ReadTimeoutError):
        return FetchError("transient", "timeout", "no byte within the read timeout", url=url)
    if isinstance(exc, SSLError):
        inner = _cause(exc)
        dropped = isinstance(inner, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError)
        if in_body or dropped:
            return FetchError("transient", "reset", f"TLS connection broke: {exc}", url=url)
        # A certificate that does not verify, or no protocol both sides speak: retrying
        # will not change it.
        return FetchError("permanent", "tls", str(exc), url=url)
    if isinstance(exc, ProtocolError):
        inner = _cause(exc)
        if isinstance(inner, http.client.IncompleteRead):
            # A short body and a dropped connection look the same from here: retry it.
            reason = "the body ended before its Content-Length"
            return FetchError("transient", "reset", reason, url=url)
        if isinstance(inner, ConnectionError | http.client.RemoteDisconnected | TimeoutError):
            return FetchError("transient", "reset", f"connection broke: {inner}", url=url)
        if isinstance(inner, http.client.HTTPException):
            return FetchError(
                "permanent", "bad_response", f"malformed response: {inner!r}", url=url
            )
        return FetchError("transient", "reset", f"connection broke: {exc}", url=url)
    if isinstance(exc, ClosedPoolError):
        if clock.is_expired():
            return clock.expired(url)
        return FetchError("transient", "connect", f"no connection to use: {exc}", url=url)
    return FetchError("permanent", "bad_response", f"{type(exc).__name__}: {exc}", url=url)


def from_status(status: int, retry_after: str | None, url: str) -> FetchError:
    """The error of a final status that is neither 2xx nor a redirect we follow."""
    if status in (429, 503):
        wait = parse_retry_after(retry_after)
        reason = f"HTTP {status}"
        return FetchError(
            "transient", f"http_{status}", reason, url=url, status=status, retry_after_s=wait
        )
    if status == 408 or 500 <= status <= 599:
        return FetchError("transient", f"http_{status}", f"HTTP {status}", url=url, status=status)
    if 300 <= status <= 499:
        # 3xx here: not a redirect we can follow (300, 304, a redirect without Location).
        return FetchError("permanent", f"http_{status}", f"HTTP {status}", url=url, status=status)
    return FetchError("permanent", "bad_response", f"status {status}", url=url, status=status)
