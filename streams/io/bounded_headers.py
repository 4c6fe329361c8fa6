"""A response whose status line and headers together may not pass `MAX_HEADER_BYTES`.

`http.client` accepts 100 header lines of 64 KiB each, about 6.4 MB a response (and every
`100 Continue` before it has its own 100), held as text and parsed into objects many times
that size; a fetch worker keeps 32 fetches in flight. Image hosts send a few kilobytes of
headers, so a response that sends more is refused as malformed before it costs memory.
"""

from __future__ import annotations

import http.client
from typing import Any

MAX_HEADER_BYTES = 64 * 1024


class HeadersTooLargeError(http.client.HTTPException):
    pass


class _CountedLines:
    """The socket's file as `begin` reads it (line by line), every byte counted."""

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp = fp
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self._fp.readline(size)
        self._left -= len(line)
        if self._left < 0:
            raise HeadersTooLargeError(f"the response's headers pass {MAX_HEADER_BYTES} bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class BoundedHeadersResponse(http.client.HTTPResponse):
    def begin(self) -> None:
        # Counted only while the status line, headers and any interim answers are read;
        # the body goes back to the plain file and its own limits.
        raw = self.fp
        self.fp = _CountedLines(raw, MAX_HEADER_BYTES)  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            if self.fp is not None:  # None when begin closed it (HEAD, or no body)
                self.fp = raw
