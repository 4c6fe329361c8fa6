"""The retry budget counts from an event's first turn, not from when it was queued: a burst
at a slow but healthy receiver is delivered, not dead-lettered unattempted. While the
endpoint's breaker is open it counts from queue time again, so a dead receiver's queue
drains in about one budget, not one budget per event.

Time is a fake clock: a POST moves it by the receiver's `takes_s`, a pause (backoff,
cool-down) by its length, so no test waits for real."""

from __future__ import annotations

from streams.config.notify import NotifySettings, WebhookSubscription
from streams.notify.delivery import Endpoint, Outcome
from streams.notify.ledger import Ledger
from tests.unit.streams.notify.fakes import FakeTime, Finished, Receiver, event

SUB = WebhookSubscription(name="budget", url="https://hooks.example.com/in", secret="k")  # type: ignore[arg-type]
BUDGET = 250.0


def _endpoint(
    receiver: Receiver, clock: FakeTime, halted: list[Endpoint], **settings: float
) -> tuple[Endpoint, Finished]:
    finished = Finished()
    section = NotifySettings.model_validate(
        {"retry_budget_s": BUDGET, "backoff_initial_s": 0.001, "backoff_max_s": 0.002, **settings}
    )
    endpoint = Endpoint(SUB, section, receiver, finished, clock=clock)  # type: ignore[arg-type]
    # Pauses pass on the fake clock: a cool-down of 30 s takes no real time.
    endpoint._pause = clock.advance  # type: ignore[method-assign]
    halted.append(endpoint)
    return endpoint, finished


def test_a_burst_at_a_slow_healthy_endpoint_is_delivered_not_budget_exhausted(
    halted: list[Endpoint],
) -> None:
    clock = FakeTime()
    receiver = Receiver(clock=clock, takes_s=100.0)  # 2xx, each after 100 s
    endpoint, finished = _endpoint(receiver, clock, halted, breaker_failures=1000)
    ledger = Ledger()
    burst = [f"burst-{n}" for n in range(5)]
    for offset, image_id in enumerate(burst):  # all queued at t=0, before the thread starts
        endpoint.offer(event(image_id), ledger.add(("t", 0), offset, 1))
    endpoint.start()
    outcomes = finished.wait(len(burst))
    # The last one waited 400 s in the queue, past the 250 s budget: still delivered.
    assert outcomes == {image_id: (Outcome("delivered"), 1) for image_id in burst}
    assert receiver.attempts() == {event(image_id).event_id: 1 for image_id in burst}
    assert clock() == 500.0


def test_a_failing_event_still_gets_its_whole_budget_from_its_first_turn(
    halted: list[Endpoint],
) -> None:
    clock = FakeTime()
    slow_then_failing = Receiver(lambda n: 200 if n <= 3 else 500, clock=clock, takes_s=100.0)
    endpoint, finished = _endpoint(
        slow_then_failing, clock, halted, breaker_failures=1000, max_attempts=100
    )
    ledger = Ledger()
    for offset in range(4):
        endpoint.offer(event(f"e{offset}"), ledger.add(("t", 0), offset, 1))
    endpoint.start()
    outcomes = finished.wait(4)
    # e3's turn came at t=300; its 500s then took 100 s each until 250 s of it were spent.
    assert outcomes["e3"] == (Outcome("dead", "budget_exhausted"), 3)
    assert slow_then_failing.attempts()[event("e3").event_id] == 3


def test_while_the_breaker_is_open_the_budget_counts_from_queue_time_so_a_dead_endpoint_drains(
    halted: list[Endpoint],
) -> None:
    clock = FakeTime()
    dead = Receiver(lambda _n: 503, clock=clock, takes_s=10.0)
    endpoint, finished = _endpoint(
        dead, clock, halted, breaker_failures=2, breaker_reset_s=30, max_attempts=100
    )
    ledger = Ledger()
    queued = [f"q{n}" for n in range(4)]
    for offset, image_id in enumerate(queued):
        endpoint.offer(event(image_id), ledger.add(("t", 0), offset, 1))
    endpoint.start()
    outcomes = finished.wait(len(queued))
    assert {o for o, _ in outcomes.values()} == {Outcome("dead", "budget_exhausted")}
    # The first event was tried (two failures opened the breaker, then one probe per
    # cool-down); the others' budgets, counted from the queue while it is open, were spent
    # by their turn: given up on without a POST, not after a budget each.
    assert outcomes["q0"][1] >= 2
    assert [outcomes[i][1] for i in queued[1:]] == [0, 0, 0]
    assert set(dead.attempts()) == {event("q0").event_id}
    assert endpoint.breaker.state == "open"
    assert clock() < 2 * BUDGET  # the whole queue in about one budget of (fake) time
    assert endpoint.pending() == 0
