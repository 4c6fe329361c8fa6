"""Real webhook receivers on 127.0.0.1, each a threaded HTTP server that checks every
request's signature on its own (with hmac, not with our code) and records it by event id.

A receiver answers by its `behaviour`: a function of the request number (1-based) that
returns the status to send, or None to hang until the receiver stops (a dead endpoint that
accepts connections and never answers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Behaviour = Callable[[int], int | None]
HANG_LIMIT_S = 30.0  # a hanging answer never outlives the test by more than this


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival
    event_id: str
    event_type: str
    signature_ok: bool
    status: int | None  # what we answered; None: hung
    body: dict[str, Any]
    host: str | None  # the Host header


def ok(_n: int) -> int:
    return 204


def always(status: int) -> Behaviour:
    return lambda _n: status


def hang(_n: int) -> int | None:
    return None


class Receiver:
    def __init__(
        self, secret: bytes, behaviour: Behaviour = ok, *, retry_after: str | None = None
    ) -> None:
        self.secret = secret
        self.behaviour = behaviour
        self.retry_after = retry_after  # sent with every 429 and 503
        self.received: list[Received] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _Server(self)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/pixelfleet"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- what the tests read --------------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered(self) -> Counter[str]:
        """Requests answered 2xx, by event id."""
        return Counter(
            r.event_id for r in self.snapshot() if r.status is not None and 200 <= r.status < 300
        )

    def wait_for(self, check: Callable[[Receiver], bool], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if check(self):
                return True
            time.sleep(0.05)
        return check(self)

    # --- the server's side ------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = handler.headers
        stamp = headers.get("X-Pixelfleet-Timestamp", "")
        mac = hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        signature_ok = (
            hmac.compare_digest(f"v1={mac}", headers.get("X-Pixelfleet-Signature", ""))
            and abs(time.time() - float(stamp or 0)) < 300
        )
        with self._lock:
            number = len(self.received) + 1
        status = self.behaviour(number)
        record = Received(
            at=time.monotonic(),
            event_id=headers.get("X-Pixelfleet-Event-Id", ""),
            event_type=headers.get("X-Pixelfleet-Event", ""),
            signature_ok=signature_ok,
            status=status,
            body=json.loads(body),
            host=headers.get("Host"),
        )
        with self._lock:
            self.received.append(record)
        if status is None:
            self.stopping.wait(HANG_LIMIT_S)
            handler.close_connection = True
            return
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        if 300 <= status < 400:
            handler.send_header("Location", "http://127.0.0.1:1/elsewhere")
        if status in (429, 503) and self.retry_after is not None:
            handler.send_header("Retry-After", self.retry_after)
        handler.end_headers()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.owner._answer(self, self.rfile.read(length))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: Receiver) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)
