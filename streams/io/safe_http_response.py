"""What `SafeFetcher` hands back, and the limits it reads under: a streamed download
(`Response`, the fetch stage's) and the short answer to a POST (`PostResult`, the notify
worker's webhook deliveries)."""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError

from streams.io.deadline_watch import WATCH
from streams.io.safe_http_errors import Clock, FetchError, from_urllib3_error, parse_retry_after


@dataclass(frozen=True)
class HttpLimits:
    max_bytes: int = 50 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0  # waiting for the first byte, and between bytes
    total_timeout_s: float = 60.0  # the whole fetch, redirects included
    max_redirects: int = 5
    user_agent: str = "pixelfleet-fetch/0.1"
    ca_file: str | None = None  # an extra CA bundle, trusted on top of the system's


class Response:
    """An open, streamed body. `read` counts and hashes what it returns and enforces the
    byte and time limits; the fetcher's context manager closes it."""

    def __init__(
        self,
        raw: urllib3.BaseHTTPResponse,
        *,
        url: str,
        redirects: list[str],
        address: str,
        declared_length: int | None,
        limits: HttpLimits,
        clock: Clock,
    ) -> None:
        self.url = url
        self.status = raw.status
        self.content_type: str | None = raw.headers.get("content-type")
        self.declared_length = declared_length
        self.redirects = redirects
        self.address = address
        self.bytes_read = 0
        self._raw = raw
        # Held here: urllib3 lets go of it once the body has been read to its end.
        self._connection = raw.connection
        self._limits = limits
        self._clock = clock
        self._hash = hashlib.sha256()
        self._done = False
        self._error: FetchError | None = None

    def sha256(self) -> str:
        """The hex digest of the bytes read so far (the whole body once `read` gave b"")."""
        return self._hash.hexdigest()

    def read(self, size: int = 65536) -> bytes:
        """Up to `size` bytes (fewer when that is what one socket read gave), b"" at the end."""
        if self._error is not None:
            # Never let a caller mistake a broken body for a complete one.
            raise self._error
        if self._done or size == 0:
            return b""
        try:
            return self._read(size)
        except FetchError as exc:
            self._fail(exc)
            raise

    def _read(self, size: int) -> bytes:
        wait = self._clock.wait(self._limits.read_timeout_s, self.url)
        conn = self._raw.connection
        sock = getattr(conn, "sock", None) if conn is not None else None
        if isinstance(sock, socket.socket):
            # The socket's timeout bounds each recv: the read timeout, cut to the time left.
            sock.settimeout(wait)
        # One byte past the limit is enough to know the body is too large.
        allowed = self._limits.max_bytes + 1 - self.bytes_read
        want = allowed if size < 0 else min(size, allowed)
        try:
            data = self._raw.read1(want, decode_content=False)
        except HTTPError as exc:
            raise from_urllib3_error(exc, self._clock, self.url, in_body=True) from exc
        if not data:
            if self._clock.is_expired():
                # The watch cut the connection: a body without a length would look whole.
                raise self._clock.expired(self.url)
            if self.declared_length is not None and self.bytes_read < self.declared_length:
                missing = self.declared_length - self.bytes_read
                reason = f"body ended {missing} bytes short of its Content-Length"
                raise FetchError("transient", "reset", reason, url=self.url)
            self._done = True
            return b""
        self.bytes_read += len(data)
        if self.bytes_read > self._limits.max_bytes:
            reason = f"body exceeds {self._limits.max_bytes} bytes"
            raise FetchError("permanent", "too_large", reason, url=self.url)
        self._hash.update(data)
        return data

    def _fail(self, exc: FetchError) -> None:
        self._error = exc
        self.close()

    def close(self) -> None:
        """Closes the connection unless the whole body was read (then it is kept alive)."""
        WATCH.disarm(self._connection)
        if not self._done:
            self._raw.close()
            self._done = True
        # Always hand the connection back, or the pool loses that slot for good.
        self._raw.release_conn()


@dataclass(frozen=True)
class PostResult:
    """A POST's final answer, whatever its status (the caller judges it): no redirect is
    followed, so a 3xx comes back as it is."""

    status: int
    # Retry-After of a 429 or 503 (or any status that sends it), in seconds from now.
    retry_after_s: float | None
    address: str  # the vetted IP the request went to
    seconds: float
    answer: bytes  # the first bytes of the body, for logs and dead letters


def read_answer(
    raw: urllib3.BaseHTTPResponse,
    clock: Clock,
    limits: HttpLimits,
    limit: int,
    *,
    address: str,
    start: float,
) -> PostResult:
    """Reads at most `limit` bytes of a POST's answer under the clock, then hands the
    connection back (kept alive when the body was read to its end)."""
    data = b""
    complete = False
    connection = raw.connection  # urllib3 lets go of it at the body's end
    try:
        while len(data) < limit:
            conn = raw.connection
            sock = getattr(conn, "sock", None) if conn is not None else None
            if isinstance(sock, socket.socket):
                sock.settimeout(clock.wait(limits.read_timeout_s, "answer"))
            piece = raw.read1(limit - len(data), decode_content=False)
            if not piece:
                complete = True
                break
            data += piece
    except (HTTPError, OSError, FetchError):
        pass  # the status is what counts; a broken body only costs its connection
    finally:
        WATCH.disarm(connection)
        if not complete:
            raw.close()
        raw.release_conn()
    return PostResult(
        status=raw.status,
        retry_after_s=parse_retry_after(raw.headers.get("retry-after")),
        address=address,
        seconds=time.monotonic() - start,
        answer=data,
    )


def content_length(raw: urllib3.BaseHTTPResponse) -> int | None:
    if "chunked" in raw.headers.get("transfer-encoding", "").lower():
        return None  # a chunked body's length header is meaningless (RFC 9112 6.3)
    value = raw.headers.get("content-length")
    if value is None:
        return None
    # Repeated headers arrive joined by commas; they must agree.
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not all(v.isascii() and v.isdigit() for v in values):
        raise ValueError(f"bad Content-Length {value!r}")
    return int(values.pop())


def discard(raw: urllib3.BaseHTTPResponse) -> None:
    """Drops a response unread: its connection is closed, then its pool slot handed back."""
    WATCH.disarm(raw.connection)
    raw.close()
    raw.release_conn()
