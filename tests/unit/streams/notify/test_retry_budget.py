"""The retry budget counts from an event's first turn, not from when it was queued: a burst
at a slow but healthy receiver is delivered, not dead-lettered unattempted. While the
endpoint keeps failing it counts from when the failing began (or from the queue, if
later), so a dead receiver's queue drains in about one budget, not one budget per event,
and a backlog at a receiver that fails a while and recovers is still delivered.

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


def test_while_the_endpoint_keeps_failing_the_budget_counts_from_then_so_a_dead_one_drains(
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
    # cool-down); the others' budgets, counted from when it began failing, were spent
    # by their turn: given up on without a POST, not after a budget each.
    assert outcomes["q0"][1] >= 2
    assert [outcomes[i][1] for i in queued[1:]] == [0, 0, 0]
    assert set(dead.attempts()) == {event("q0").event_id}
    assert endpoint.breaker.state == "open"
    assert clock() < 2 * BUDGET  # the whole queue in about one budget of (fake) time
    assert endpoint.pending() == 0


def test_a_backlog_outlives_a_short_outage_that_opened_the_breaker(
    halted: list[Endpoint],
) -> None:
    clock = FakeTime()

    def answer(n: int) -> int:
        if n <= 4:
            clock.advance(90.0)  # slow but healthy: the backlog ages past the budget
            return 200
        return 503 if n <= 6 else 200  # two failures open the breaker, then it is back

    receiver = Receiver(answer, clock=clock, takes_s=10.0)
    endpoint, finished = _endpoint(
        receiver, clock, halted, breaker_failures=2, breaker_reset_s=30, max_attempts=100
    )
    ledger = Ledger()
    backlog = [f"b{n}" for n in range(8)]
    for offset, image_id in enumerate(backlog):
        endpoint.offer(event(image_id), ledger.add(("t", 0), offset, 1))
    endpoint.start()
    outcomes = finished.wait(len(backlog))
    # Queued at t=0 and 400 s old when the outage began, every event is still delivered:
    # the budget of those queued before it counts from the outage, not from the queue.
    assert {o for o, _ in outcomes.values()} == {Outcome("delivered")}
    assert receiver.attempts()[event("b4").event_id] == 3  # two 503s, then the probe
    assert all(receiver.attempts()[event(i).event_id] == 1 for i in backlog if i != "b4")
