"""When the governance emails fall due, and the Summary sheet's cells and charts.

The weekly operational review covers the week before (Monday to Sunday), the monthly board
summary the month before. Each is due from a set local day and hour; a run at or after that
time queues it once (its key names the period), so a job that was down catches up on its
next run. Only the latest period is owed: a review three weeks late would be history.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from domain.records import Cell, Chart
from transforms.metrics import ALL, LABELS, Metrics, Period, iso_week, month_of, week_of


def due(now_local: datetime, weekly: tuple[int, int] | None,
        monthly: tuple[int, int] | None) -> list[tuple[str, Period]]:
    """(kind, period) of each governance email due by `now_local` (a naive local time):
    `weekly` is (weekday 0 = Monday, hour), `monthly` (day of the month, hour); None: not
    sent. Whether it already went is the outbox's business (its key)."""
    out: list[tuple[str, Period]] = []
    today = now_local.date()
    if weekly is not None:
        weekday, hour = weekly
        slot = datetime.combine(today - timedelta(days=today.weekday() - weekday), time(hour))
        if slot > now_local:
            slot -= timedelta(days=7)
        out.append(("weekly_review", week_of(slot.date() - timedelta(days=7))))
    if monthly is not None:
        day, hour = monthly
        slot = datetime.combine(today.replace(day=day), time(hour))
        if slot > now_local:
            slot = datetime.combine(_month_before(today).replace(day=day), time(hour))
        out.append(("board_summary", month_of(_month_before(slot.date()))))
    return out


def key(kind: str, period: Period) -> str:
    """The outbox key of one period's email: `review:2026-W48`, `board:2026-11`."""
    return f"{'review' if kind == 'weekly_review' else 'board'}:{period.label}"


def _month_before(day: date) -> date:
    return day.replace(day=1) - timedelta(days=1)


# -- the tracker's Summary sheet ------------------------------------------------------------

SUMMARY_WEEKS = 8  # the trend chart's weeks: a fixed count keeps its range the same


def summary_grid(metrics: Metrics, weekly: pd.DataFrame
                 ) -> tuple[list[list[Cell]], list[Chart]]:
    """The Summary sheet's cells (row by row from A1) and its native charts.

    `weekly` is `weekly_counts`: the last SUMMARY_WEEKS weeks' reports. The figures table
    has one column per service; the category and week tables below it feed the two charts,
    whose ranges stay put from one run to the next (the taxonomy's categories, a fixed
    number of weeks), so a chart drawn once keeps showing the right cells.
    """
    figures = metrics.figures
    services = list(figures.columns)
    rows: list[list[Cell]] = [
        [f"Near-miss summary: {metrics.period.label} so far"], [],
        ["Measure", *services],
    ]
    for measure in figures.index:
        rows.append([LABELS.get(measure, measure),
                     *(_figure(measure, figures.at[measure, s]) for s in services)])
    rows.append([])
    category_header = len(rows) + 1
    categories = metrics.by_category[metrics.by_category["service"] == ALL]
    rows.append(["Category", "Reports"])
    rows += [[c, int(n)] for c, n in zip(categories["category"], categories["reports"],
                                         strict=True)]
    category_last = len(rows)
    rows.append([])
    week_header = len(rows) + 1
    rows.append(["Week", "Reports"])
    rows += [[w, int(n)] for w, n in zip(weekly["week"], weekly["reports"], strict=True)]
    charts = [
        Chart(f"Reports by category, {metrics.period.label}", "bar", category_header,
              category_last, 1, (2,), (3, len(services) + 3)),
        Chart(f"Reports per week, last {SUMMARY_WEEKS} weeks", "line", week_header,
              len(rows), 1, (2,), (21, len(services) + 3)),
    ]
    return rows, charts


def weekly_counts(reports: pd.DataFrame, tz: ZoneInfo, today: date,
                  weeks: int = SUMMARY_WEEKS) -> pd.DataFrame:
    """Reports submitted in each of the last `weeks` ISO weeks up to today's (local days)."""
    monday = today - timedelta(days=today.weekday())
    starts = [monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    submitted = reports["submitted_at"] if len(reports) else pd.Series([], dtype=object)
    days = pd.to_datetime(submitted, utc=True).dt.tz_convert(tz).dt.date
    counts = [int(((days >= s) & (days < s + timedelta(days=7))).sum()) for s in starts]
    return pd.DataFrame({"week": [iso_week(s) for s in starts], "reports": counts})


def _figure(measure: str, value: float) -> Cell:
    """A figure as the sheet shows it: counts whole, shares in per cent, days to one
    decimal; nothing to measure is left blank (not 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if measure.endswith("_share"):
        return round(100 * float(value), 1)
    if measure.startswith("median"):
        return round(float(value), 1)
    return int(value)


def next_slot(now: pd.Timestamp, tz: ZoneInfo, weekly: tuple[int, int] | None,
              monthly: tuple[int, int] | None) -> pd.Timestamp:
    """The next time a governance email falls due after `now` (UTC): until then a run with
    nothing new owes nothing new. Far in the future when none is configured."""
    local = now.tz_convert(tz).tz_localize(None).to_pydatetime()
    slots = []
    if weekly is not None:
        weekday, hour = weekly
        slot = datetime.combine(local.date() + timedelta(days=(weekday - local.weekday()) % 7),
                                time(hour))
        slots.append(slot if slot > local else slot + timedelta(days=7))
    if monthly is not None:
        day, hour = monthly
        slot = datetime.combine(local.date().replace(day=day), time(hour))
        if slot <= local:
            following = (local.date().replace(day=28) + timedelta(days=4)).replace(day=day)
            slot = datetime.combine(following, time(hour))
        slots.append(slot)
    if not slots:
        return pd.Timestamp.max.tz_localize("UTC").floor("D")
    return pd.Timestamp(min(slots)).tz_localize(tz, ambiguous=True,
                                                nonexistent="shift_forward").tz_convert("UTC")
