"""One webhook endpoint: its queue, its own delivery thread, its circuit breaker, retries.

Each endpoint delivers on a thread of its own, one event at a time and in the order read,
so a dead or slow receiver holds up nobody but itself: its queue fills, and past
`max_pending` its new events go to the webhook DLQ at once rather than wait. Every attempt
is bounded by the request timeout, and an event by its attempts and its retry budget,
cool-downs included; so every event handed to an endpoint is finished (delivered, dead-
lettered or dropped) within a bounded time, and its offset can be committed.

The retry budget (`retry_budget_s`) counts from the event's first turn, when the thread
first takes it: time spent queued behind other events is not the event's fault, and
counting it would dead-letter a burst at a slow but healthy receiver unattempted. The
exception is an endpoint that keeps failing (every attempt since some moment failed, no
answer came): an event queued before that moment has its budget counted from it, one
queued since from when it was queued, and an event whose budget is spent so is dead-
lettered (`budget_exhausted`) at once, maybe without an attempt. So a dead receiver's
queue drains within about one budget, not one budget per event (up to `max_pending`), and
a backlog at a receiver that answers again within a budget is delivered.

When a rebalance takes partitions away, `withdraw` takes back their queued events: the
partitions' new owner reads and delivers them, so delivering them here too would only
send them twice. The event being attempted is marked withdrawn: an attempt under way ends
(it cannot be called back), but the event is neither tried again nor finished, so it
holds up the endpoint's queue no longer and is never dead-lettered by both owners.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import pybreaker

from processors import webhooks
from processors.webhooks import WebhookEvent
from streams.config.notify import NotifySettings, WebhookSubscription
from streams.io.safe_http import FetchError, PostResult, SafeFetcher
from streams.notify.breaker import EndpointBreaker
from streams.notify.ledger import Ticket, TopicPartition
from streams.observe.metrics import (
    NOTIFY_DELIVERED,
    NOTIFY_DISABLED,
    NOTIFY_FAILED,
    NOTIFY_PENDING,
    NOTIFY_SECONDS,
)

log = logging.getLogger("pixelfleet.notify")


@dataclass
class Delivery:
    event: WebhookEvent
    ticket: Ticket
    # Both on the endpoint's clock; the module's docstring says which one the budget uses.
    queued: float = 0.0  # when `offer` queued it
    first_turn: float | None = None  # when the endpoint's thread first took it
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    # Set (under the endpoint's _cond) when its partition moved while it was attempted.
    withdrawn: bool = False


@dataclass(frozen=True)
class Outcome:
    kind: Literal["delivered", "dead", "dropped"]
    reason: str = ""


# (endpoint name, delivery, outcome): the worker dead-letters, counts and releases the offset.
Finish = Callable[[str, Delivery, Outcome], None]


class _RetryableError(Exception):
    """An attempt that may succeed later: the breaker counts it as a failure."""

    def __init__(self, reason_class: str, error: str, status: int | None, after: float | None):
        super().__init__(error)
        self.reason_class = reason_class
        self.error = error
        self.status = status
        self.retry_after_s = after


class Endpoint:
    def __init__(
        self,
        subscription: WebhookSubscription,
        settings: NotifySettings,
        fetcher: SafeFetcher,
        finish: Finish,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.name = subscription.name
        self.subscription = subscription
        self._secret = subscription.secret_bytes()
        self._settings = settings
        self._fetcher = fetcher
        self._finish = finish
        self._clock = clock
        self._wall = wall
        self._jitter = jitter
        self.breaker = EndpointBreaker(
            self.name, settings.breaker_failures, settings.breaker_reset_s, clock
        )
        # Both guarded by _cond. The thread takes an event off the queue before attempting
        # it and holds it in _current, so `withdraw` can never take the one in flight.
        self._queue: deque[Delivery] = deque()
        self._current: Delivery | None = None
        self._cond = threading.Condition()
        self._closing = threading.Event()  # no new events; finish those in hand
        self._halt = threading.Event()  # stop now; what is in hand stays unfinished
        self.disabled = False
        # When the endpoint's current run of failed attempts began; None once it answers.
        # Only the endpoint's thread reads or writes it.
        self._failing_since: float | None = None
        self._pending = NOTIFY_PENDING.labels(self.name)
        self._pending.set(0)
        NOTIFY_DISABLED.labels(self.name).set(0)
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}", daemon=True)
        self.broken: str | None = None  # why the thread ended before it was told to

    # --- the consumer's side ------------------------------------------------------------

    def wants(self, event: WebhookEvent) -> bool:
        sub = self.subscription
        return webhooks.matches(event, sub.events, sub.categories)

    def offer(self, event: WebhookEvent, ticket: Ticket) -> None:
        """Queues the event, or finishes it at once: dropped when the receiver ended the
        subscription, dead-lettered when this endpoint already holds `max_pending`."""
        delivery = Delivery(event, ticket, queued=self._clock())
        with self._cond:
            if not self.disabled and self._held() < self._settings.max_pending:
                self._queue.append(delivery)
                self._pending.set(self._held())
                self._cond.notify()
                return
            disabled = self.disabled
        if disabled:
            self._finish(self.name, delivery, Outcome("dropped", "gone"))
        else:
            delivery.last_error = f"{self._settings.max_pending} events already waiting"
            self._finish(self.name, delivery, Outcome("dead", "backlog_full"))

    def pending(self) -> int:
        """Events waiting or being attempted."""
        with self._cond:
            return self._held()

    def withdraw(self, tps: Collection[TopicPartition]) -> int:
        """Takes back the events of these partitions, now another consumer's, and says how
        many: they are neither finished nor dead-lettered, the partitions' new owner
        delivers them. The one being attempted is marked so: its thread lets an attempt
        under way end, then drops it without another attempt or finishing it."""
        gone = set(tps)
        with self._cond:
            kept = [d for d in self._queue if d.ticket.tp not in gone]
            taken = len(self._queue) - len(kept)
            if taken:
                self._queue.clear()
                self._queue.extend(kept)
                self._pending.set(self._held())
            current = self._current
            if current is not None and current.ticket.tp in gone and not current.withdrawn:
                current.withdrawn = True
                taken += 1
                self._cond.notify_all()  # cuts its backoff or breaker wait short
        return taken

    def _held(self) -> int:
        # Under _cond. What max_pending bounds and the gauge shows: queued or in flight.
        return len(self._queue) + (self._current is not None)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Finish what is queued, then end the thread."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()

    def halt(self) -> None:
        """End now: waits and retries are cut, an attempt under way ends by its timeout."""
        self._halt.set()
        self.close()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            return True  # never started
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the endpoint's thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing.is_set():
                    self._cond.wait()
                if not self._queue or self._halt.is_set():
                    return
                delivery = self._current = self._queue.popleft()
            delivery.first_turn = self._clock()
            try:
                outcome = self._deliver(delivery)
            except Exception:
                # A bug must not silently stop this endpoint while the others go on.
                log.exception(f"webhook endpoint {self.name}: delivery failed unexpectedly")
                delivery.last_error = "internal error (see the log)"
                outcome = Outcome("dead", "internal_error")
            if outcome is None and self._halt.is_set():
                return
            with self._cond:
                self._current = None
                self._pending.set(self._held())
                withdrawn = delivery.withdrawn
            if withdrawn:
                continue  # the partition's new owner delivers it, or dead-letters it
            assert outcome is not None  # only a halt or a withdrawal ends without one
            try:
                self._finish(self.name, delivery, outcome)
            except Exception as exc:
                # The event stays unfinished, so its offset is never committed; the worker
                # reports itself not live and is restarted, and the event comes again.
                log.exception(f"webhook endpoint {self.name}: finishing an event failed")
                self.broken = f"finishing an event failed: {exc}"
                return

    def _pause(self, seconds: float) -> None:
        """Waits, cut short by a halt or by the withdrawal of the event in hand."""
        if seconds > 0:
            with self._cond:
                self._cond.wait_for(self._stop_waiting, seconds)

    def _stop_waiting(self) -> bool:
        # Under _cond.
        current = self._current
        return self._halt.is_set() or (current is not None and current.withdrawn)

    def _deliver(self, delivery: Delivery) -> Outcome | None:
        """The event's outcome; None when halted or withdrawn before it had one."""
        settings = self._settings
        while not self._halt.is_set() and not delivery.withdrawn:
            if self.disabled:
                return Outcome("dropped", "gone")
            left = self._budget_left(delivery)
            if left <= 0:
                return Outcome("dead", "budget_exhausted")
            wait = self.breaker.wait_s()
            if wait > 0:
                # Skipped while the breaker cools down; the wait is not an attempt.
                delivery.last_error = delivery.last_error or "circuit breaker open"
                self._pause(min(wait, left))
                continue
            delivery.attempts += 1
            began = self._clock()
            try:
                answer = self.breaker.call(lambda: self._attempt(delivery))
            except pybreaker.CircuitBreakerError:
                continue
            except _RetryableError as failed:
                if self._failing_since is None:
                    self._failing_since = began
                delivery.last_status, delivery.last_error = failed.status, failed.error
                NOTIFY_FAILED.labels(self.name, failed.reason_class).inc()
                if delivery.attempts >= settings.max_attempts:
                    return Outcome("dead", "retries_exhausted")
                # Again: the attempt took time, and the endpoint may be failing since.
                left = self._budget_left(delivery)
                self._pause(min(self._backoff(delivery.attempts, failed), left))
                continue
            self._failing_since = None  # it answered (or our own rules refused the URL)
            return self._judge(delivery, answer)
        return None

    def _budget_left(self, delivery: Delivery) -> float:
        """Seconds left of the event's retry budget: from its first turn, or, while the
        endpoint keeps failing, from when it began to or the event was queued, whichever
        is later, if that is earlier (see the module's docstring)."""
        since = delivery.queued if delivery.first_turn is None else delivery.first_turn
        if self._failing_since is not None:
            since = min(since, max(delivery.queued, self._failing_since))
        return since + self._settings.retry_budget_s - self._clock()

    def _backoff(self, attempts: int, failed: _RetryableError) -> float:
        settings = self._settings
        return webhooks.backoff_s(
            attempts,
            initial_s=settings.backoff_initial_s,
            max_s=settings.backoff_max_s,
            jitter=self._jitter(),
            retry_after_s=failed.retry_after_s,
            retry_after_max_s=settings.retry_after_max_s,
        )

    def _attempt(self, delivery: Delivery) -> PostResult | FetchError:
        """One POST. Raises _RetryableError for what the breaker counts as the endpoint failing;
        returns a refusal by our own SSRF rules, which is not the endpoint's doing."""
        event = delivery.event
        headers = webhooks.headers(event, self._secret, int(self._wall()))
        try:
            result = self._fetcher.post(self.subscription.url, event.body, headers)
        except FetchError as exc:
            if exc.kind == "refused":
                return exc
            # Timeouts, refused connections, resets, but also DNS and TLS errors: the
            # endpoint is what is broken, not the event, and it may be mended.
            raise _RetryableError(
                exc.reason_class, str(exc), exc.status, exc.retry_after_s
            ) from exc
        NOTIFY_SECONDS.labels(self.name).observe(result.seconds)
        if webhooks.verdict(result.status) == "retry":
            error = f"HTTP {result.status}"
            # Retry-After means "come back then" on a 429 or a 503 only (RFC 9110, 6585);
            # on a 500 it is no promise, and honouring it would hold up the queue for it.
            after = result.retry_after_s if result.status in (429, 503) else None
            raise _RetryableError(f"http_{result.status}", error, result.status, after)
        return result

    def _judge(self, delivery: Delivery, answer: PostResult | FetchError) -> Outcome:
        if isinstance(answer, FetchError):
            delivery.last_error = str(answer)
            NOTIFY_FAILED.labels(self.name, "ssrf").inc()
            log.error(
                f"webhook endpoint {self.name}: destination refused: {answer}",
                extra={"endpoint": self.name},
            )
            return Outcome("dead", "refused")
        delivery.last_status = answer.status
        kind = webhooks.verdict(answer.status)
        if kind == "delivered":
            NOTIFY_DELIVERED.labels(self.name, delivery.event.type).inc()
            return Outcome("delivered")
        if kind == "gone":
            self._disable()
            return Outcome("dropped", "gone")
        delivery.last_error = f"HTTP {answer.status}: {answer.answer[:200]!r}"
        NOTIFY_FAILED.labels(self.name, f"http_{answer.status}").inc()
        return Outcome("dead", "rejected")

    def _disable(self) -> None:
        with self._cond:
            self.disabled = True
        NOTIFY_DISABLED.labels(self.name).set(1)
        log.warning(
            f"webhook endpoint {self.name} answered 410 Gone: subscription disabled, its "
            "events are dropped until this worker restarts; remove it from notify.subscriptions",
            extra={"endpoint": self.name},
        )
