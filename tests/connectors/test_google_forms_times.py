"""The Forms API's timestamps: whatever a response carries, reading it raises nothing."""

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from connectors.google_forms import parse_time


def test_times_out_of_range_or_not_times_are_none():
    for text in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-13-01T00:00:00Z",
                 "2026-02-30T00:00:00Z", "2026-11-16T09:00:00+99:00", "garbage", "now",
                 "today", "", "  ", "\x00", "1e400"):
        assert parse_time(text) is None, text
    assert parse_time(12345) is None  # type: ignore[arg-type]
    assert parse_time("2026-11-16T10:00:00+01:00") == pd.Timestamp("2026-11-16 09:00",
                                                                    tz="UTC")


@given(st.text(max_size=40))
def test_any_text_reads_without_raising(text):
    ts = parse_time(text)
    assert ts is None or (ts.tzinfo is not None and 1900 <= ts.year <= 2100)
