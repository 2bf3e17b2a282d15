from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.times import day_order, localise, read_column, read_datetime, read_time

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(("tz", "text", "expected", "note"), [
    # Europe/London, autumn: 01:00-02:00 happens twice; the first (BST) is taken
    (LONDON, "2026-10-25 01:30", "2026-10-25 00:30", "repeated when the clocks went back"),
    (LONDON, "2026-10-25 01:30 GMT", "2026-10-25 01:30", None),  # the second, said so
    (LONDON, "2026-10-25 01:30 +01:00", "2026-10-25 00:30", None),
    (LONDON, "2026-10-25 00:59", "2026-10-24 23:59", None),
    (LONDON, "2026-10-25 02:00", "2026-10-25 02:00", None),
    # Europe/London, spring: 01:00-02:00 never happens; read as a clock not yet changed
    (LONDON, "2026-03-29 01:30", "2026-03-29 01:30", "skipped when the clocks went forward"),
    (LONDON, "2026-03-29 00:59", "2026-03-29 00:59", None),
    (LONDON, "2026-03-29 02:00", "2026-03-29 01:00", None),
    # America/New_York: 1 November 01:00-02:00 twice, 8 March 02:00-03:00 never
    (NEW_YORK, "11/1/2026 1:30 AM", "2026-11-01 05:30", "repeated when the clocks went back"),
    (NEW_YORK, "11/1/2026 1:30 AM EST", "2026-11-01 06:30", None),
    (NEW_YORK, "3/8/2026 2:30 AM", "2026-03-08 07:30", "skipped when the clocks went forward"),
    (NEW_YORK, "3/8/2026 3:00 AM", "2026-03-08 07:00", None),
])
def test_clock_changes(tz, text, expected, note):
    read = read_datetime(text, tz, "month-first")
    assert read.value == utc(expected) and read.problem is None
    assert (read.note is None) if note is None else note in read.note


@pytest.mark.parametrize(("text", "expected"), [
    ("2026/09/14 9:41:12 PM GMT+1", "2026-09-14 20:41:12"),  # Google's CSV download
    ("2026/11/14 10:00:00 AM GMT-5:30", "2026-11-14 15:30:00"),
    ("2026-11-03 10:00 GMT", "2026-11-03 10:00"),
    ("2026-11-03 10:00 BST", "2026-11-03 09:00"),
    ("2026-11-03 10:00 UTC", "2026-11-03 10:00"),
    ("2026-07-03T10:00:00+01:00", "2026-07-03 09:00"),
    ("2026-07-03T10:00:00.250Z", "2026-07-03 10:00:00.25"),
    ("2026-07-03 10:00 (GMT+1)", "2026-07-03 09:00"),
    ("Tue 3 Nov 2026 at 10:00", "2026-11-03 10:00"),
    ("Nov 3, 2026 10:00 pm", "2026-11-03 22:00"),
    ("3\u00a0Nov\u200b 2026 10:00", "2026-11-03 10:00"),  # no-break and zero-width spaces
])
def test_offsets_zone_names_and_written_months_are_honoured(text, expected):
    assert read_datetime(text, LONDON).value == utc(expected)


@pytest.mark.parametrize(("text", "why"), [
    ("now", "not a date"), ("Today", "not a date"), ("9999-12-31 23:59", "year 9999"),
    ("31/02/2026 10:00", "not a calendar date"), ("13/13/2026", "neither 13 nor 13"),
    ("10:00 GMT", "not a date and time"), ("N/A", "not a date and time"),
    ("2026-11-03 10:00 XYZ", "time zone 'XYZ'"), ("2026-11-03 25:00", "not a time of day"),
    ("2026-11-03 10", "hours and minutes"), ("", "no date"), ("x" * 5000, "…"),
])
def test_what_cannot_be_read_says_why(text, why):
    read = read_datetime(text, LONDON)
    assert read.value is None and why in read.problem
    assert len(read.problem) < 200  # a reason names a long value, it does not copy it


def test_iso_is_never_day_first_and_the_column_decides_the_order():
    assert day_order(["2026-11-03 10:00", "2026/11/03"], dayfirst=True) == ("day-first", None)
    assert read_datetime("2026-11-03 10:00", LONDON, "day-first").value == utc(
        "2026-11-03 10:00")
    us = ["10/6/2026 10:00", "10/18/2026 09:00", "3/4/2026 08:00"]
    for dayfirst in (True, False):
        column = read_column(us, LONDON, dayfirst)
        assert column.order == "month-first" and column.contradiction is None
        assert [r.value for r in column.values] == [
            utc("2026-10-06 09:00"), utc("2026-10-18 08:00"), utc("2026-03-04 08:00")]
    assert day_order(["3/4/2026"], dayfirst=True) == ("day-first", None)  # only a tie
    assert day_order(["3/4/2026"], dayfirst=False) == ("month-first", None)


def test_a_column_in_both_orders_is_named_and_its_ambiguous_values_refused():
    column = read_column(["25/10/2026", "10/18/2026", "3/4/2026", "4/4/2026"], LONDON, True)
    assert column.contradiction == "'25/10/2026' is day-first but '10/18/2026' is month-first"
    proven_day, proven_month, ambiguous, same = column.values
    assert proven_day.value == utc("2026-10-24 23:00")
    assert proven_month.value == utc("2026-10-17 23:00")
    assert ambiguous.value is None and "3 April or 4 March" in ambiguous.problem
    assert same.value == utc("2026-04-03 23:00")  # 4/4 reads the same either way


def test_times_of_day():
    assert read_time("9.30pm") == ("21:30", None)
    assert read_time("20:00 GMT") == ("20:00", None)
    assert read_time("12 am") == ("00:00", None)
    assert read_time("now")[0] is None and "not a time of day" in read_time("now")[1]
    assert read_time("25:99")[0] is None
    assert read_time("10")[0] is None


@given(st.text())
def test_nothing_raises(text):
    for tz in (LONDON, NEW_YORK):
        for order in ("day-first", "month-first"):
            read = read_datetime(text, tz, order)
            assert (read.value is None) != (read.problem is None)
    read_time(text)
    read_column([text, text], LONDON, True)


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 12, 30),
                    timezones=st.sampled_from([UTC, LONDON, NEW_YORK])))
def test_an_aware_time_written_with_its_offset_reads_back(when):
    text = when.isoformat(sep=" ", timespec="microseconds")
    assert read_datetime(text, LONDON).value == pd.Timestamp(when).tz_convert("UTC")


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
       st.sampled_from([LONDON, NEW_YORK]))
def test_a_wall_clock_time_keeps_its_wall_clock_unless_it_never_happened(naive, tz):
    read = localise(naive, tz)
    back = read.value.tz_convert(tz).tz_localize(None).to_pydatetime()
    if read.note and "skipped" in read.note:
        assert back - naive == timedelta(hours=1)
    else:
        assert back == naive


@given(st.lists(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
                min_size=1, max_size=20))
def test_a_month_first_column_reads_the_same_whatever_dayfirst_says(days):
    days = [*days, date(2026, 10, 18)]  # one value proves the order
    texts = [f"{d.month}/{d.day}/{d.year}" for d in days]
    for dayfirst in (True, False):
        column = read_column(texts, LONDON, dayfirst)
        assert [r.value.tz_convert(LONDON).date() for r in column.values] == days
