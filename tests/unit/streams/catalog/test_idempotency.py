"""Requests with one Idempotency-Key run once: a retry sent while the first is still under
way waits for the first's answer instead of submitting the image a second time."""

from __future__ import annotations

import threading
from typing import cast

from streams.app.settings import Settings
from streams.catalog.index import CatalogIndex
from streams.catalog.submissions import Outcome, Submissions


def test_two_requests_with_one_key_at_once_do_the_work_once() -> None:
    submissions = Submissions(cast(Settings, None), CatalogIndex())
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def work() -> Outcome:
        calls.append(1)
        started.set()
        release.wait(5)  # still under way when the retry comes
        return Outcome(image_id=f"img-{len(calls)}")

    answers: list[Outcome] = []
    first = threading.Thread(target=lambda: answers.append(submissions._once("k", "h", work)))
    first.start()
    assert started.wait(5)
    retry = threading.Thread(target=lambda: answers.append(submissions._once("k", "h", work)))
    retry.start()
    retry.join(0.2)
    assert retry.is_alive()  # waiting for the first, not submitting again
    release.set()
    first.join(5)
    retry.join(5)
    assert len(calls) == 1
    assert [a.image_id for a in answers] == ["img-1", "img-1"]
    assert submissions._gates == {}  # nothing kept once both are answered
    # Another key is not held up by this one, and a failed answer is not remembered.
    failed = Outcome(problem=(503, "unavailable", "try again"))
    assert submissions._once("other", "h", lambda: failed) is failed
    assert submissions._once("other", "h", lambda: Outcome(image_id="img-9")).image_id == "img-9"
