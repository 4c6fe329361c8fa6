"""Real HTTP(S) servers on loopback addresses, for the fetch client's tests and benchmark.

A `LoopbackServer` listens on one loopback address (127.0.0.1 by default, 127.0.0.2 works
on Linux too), records every connection it accepts and every request it reads, and answers
from routes the test registers: image bytes, redirects, slow or lying bodies, a gzip bomb,
error statuses and a tarpit. Stopping it is bounded in time: it wakes its tarpits and slow
bodies and closes the connections still open. A tarpit or slow body also ends as soon as its
client hangs up, and records how it ended (`ending`): what a test asserts instead of a time.
"""

from __future__ import annotations

import contextlib
import gzip
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme

# The names every test certificate is good for.
CERT_NAMES = ("images.test", "localhost", "127.0.0.1", "127.0.0.2")
# Handlers never wait longer than this for a client; stop() cuts them short anyway.
IDLE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0

Framing = Literal["length", "chunked", "close"]
Route = Callable[["_Handler"], None]
# How a slow route's handler ended: the client hung up first, the server stopped, or it
# ran its course.
How = Literal["cut", "stopped", "done"]
# A waiting handler looks for a hang-up (and for stop()) this often.
_LOOK_S = 0.05


@dataclass(frozen=True)
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    host: str | None
    client: tuple[str, int]


@dataclass(frozen=True)
class Ending:
    """How one handler of a slow route ended, and the body bytes it had sent by then."""

    how: How
    sent: int


@cache
def local_ca() -> trustme.CA:
    """One test CA per session: generating keys is the slow part."""
    return trustme.CA()


@cache
def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    local_ca().issue_cert(*CERT_NAMES).configure_cert(context)
    return context


def ca_bundle(directory: Path) -> str:
    """Writes the test CA's certificate to `directory` and returns the file's path."""
    path = directory / "pixelfleet-test-ca.pem"
    local_ca().cert_pem.write_to_path(str(path))
    return str(path)


@cache
def gzip_bomb_body(size: int = 10 * 1024 * 1024) -> bytes:
    """`size` zero bytes gzipped: about a thousandth of that on the wire."""
    return gzip.compress(b"\0" * size, compresslevel=9)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real image hosts
    timeout = IDLE_TIMEOUT_S
    server: _HTTPServer

    def parse_request(self) -> bool:
        # Every request that parses is recorded, whatever its method.
        parsed = super().parse_request()
        if parsed:
            seen = Seen(self.command, self.path, self.headers.get("Host"), self.client_address)
            self.server.owner._record(seen)
        return parsed

    def do_GET(self) -> None:
        owner = self.server.owner
        if owner.latency_s and owner.stopping.wait(owner.latency_s):
            self.close_connection = True
            return
        route = owner._route(self.path.split("?", 1)[0])
        route(self)

    def pause(self, seconds: float) -> How | None:
        """Waits `seconds`; "cut" as soon as the client hangs up, "stopped" as soon as the
        server stops, None when the time has passed. A hang-up is seen on plain
        connections only (a TLS client's close_notify reads as data)."""
        owner = self.server.owner
        end = time.monotonic() + seconds
        while not owner.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return None
            if self._hung_up(min(left, _LOOK_S)):
                # stop() shuts every connection down after it sets `stopping`.
                return "stopped" if owner.stopping.is_set() else "cut"
        return "stopped"

    def _hung_up(self, wait_s: float) -> bool:
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], wait_s)
            if not readable:
                return False
            # The plain socket's peek: b"" is the client's FIN.
            if socket.socket.recv(sock, 1, socket.MSG_PEEK):
                self.server.owner.stopping.wait(wait_s)  # bytes, not a hang-up: no spinning
                return False
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True  # reset, or closed under us
        return True

    def ended(self, how: How, sent: int) -> None:
        """Records how this request's handler ended (see LoopbackServer.ending)."""
        self.server.owner._ended(self.path.split("?", 1)[0], Ending(how, sent))

    def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "application/octet-stream",
        headers: dict[str, str] | None = None,
        framing: Framing = "length",
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if framing == "length":
            self.send_header("Content-Length", str(len(body)))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            # No length: the body ends when the connection does.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if framing == "chunked":
            for start in range(0, len(body), 16384):
                piece = body[start : start + 16384]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the records are the log


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: LoopbackServer, address: str, port: int) -> None:
        self.owner = owner
        if ":" in address:
            self.address_family = socket.AF_INET6
        super().__init__((address, port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, client = super().get_request()
        self.owner._accepted(client)
        return sock, client

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        owner = self.owner
        owner._opened(sock)
        try:
            if owner.tls:
                # The handshake runs in the connection's thread so a silent client cannot
                # stall the accept loop.
                sock.settimeout(IDLE_TIMEOUT_S)
                wrapped = _server_context().wrap_socket(sock, server_side=True)
                owner._closed(sock)  # wrapping took its file descriptor over
                sock = wrapped
                owner._opened(sock)
            _Handler(sock, client_address, self)
        except (OSError, ValueError):
            pass  # clients that hang up or reject our certificate are part of the tests
        finally:
            owner._closed(sock)
            if sock is not request:
                sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP(S) server on one loopback address; a context manager.

    `latency_s` is added before every response (for a benchmark). Requests to a path that
    has no route get a 404.
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        self.address = address
        self.tls = tls
        self.latency_s = latency_s
        self.stopping = threading.Event()
        self.connections: list[tuple[str, int]] = []
        self.requests: list[Seen] = []
        self._routes: dict[str, Route] = {}
        self._counts: dict[str, int] = {}
        self._endings: dict[str, list[Ending]] = {}
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(self, address, port)
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{self.address}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wakes tarpits and slow bodies, closes open connections, stops accepting."""
        self.stopping.set()
        with self._lock:
            lingering = list(self._open)
        for sock in lingering:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown: it wakes a thread blocked reading it, TLS or not.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(STOP_TIMEOUT_S)
        self._httpd.server_close()
        end = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < end:
            with self._lock:
                if not self._open:
                    break
            time.sleep(0.01)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what happened -------------------------------------------------------------------

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        name = host or (f"[{self.address}]" if ":" in self.address else self.address)
        return f"{scheme}://{name}:{self.port}{path}"

    def contacted(self) -> bool:
        """Whether any client connected, counting one still waiting in the accept queue."""
        with self._lock:
            if self.connections:
                return True
        try:
            ready, _, _ = select.select([self._httpd.socket], [], [], 0)
        except (OSError, ValueError):
            return False  # closed: everything that came was accepted and recorded
        return bool(ready)

    def paths(self) -> list[str]:
        with self._lock:
            return [seen.path for seen in self.requests]

    def ending(self, path: str, within_s: float = 10.0) -> Ending | None:
        """How the first handler of `path` that recorded its end (slow, tarpit, or a route
        calling `ended`) ended; waits up to `within_s` for one, else None."""
        for _ in range(max(1, int(within_s / 0.01))):
            with self._lock:
                if self._endings.get(path):
                    return self._endings[path][0]
            time.sleep(0.01)
        return None

    def lingering(self) -> int:
        """Connections still open on the server's side."""
        with self._lock:
            return len(self._open)

    def _ended(self, path: str, ending: Ending) -> None:
        with self._lock:
            self._endings.setdefault(path, []).append(ending)

    def _accepted(self, client: tuple[str, int]) -> None:
        with self._lock:
            self.connections.append(client)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _route(self, path: str) -> Route:
        with self._lock:
            return self._routes.get(path, _not_found)

    def _count(self, path: str) -> int:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            return self._counts[path]

    # --- routes --------------------------------------------------------------------------

    def route(self, path: str, handler: Route) -> None:
        with self._lock:
            self._routes[path] = handler

    def serve_bytes(
        self,
        path: str,
        body: bytes,
        content_type: str = "image/jpeg",
        framing: Framing = "length",
    ) -> None:
        """Real content (image bytes) with a Content-Length, chunked, or ended by a close."""
        self.route(path, lambda h: h.send(200, body, content_type=content_type, framing=framing))

    def html(self, path: str, text: str = "<html><body>not an image</body></html>") -> None:
        self.serve_bytes(path, text.encode(), "text/html; charset=utf-8")

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """301/302/307/308 to `location`, relative or absolute, as given."""
        self.route(path, lambda h: h.send(status, headers={"Location": location}))

    def status(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"status {status}".encode()
        self.route(path, lambda h: h.send(status, body, content_type="text/plain", headers=headers))

    def not_found(self, path: str) -> None:
        self.route(path, _not_found)

    def too_many_requests(self, path: str, retry_after: str = "7") -> None:
        self.status(path, 429, {"Retry-After": retry_after})

    def flaky(
        self, path: str, failures: int, body: bytes, content_type: str = "image/jpeg"
    ) -> None:
        """503 for the first `failures` requests to `path`, then 200 with `body`."""

        def answer(h: _Handler) -> None:
            if self._count(path) <= failures:
                h.send(503, b"busy", content_type="text/plain", headers={"Retry-After": "1"})
            else:
                h.send(200, body, content_type=content_type)

        self.route(path, answer)

    def slow(
        self,
        path: str,
        body: bytes,
        *,
        chunk: int = 1024,
        interval_s: float = 0.1,
        content_type: str = "image/jpeg",
    ) -> None:
        """The headers at once, then `chunk` bytes every `interval_s`; stops early when the
        client hangs up or the server stops, and records how it ended (`ending`)."""

        def answer(h: _Handler) -> None:
            h.close_connection = True
            sent = 0
            try:
                h.send_response(200)
                h.send_header("Content-Type", content_type)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.flush()
                for start in range(0, len(body), chunk):
                    how = h.pause(interval_s)
                    if how is not None:
                        h.ended(how, sent)
                        return
                    h.wfile.write(body[start : start + chunk])
                    h.wfile.flush()
                    sent += len(body[start : start + chunk])
            except OSError:
                h.ended("cut", sent)
                return
            h.ended("done", sent)

        self.route(path, answer)

    def length_lie(self, path: str, body: bytes, declared: int) -> None:
        """Declares `declared` bytes, sends `body` (shorter or longer), then hangs up."""

        def answer(h: _Handler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(declared))
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()
            h.close_connection = True

        self.route(path, answer)

    def gzip_bomb(self, path: str, size: int = 10 * 1024 * 1024) -> None:
        """`size` bytes of zeros as Content-Encoding: gzip (about size/1000 on the wire)."""
        body = gzip_bomb_body(size)
        self.route(
            path,
            lambda h: h.send(
                200, body, content_type="image/png", headers={"Content-Encoding": "gzip"}
            ),
        )

    def tarpit(self, path: str, wait_s: float = 2.0, body: bytes = b"late") -> None:
        """Reads the request, then says nothing for `wait_s` (less if the client hangs up or
        the server stops); records how it ended (`ending`)."""

        def answer(h: _Handler) -> None:
            how = h.pause(wait_s)
            if how is not None:
                h.close_connection = True
                h.ended(how, 0)
                return
            try:
                h.send(200, body, content_type="image/jpeg")
            except OSError:
                h.close_connection = True
                h.ended("cut", 0)
                return
            h.ended("done", len(body))

        self.route(path, answer)


def _not_found(h: _Handler) -> None:
    h.send(404, b"not found", content_type="text/plain")
