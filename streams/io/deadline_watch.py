"""A wall clock over HTTP exchanges that block inside the standard library.

A socket timeout bounds each receive, not a whole exchange: `http.client` reads the
status line and headers, skips `100 Continue` answers and discards chunked trailers in
loops of its own, so a server that trickles a byte before each timeout, or sends interim
answers or trailer lines for ever, holds the caller as long as it likes. The watch holds
each connection's deadline (the fetch's clock) and, once it passes, shuts the socket down
from its own thread: whatever the other thread is blocked in then sees the connection
end, and the fetcher reports the clock that ran out.

Connections of `SafeFetcher`'s pools arm themselves when a request is sent, with the
deadline the sending thread set (`expecting`); the response disarms them when it is
done, so an idle keep-alive connection is never cut. Their responses also refuse headers
past `bounded_headers.MAX_HEADER_BYTES`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from streams.io.bounded_headers import BoundedHeadersResponse


class DeadlineWatch:
    """Shuts down the sockets of connections whose deadline (time.monotonic()) passed."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, Any]] = {}  # id(connection) -> (deadline, it)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pending = threading.local()
        self.cut = 0  # connections shut down so far (tests read it)

    @contextlib.contextmanager
    def expecting(self, deadline: float) -> Iterator[None]:
        """Requests this thread sends inside the block get `deadline`."""
        self._pending.deadline = deadline
        try:
            yield
        finally:
            self._pending.deadline = None

    def arm_sent(self, connection: Any) -> None:
        """Called by a connection sending a request: watch it if its thread set a deadline."""
        deadline = getattr(self._pending, "deadline", None)
        if deadline is not None:
            self.arm(connection, deadline)

    def arm(self, connection: Any, deadline: float) -> None:
        with self._changed:
            self._due[id(connection)] = (deadline, connection)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="http-deadlines", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def disarm(self, connection: Any) -> None:
        if connection is None:
            return
        with self._changed:
            self._due.pop(id(connection), None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                expired = [key for key, (at, _) in self._due.items() if at <= now]
                cut = [self._due.pop(key)[1] for key in expired]
                if not cut:
                    soonest = min((at for at, _ in self._due.values()), default=None)
                    self._changed.wait(None if soonest is None else soonest - now)
                    continue
            for connection in cut:
                self._cut(connection)

    def _cut(self, connection: Any) -> None:
        sock = getattr(connection, "sock", None)
        if not isinstance(sock, socket.socket):
            return  # not connected (yet, or any more): nothing blocks on it
        self.cut += 1  # counted first: the blocked thread may go on the moment it is cut
        with contextlib.suppress(OSError):
            # The plain socket's shutdown, even under TLS: SSLSocket's own would also drop
            # its TLS state, which the blocked thread is still using.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


WATCH = DeadlineWatch()


class _Watched:
    """What both connection classes add: headers bounded, and the watch armed per request."""

    response_class: type[http.client.HTTPResponse] = BoundedHeadersResponse

    def request(self, *args: Any, **kwargs: Any) -> None:
        WATCH.arm_sent(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedTLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection
