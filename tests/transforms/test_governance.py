"""When the governance emails fall due, and the Summary sheet's layout."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from transforms.governance import due, key, next_slot, summary_grid, weekly_counts
from transforms.metrics import Metrics, Period, month_of, week_of

LONDON = ZoneInfo("Europe/London")
MONDAY_8 = (0, 8)
FIRST_8 = (1, 8)


@pytest.mark.parametrize("now, weekly_label, board_label", [
    (datetime(2026, 11, 23, 8, 0), "2026-W47", "2026-10"),   # the Monday slot itself
    (datetime(2026, 11, 23, 7, 59), "2026-W46", "2026-10"),  # before it: last week's slot
    (datetime(2026, 11, 26, 15, 0), "2026-W47", "2026-10"),  # a late run catches up
    (datetime(2026, 12, 1, 7, 0), "2026-W48", "2026-10"),    # board: not yet December's
    (datetime(2026, 12, 1, 8, 0), "2026-W48", "2026-11"),
    (datetime(2027, 1, 4, 9, 0), "2026-W53", "2026-12"),  # 2026 has 53 ISO weeks
])
def test_each_email_is_owed_for_the_latest_period_whose_slot_has_come(now, weekly_label,
                                                                       board_label):
    owed = dict(due(now, MONDAY_8, FIRST_8))
    assert owed["weekly_review"].label == weekly_label
    assert owed["board_summary"].label == board_label
    assert key("weekly_review", owed["weekly_review"]) == f"review:{weekly_label}"
    assert key("board_summary", owed["board_summary"]) == f"board:{board_label}"


def test_a_review_on_another_day_covers_the_week_before_its_own():
    (kind, period), = due(datetime(2026, 11, 25, 18, 0), (2, 17), None)  # Wednesday 17:00
    assert kind == "weekly_review" and (period.start, period.end) == (
        date(2026, 11, 16), date(2026, 11, 22))


def test_nothing_configured_is_nothing_due_and_no_slot():
    assert due(datetime(2026, 11, 23, 9), None, None) == []
    assert next_slot(pd.Timestamp("2026-11-23 09:00", tz="UTC"), LONDON, None, None).year > 2200


def test_the_next_slot_is_in_local_time_across_the_clock_change():
    # Monday 26 October 2026 08:00 BST... the clocks went back on the 25th: 08:00 GMT
    now = pd.Timestamp("2026-10-24 12:00", tz="UTC")
    assert next_slot(now, LONDON, MONDAY_8, None) == pd.Timestamp("2026-10-26 08:00", tz="UTC")
    assert next_slot(pd.Timestamp("2026-11-23 08:00", tz="UTC"), LONDON, MONDAY_8,
                     FIRST_8) == pd.Timestamp("2026-11-30 08:00", tz="UTC")
    assert next_slot(pd.Timestamp("2026-11-30 09:00", tz="UTC"), LONDON, None,
                     FIRST_8) == pd.Timestamp("2026-12-01 08:00", tz="UTC")


def metrics(period: Period) -> Metrics:
    figures = pd.DataFrame({"All services": [3.0, 0.5, float("nan")],
                            "Oak House": [3.0, 0.5, float("nan")]},
                           index=pd.Index(["reports", "incomplete_share",
                                           "median_days_to_triage"], name="measure"))
    categories = pd.DataFrame({"service": ["All services"] * 3 + ["Oak House"] * 3,
                               "category": ["Medication", "Transport", "not recorded"] * 2,
                               "reports": [2, 0, 1] * 2})
    empty = pd.DataFrame()
    return Metrics(period, figures, categories, empty, empty, empty, empty)


def test_the_summary_charts_read_the_category_and_week_tables():
    period = month_of(date(2026, 11, 23))
    weekly = weekly_counts(pd.DataFrame({"submitted_at": pd.to_datetime(
        ["2026-11-23 10:00", "2026-11-16 00:30", "2026-11-15 23:30"], utc=True)}),
        LONDON, date(2026, 11, 23), weeks=3)
    assert weekly.to_dict("list") == {"week": ["2026-W46", "2026-W47", "2026-W48"],
                                      "reports": [1, 1, 1]}
    rows, (by_category, per_week) = summary_grid(metrics(period), weekly)
    assert rows[0] == ["Near-miss summary: 2026-11 so far"]
    assert rows[2] == ["Measure", "All services", "Oak House"]
    assert rows[3] == ["Reports submitted", 3, 3]
    assert rows[4] == ["Share still incomplete now", 50.0, 50.0]
    assert rows[5] == ["Median days to triage", None, None]  # nothing to measure: blank
    table = rows[by_category.header_row - 1:by_category.last_row]
    assert table == [["Category", "Reports"], ["Medication", 2], ["Transport", 0],
                     ["not recorded", 1]]
    assert (by_category.category_col, by_category.series_cols) == (1, (2,))
    assert rows[per_week.header_row - 1:per_week.last_row] == [
        ["Week", "Reports"], ["2026-W46", 1], ["2026-W47", 1], ["2026-W48", 1]]
    assert per_week.kind == "line" and by_category.kind == "bar"
    assert by_category.anchor[1] > len(rows[2])  # beside the figures, not over them


def test_week_and_month_periods_name_their_days():
    assert (week_of(date(2026, 11, 25)).start, week_of(date(2026, 11, 25)).end) == (
        date(2026, 11, 23), date(2026, 11, 29))
    assert month_of(date(2026, 2, 10)).end == date(2026, 2, 28)
