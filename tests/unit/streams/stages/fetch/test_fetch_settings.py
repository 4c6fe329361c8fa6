"""A download never outlives its batch, so the settings say so: a total timeout longer
than the batch could never apply and is refused; none leaves the batch in charge."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.stages.fetch.settings import FetchSettings


def test_a_total_timeout_longer_than_the_batch_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        FetchSettings(total_timeout_s=60.0, batch_budget_s=10.0)
    message = str(refused.value)
    assert "total_timeout_s (60 s) is longer than batch_budget_s (10 s)" in message
    assert "raise batch_budget_s" in message


def test_by_default_a_download_may_take_the_batch_budget() -> None:
    settings = FetchSettings(batch_budget_s=25.0)
    assert settings.total_timeout_s is None
    assert settings.download_timeout_s() == 25.0


def test_a_shorter_total_timeout_applies() -> None:
    assert FetchSettings(total_timeout_s=4.0, batch_budget_s=10.0).download_timeout_s() == 4.0
