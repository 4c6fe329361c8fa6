"""The ledger's metrics before any batch: every outcome's series is there, at 0."""

from __future__ import annotations

from prometheus_client import REGISTRY

from streams.runner.accounting import HaltPolicy, Ledger


def test_every_outcome_series_exists_at_zero_before_the_first_commit() -> None:
    # An alert on `rate(pixelfleet_messages_total[10m]) == 0` matches only series that
    # exist: a worker stuck before its first commit must still have them.
    Ledger("ledger-test", HaltPolicy(10))
    found = {
        outcome: REGISTRY.get_sample_value(
            "pixelfleet_messages_total", {"stage": "ledger-test", "outcome": outcome}
        )
        for outcome in ("ok", "skipped", "deferred", "rejected", "failed")
    }
    assert found == dict.fromkeys(found, 0.0)
