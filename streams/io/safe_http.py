"""The fleet's only outbound HTTP client: the fetch stage downloads crawler-submitted URLs
with `get`, the notify worker delivers webhooks with `post`; neither ever reaches inside our
network.

Every hop (the first URL and each redirect) is checked by `streams.io.netguard` before any
socket is opened; the host is resolved once per hop, every address is vetted, and the
connection goes to a vetted IP (with the SNI and certificate check still on the host name),
so DNS rebinding cannot switch the target between the check and the connect. Bodies are
streamed, never decoded (a gzip bomb is refused, not inflated), and bounded in bytes and time:
every socket wait is cut to what is left of the fetch's clock, the name lookup too, and
`deadline_watch` shuts the connection down when the clock runs out inside the standard
library's own loops (headers, interim answers, chunk trailers). A POST follows no redirect
at all: its body would have to be sent to a second destination.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from streams.io.deadline_watch import WATCH, WatchedPool, WatchedTLSPool
from streams.io.netguard import NetPolicy, Refused, Target, check_url, resolve_redirect, vet
from streams.io.safe_http_errors import Clock, FetchError, Kind, from_status, from_urllib3_error
from streams.io.safe_http_response import (
    HttpLimits,
    PostResult,
    Response,
    content_length,
    discard,
    read_answer,
)

__all__ = [
    "FetchError",
    "HttpLimits",
    "PostResult",
    "Resolver",
    "Response",
    "SafeFetcher",
    "system_resolver",
]

Resolver = Callable[[str, int], list[str]]
# What `get` enters for each redirect target URL (see there).
HopGate = Callable[[str], contextlib.AbstractContextManager[None]]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Idle pools kept for keep-alive; a fleet worker talks to a bounded set of image hosts.
MAX_POOLS = 128
# Lookups in flight at once; one that never answers holds its thread until the system
# resolver gives up, but the fetch that asked has long gone on without it. A lookup starts
# only with a thread free for it (none ever waits in the executor's queue, to run long
# after its fetch gave up); with all of them taken, the fetch is told "busy".
DNS_THREADS = 16
# A lookup cut short by waiting for a thread says nothing of its name server below this
# share of connect_timeout_s: it is `busy` (not counted, no pause), not `dns`.
DNS_FAIR_SHARE = 0.5


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from getaddrinfo, each once, in the order the system gave them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SafeFetcher:
    """Fetches URLs under a NetPolicy; thread-safe, one per process is enough."""

    def __init__(
        self,
        policy: NetPolicy,
        limits: HttpLimits,
        resolver: Resolver = system_resolver,
        connections_per_host: int = 4,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self._resolver = resolver
        self._per_host = connections_per_host
        self._ssl = ssl.create_default_context()
        if limits.ca_file:
            self._ssl.load_verify_locations(cafile=limits.ca_file)
        # The name is checked by urllib3 against assert_hostname (the URL's host, not the IP
        # connected to); urllib3 would turn this off on first use, shared by every thread.
        self._ssl.check_hostname = False
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._headers_base = {"User-Agent": limits.user_agent, "Accept-Encoding": "identity"}
        self._dns = cf.ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="safe-http-dns")
        self._dns_slots = threading.BoundedSemaphore(DNS_THREADS)

    def get(
        self, url: str, *, deadline: float | None = None, hop: HopGate | None = None
    ) -> contextlib.AbstractContextManager[Response]:
        """Opens `url` (following redirects) on entering; raises FetchError. `deadline` is an
        absolute time.monotonic() the whole fetch, body included, must end by. `hop`, when
        given, is entered for each redirect target once netguard has admitted it and
        before it is asked, and held while that host is being talked to (the caller's
        politeness for the hosts a redirect leads to; whatever it raises goes up)."""
        return self._open(url, deadline, hop)

    @contextlib.contextmanager
    def _open(self, url: str, deadline: float | None, hop: HopGate | None) -> Iterator[Response]:
        with contextlib.ExitStack() as held:
            response = self._fetch(url, deadline, hop, held)
            try:
                yield response
            finally:
                response.close()

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        deadline: float | None = None,
        answer_bytes: int = 1024,
    ) -> PostResult:
        """POSTs `body` to `url` under the same rules as `get` and returns the answer, any
        status; raises FetchError when the URL is refused or no answer came (connect, timeout,
        reset). A redirect is returned, not followed."""
        start = time.monotonic()
        clock = Clock(self.limits.total_timeout_s, deadline)
        target = self._check(url)
        raw, address = self._request(target, url, clock, method="POST", body=body, extra=headers)
        return read_answer(raw, clock, self.limits, answer_bytes, address=address, start=start)

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
        self._dns.shutdown(wait=False, cancel_futures=True)

    def _fetch(
        self,
        url: str,
        deadline: float | None,
        hop: HopGate | None = None,
        held: contextlib.ExitStack | None = None,
    ) -> Response:
        clock = Clock(self.limits.total_timeout_s, deadline)
        redirects: list[str] = []
        current = url
        while True:
            target = self._check(current)
            if redirects and hop is not None and held is not None:
                held.close()  # the previous target's turn: that host is done with
                held.enter_context(hop(current))
            raw, address = self._request(target, current, clock)
            status = raw.status
            if status in REDIRECT_STATUSES and raw.headers.get("location"):
                location = raw.headers["location"]
                discard(raw)
                if len(redirects) >= self.limits.max_redirects:
                    reason = f"more than {self.limits.max_redirects} redirects"
                    raise FetchError("permanent", "redirects", reason, url=current, status=status)
                try:
                    current = resolve_redirect(target, location)
                except ValueError as exc:  # e.g. an unbalanced "[" in the Location
                    reason = f"bad Location {location[:200]!r}: {exc}"
                    raise FetchError("permanent", "bad_response", reason, url=current) from exc
                redirects.append(current)
                continue
            if 200 <= status < 300:
                return self._response(raw, current, redirects, address, clock)
            discard(raw)
            raise from_status(raw.status, raw.headers.get("retry-after"), current)

    def _check(self, url: str) -> Target:
        try:
            return check_url(url, self.policy)
        except Refused as exc:
            raise FetchError("refused", "ssrf", str(exc), url=url) from exc

    def _addresses(self, target: Target, url: str, clock: Clock) -> list[str]:
        """The vetted addresses of this hop, from one resolver call (none for a literal)."""
        if target.literal is not None:
            return [str(target.literal)]
        wait = clock.wait(self.limits.connect_timeout_s, url)
        # One end for waiting on a lookup thread and on the lookup: the time spent on the
        # first is not given again to the second (it was, so a name cost twice this).
        ends = time.monotonic() + wait
        if not self._dns_slots.acquire(timeout=wait):
            # Slow names elsewhere hold every lookup thread: nothing was asked about this
            # one, so it is no failure of its host.
            reason = f"all {DNS_THREADS} name lookups busy; {target.host} was not looked up"
            raise FetchError("transient", "busy", reason, url=url)
        # In a thread of its own: getaddrinfo takes no timeout, and a name server that
        # never answers would hold the fetch for as long as the system resolver tries.
        asked = time.monotonic()
        lookup = self._dns.submit(self._resolve, target.host, target.port)
        try:
            found = lookup.result(timeout=max(0.0, ends - asked))
        except cf.TimeoutError:
            had = time.monotonic() - asked
            never_asked = lookup.cancel()
            if never_asked:  # never started: its slot is ours to hand back
                self._dns_slots.release()
            if clock.is_expired():
                raise clock.expired(url) from None
            if never_asked or had < DNS_FAIR_SHARE * self.limits.connect_timeout_s:
                # A lookup thread came free too late for a fair question: the name server
                # is not to blame (a dns failure pauses the host and counts an attempt).
                reason = (
                    f"name lookups busy; {target.host} got {had:.2f} s of "
                    f"{self.limits.connect_timeout_s:g} s"
                )
                raise FetchError("transient", "busy", reason, url=url) from None
            reason = f"{target.host}: no answer within {had:.1f} s"
            raise FetchError("transient", "dns", reason, url=url) from None
        except socket.gaierror as exc:
            # EAI_AGAIN is the resolver failing for now; anything else says no such name.
            kind: Kind = "transient" if exc.errno == socket.EAI_AGAIN else "permanent"
            raise FetchError(kind, "dns", f"{target.host}: {exc}", url=url) from exc
        except OSError as exc:
            raise FetchError("transient", "dns", f"{target.host}: {exc}", url=url) from exc
        if not found:
            raise FetchError("permanent", "dns", f"{target.host} has no address", url=url)
        try:
            vetted = vet(target.host, found, self.policy)
        except Refused as exc:
            raise FetchError("refused", "ssrf", str(exc), url=url) from exc
        return [str(address) for address in vetted]

    def _resolve(self, host: str, port: int) -> list[str]:
        try:
            return self._resolver(host, port)
        finally:
            self._dns_slots.release()

    def _request(
        self,
        target: Target,
        url: str,
        clock: Clock,
        *,
        method: str = "GET",
        body: bytes | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        addresses = self._addresses(target, url, clock)
        # The Host header is ours, whatever the caller passed: it names the vetted target.
        headers = {**self._headers_base, **(extra or {}), "Host": target.host_header}
        failures: list[str] = []
        for address in addresses:
            pool = self._pool(target, address)
            timeout = urllib3.Timeout(
                connect=clock.wait(self.limits.connect_timeout_s, url),
                read=clock.wait(self.limits.read_timeout_s, url),
            )
            # Waiting for a free connection of this host counts against the clock too
            # (urllib3 types it int; queue.get takes any float).
            queue_wait: Any = clock.wait(self.limits.total_timeout_s, url)
            try:
                with WATCH.expecting(clock.end):
                    raw = pool.urlopen(
                        method,
                        target.path,
                        body=body,
                        headers=headers,
                        retries=False,
                        redirect=False,
                        timeout=timeout,
                        pool_timeout=queue_wait,
                        preload_content=False,
                        decode_content=False,
                        release_conn=False,
                        assert_same_host=False,
                    )
            except (NewConnectionError, ConnectTimeoutError) as exc:
                # Nothing was sent yet: the next vetted address of the same hop may answer.
                failures.append(f"{address}: {exc}")
                continue
            except HTTPError as exc:
                raise from_urllib3_error(exc, clock, url, in_body=False) from exc
            return raw, address
        if clock.is_expired():
            raise clock.expired(url)
        reason = "; ".join(failures) or "no address to connect to"
        raise FetchError("transient", "connect", reason, url=url)

    def _pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        # Keyed on the IP too: a pool's connections only ever go to the address vetted here.
        key = (target.scheme, address, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._new_pool(target, address)
            self._pools[key] = pool
            evicted = self._pools.popitem(last=False)[1] if len(self._pools) > MAX_POOLS else None
        if evicted is not None:
            evicted.close()
        return pool

    def _new_pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        # block: at most connections_per_host sockets to one server, the others wait their turn.
        if target.scheme == "https":
            # Connect to the vetted IP; SNI and the certificate check use the host name.
            name = target.host.strip("[]")
            return WatchedTLSPool(
                address,
                target.port,
                maxsize=self._per_host,
                block=True,
                retries=False,
                ssl_context=self._ssl,
                server_hostname=name,
                assert_hostname=name,
                cert_reqs="CERT_REQUIRED",
            )
        return WatchedPool(address, target.port, maxsize=self._per_host, block=True, retries=False)

    def _response(
        self,
        raw: urllib3.BaseHTTPResponse,
        url: str,
        redirects: list[str],
        address: str,
        clock: Clock,
    ) -> Response:
        encoding = raw.headers.get("content-encoding", "").strip().lower()
        transfer = raw.headers.get("transfer-encoding", "").strip().lower()
        if encoding not in ("", "identity") or transfer not in ("", "chunked", "identity"):
            # Refused unread: the body is never inflated, so a compression bomb costs nothing.
            discard(raw)
            reason = f"encoded body (Content-Encoding {encoding!r}, Transfer-Encoding {transfer!r})"
            raise FetchError("permanent", "content_encoding", reason, url=url, status=raw.status)
        try:
            declared = content_length(raw)
        except ValueError as exc:
            discard(raw)
            raise FetchError("permanent", "bad_response", str(exc), url=url) from exc
        if declared is not None and declared > self.limits.max_bytes:
            discard(raw)
            reason = f"Content-Length {declared} exceeds {self.limits.max_bytes} bytes"
            raise FetchError("permanent", "too_large", reason, url=url, status=raw.status)
        return Response(
            raw,
            url=url,
            redirects=redirects,
            address=address,
            declared_length=declared,
            limits=self.limits,
            clock=clock,
        )
