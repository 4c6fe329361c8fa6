"""The list's filters as a query gives them: closed sets checked, times made comparable
with the records' own (UTC, milliseconds, Z)."""

from __future__ import annotations

import pytest

from streams.catalog.console_api import read_filters
from streams.catalog.listing import Filters


def test_times_in_any_offset_become_the_records_utc_form() -> None:
    filters = read_filters({"since": "2026-12-02", "until": "2026-12-02T10:30:00+01:00"})
    assert filters == Filters(since="2026-12-02T00:00:00.000Z", until="2026-12-02T09:30:00.000Z")
    # Compared as strings, as the index compares them, the instants order rightly.
    assert filters.since is not None and filters.until is not None
    assert filters.since <= "2026-12-02T09:00:00.000Z" < filters.until


def test_empty_values_are_no_filter() -> None:
    assert read_filters({"status": "", "q": ""}) == Filters()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"status": "DONE"}, "status is one of done, failed, processing, rejected"),
        ({"duplicate": "maybe"}, "duplicate is one of any, exact, near, none"),
        ({"until": "next week"}, "until is an ISO 8601 date or time"),
    ],
)
def test_a_bad_value_is_named(query: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        read_filters(query)
