"""One endpoint's decisions, with a scripted stand-in for the HTTP client (the integration
tests use real receivers): what is retried, what is given up on and why, what a 410 does,
and the bound on what one endpoint may hold."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processors import webhooks
from processors.webhooks import WebhookEvent
from streams.config.notify import NotifySettings, WebhookSubscription
from streams.io.safe_http import FetchError, PostResult
from streams.notify.delivery import Delivery, Endpoint, Outcome
from streams.notify.ledger import Ledger
from tests.unit.streams.notify import events

Answer = Callable[[int], PostResult]


def status(code: int) -> Answer:
    return lambda _n: PostResult(code, None, "192.0.2.1", 0.01, b"")


def raising(error: FetchError) -> Answer:
    def answer(_n: int) -> PostResult:
        raise error

    return answer


class ScriptedClient:
    """Answers each POST from a script; counts them and checks each signature."""

    def __init__(self, answer: Answer, tick: Callable[[], None] = lambda: None) -> None:
        self.answer = answer
        self.tick = tick
        self.calls = 0
        self.signed_ok = True

    def post(self, url: str, body: bytes, headers: dict[str, str], **_: Any) -> PostResult:
        self.calls += 1
        stamp, signature = headers["X-Pixelfleet-Timestamp"], headers["X-Pixelfleet-Signature"]
        self.signed_ok &= webhooks.sign(b"k", int(stamp), body) == signature
        self.tick()
        return self.answer(self.calls)


class Finished:
    def __init__(self) -> None:
        self.outcomes: list[tuple[Delivery, Outcome]] = []
        self.event = threading.Event()

    def __call__(self, _endpoint: str, delivery: Delivery, outcome: Outcome) -> None:
        self.outcomes.append((delivery, outcome))
        self.event.set()

    def wait(self, count: int = 1) -> list[tuple[Delivery, Outcome]]:
        for _ in range(200):
            if len(self.outcomes) >= count:
                break
            self.event.wait(0.05)
            self.event.clear()
        return self.outcomes


FAST = {
    "backoff_initial_s": 0.001,
    "backoff_max_s": 0.002,
    "breaker_failures": 1000,
    "max_attempts": 4,
}
SUB = WebhookSubscription(name="ep", url="https://hooks.example.com/in", secret="k")  # type: ignore[arg-type]


def _event(image_id: str = "img") -> WebhookEvent:
    event = webhooks.from_done(events.done(image_id))
    assert event is not None
    return event


@pytest.fixture
def endpoints() -> Iterator[Callable[..., tuple[Endpoint, Finished]]]:
    made: list[Endpoint] = []

    def make(
        client: ScriptedClient, clock: Callable[[], float] | None = None, **settings: Any
    ) -> tuple[Endpoint, Finished]:
        finished = Finished()
        section = NotifySettings.model_validate({**FAST, **settings})
        extra = {"clock": clock} if clock else {}
        endpoint = Endpoint(SUB, section, client, finished, **extra)  # type: ignore[arg-type]
        made.append(endpoint)
        return endpoint, finished

    yield make
    for endpoint in made:
        endpoint.halt()
        endpoint.join(2)


def test_a_2xx_is_delivered_at_the_first_attempt(endpoints: Any) -> None:
    client = ScriptedClient(status(202))
    endpoint, finished = endpoints(client)
    ledger = Ledger()
    endpoint.start()
    endpoint.offer(_event(), ledger.add(("t", 0), 5, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome == Outcome("delivered") and delivery.attempts == 1
    assert client.signed_ok
    ledger.done(delivery.ticket)
    assert ledger.in_hand() == 0 and ledger.positions() == {("t", 0): 6}


def test_5xx_is_retried_until_the_attempts_are_spent_then_dead_lettered(endpoints: Any) -> None:
    client = ScriptedClient(status(503))
    endpoint, finished = endpoints(client)
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome == Outcome("dead", "retries_exhausted")
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (4, 503, "HTTP 503")
    assert client.calls == 4


def test_a_transient_transport_error_is_retried_and_can_succeed(endpoints: Any) -> None:
    reset = FetchError("transient", "reset", "connection broke", url="u")

    def flaky(n: int) -> PostResult:
        return raising(reset)(n) if n < 3 else status(200)(n)

    endpoint, finished = endpoints(ScriptedClient(flaky))
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome.kind == "delivered" and delivery.attempts == 3


@pytest.mark.parametrize("code", [400, 401, 404, 422, 302])
def test_another_4xx_or_a_redirect_is_dead_lettered_without_retrying(
    endpoints: Any, code: int
) -> None:
    client = ScriptedClient(status(code))
    endpoint, finished = endpoints(client)
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome == Outcome("dead", "rejected") and delivery.last_status == code
    assert client.calls == 1


def test_a_destination_refused_by_the_guard_is_dead_lettered_and_not_the_breakers_business(
    endpoints: Any,
) -> None:
    refused = FetchError("refused", "ssrf", "ssrf: 10.0.0.5 is private", url="u")
    endpoint, finished = endpoints(ScriptedClient(raising(refused)), breaker_failures=1)
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome == Outcome("dead", "refused")
    assert "10.0.0.5 is private" in (delivery.last_error or "")
    assert endpoint.breaker.state == "closed"


def test_410_disables_the_endpoint_and_drops_what_follows(endpoints: Any) -> None:
    client = ScriptedClient(status(410))
    endpoint, finished = endpoints(client)
    endpoint.start()
    ledger = Ledger()
    endpoint.offer(_event("a"), ledger.add(("t", 0), 0, 1))
    finished.wait(1)
    endpoint.offer(_event("b"), ledger.add(("t", 0), 1, 1))
    outcomes = [o for _, o in finished.wait(2)]
    assert outcomes == [Outcome("dropped", "gone"), Outcome("dropped", "gone")]
    assert endpoint.disabled and client.calls == 1


def test_an_endpoint_holds_at_most_max_pending_events(endpoints: Any) -> None:
    endpoint, finished = endpoints(ScriptedClient(status(200)), max_pending=2)
    ledger = Ledger()
    for offset in range(3):  # not started: nothing leaves the queue
        endpoint.offer(_event(f"i{offset}"), ledger.add(("t", 0), offset, 1))
    ((delivery, outcome),) = finished.outcomes
    assert outcome == Outcome("dead", "backlog_full") and delivery.event.image_id == "i2"
    assert endpoint.pending() == 2


def test_the_retry_budget_bounds_an_events_time_whatever_its_attempts(endpoints: Any) -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow() -> None:
        now[0] += 100.0  # every attempt takes 100 s of the budget

    client = ScriptedClient(status(500), tick=slow)
    endpoint, finished = endpoints(client, clock, retry_budget_s=250, max_attempts=100)
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome == Outcome("dead", "budget_exhausted")
    assert delivery.attempts == 3 and delivery.last_status == 500


def test_an_open_breaker_skips_the_endpoint_until_its_cool_down(endpoints: Any) -> None:
    client = ScriptedClient(lambda n: status(503)(n) if n <= 2 else status(200)(n))
    endpoint, finished = endpoints(client, breaker_failures=2, breaker_reset_s=0.3)
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((delivery, outcome),) = finished.wait()
    assert outcome.kind == "delivered" and delivery.attempts == 3
    assert endpoint.breaker.state == "closed"


def test_a_failure_to_finish_an_event_is_reported_not_swallowed() -> None:
    """When parking an event raises (Kafka refused the producer call), the endpoint says
    it is broken, so the worker's liveness fails; the event stays unfinished."""

    def refusing(_endpoint: str, _delivery: Delivery, _outcome: Outcome) -> None:
        raise RuntimeError("producer is fenced")

    section = NotifySettings.model_validate(FAST)
    endpoint = Endpoint(SUB, section, ScriptedClient(status(204)), refusing)  # type: ignore[arg-type]
    ledger = Ledger()
    endpoint.start()
    endpoint.offer(_event(), ledger.add(("t", 0), 9, 1))
    assert endpoint.join(5)  # the thread ended
    assert endpoint.broken is not None and "producer is fenced" in endpoint.broken
    assert ledger.positions() == {("t", 0): 9}  # committed up to the event, never past it


@pytest.mark.parametrize(("code", "honoured"), [(503, True), (429, True), (500, False)])
def test_retry_after_is_honoured_on_a_429_or_503_only(
    endpoints: Any, code: int, honoured: bool
) -> None:
    def answer(n: int) -> PostResult:
        return PostResult(code, 120.0, "192.0.2.1", 0.01, b"") if n == 1 else status(204)(n)

    endpoint, finished = endpoints(ScriptedClient(answer))
    waits: list[float] = []
    endpoint._pause = waits.append  # type: ignore[method-assign]  # asked for, not waited
    endpoint.start()
    endpoint.offer(_event(), Ledger().add(("t", 0), 0, 1))
    ((_delivery, outcome),) = finished.wait()
    assert outcome == Outcome("delivered")
    # FAST's backoff is a few milliseconds; a Retry-After of 120 s is honoured or not.
    if honoured:
        assert waits == [120.0]
    else:
        assert len(waits) == 1 and waits[0] < 1, waits
