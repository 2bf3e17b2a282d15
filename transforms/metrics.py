"""Governance figures: the weekly operational review and the monthly board summary.

What a quality committee, a board or an inspector asks of the loop for a period: volumes
by theme, category spread, time to triage, repeat patterns, actions issued and completed,
overdue actions, verification outcomes, loops closed; for all services and per service.
"A rising report count can be a healthy sign; the real measure is whether repeats fall
after actions": `repeats_after_action` compares each verified action's pattern before and
after, and `control_chart` watches for reporting falling away, never for it rising.

Periods are local days in the deployment's zone: a report at 00:30 BST on 1 October is an
October report although it is 23:30 UTC on 30 September. Counts are over the reports
submitted in the period unless a measure says otherwise (see `LABELS`). Shares and medians
of nothing are NaN, never 0: "no triaged reports" is not "none triaged on time".

Per service: a report counts for its own service; a pattern for every service its member
reports come from (a "same person" pattern may span two); an action for the services of
the reports it names and of its patterns. So service columns add up to "All services" for
report counts (with "not recorded" in `by_service`), not necessarily for patterns and
actions. Services are the rules' `service` choices when the field is a choice field (a
value outside them is "not recorded"); otherwise every service named in `reports`, so a
service with reports in earlier periods only still gets its column of zeros.

Pure: DataFrames and values in, DataFrames out; the clock is `now`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.conditions import holds
from config.rules import RepeatRule, Rules
from domain.address import valid_address
from domain.times import localise

ALL = "All services"
NOT_RECORDED = "not recorded"
DEFAULT_WINDOW_DAYS = 14.0  # a pattern whose repeat rule is no longer in the rules
VERIFIED = ("Verified effective", "Not effective")
OPEN_PATTERNS = ("open", "reopened")

# The figures' measures, in the order a summary shows them.
LABELS: dict[str, str] = {
    "reports": "Reports submitted",
    "incomplete": "Still incomplete now",
    "incomplete_share": "Share still incomplete now",
    "completed_later": "Completed after a request for missing items",
    "median_days_to_complete": "Median days to completion",
    "triaged": "Triaged",
    "median_days_to_triage": "Median days to triage",
    "triaged_on_time": "Triaged by the triage deadline",
    "triaged_on_time_share": "Share triaged by the triage deadline",
    "notification_risk": "Notification-risk flags",
    "notification_decided": "Notification decisions recorded",
    "patterns_opened": "Patterns opened",
    "patterns_grown": "Patterns grown",
    "patterns_reopened": "Patterns reopened",
    "patterns_closed": "Patterns closed",
    "patterns_open_now": "Patterns open now",
    "actions_issued": "Actions issued",
    "actions_completed": "Actions completed",
    "actions_overdue_now": "Actions overdue now",
    "actions_verified_effective": "Actions verified effective",
    "actions_not_effective": "Actions found not effective",
    "loops_to_close": "Reports closed with a contactable reporter",
    "loops_closed": "Of those, outcome sent to the reporter",
    "loops_closed_share": "Share of loops closed",
}
MEASURES = list(LABELS)
PATTERN_EVENTS = {"patterns_opened": "opened", "patterns_grown": "grown",
                  "patterns_reopened": "reopened", "patterns_closed": "closed"}

REPEAT_COLUMNS = ["action_id", "pattern_id", "key_label", "window_days", "verified_on",
                  "before", "after", "fell", "complete"]
CHART_COLUMNS = ["service", "week", "week_start", "count", "baseline", "centre", "lcl", "ucl",
                 "below_lcl", "above_ucl", "run_below", "flag"]


# -- periods -----------------------------------------------------------------------------


def iso_week(day: date) -> str:
    """"2026-W48": the ISO week a local day falls in (the ISO year, not the calendar's)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _midnight(day: date, tz: ZoneInfo) -> pd.Timestamp:
    """The UTC instant a local day starts (the first midnight when the clocks repeat it)."""
    value = localise(datetime.combine(day, time()), tz).value
    assert value is not None  # a wall-clock time always localises
    return value


@dataclass(frozen=True)
class Period:
    """Local days from `start` to `end`, both included."""

    kind: Literal["week", "month", "range"]
    start: date
    end: date
    label: str

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a period ends on or after its start: {self.start} > {self.end}")

    @classmethod
    def week_of(cls, day: date) -> Period:
        """The ISO week (Monday to Sunday) holding `day`."""
        start = day - timedelta(days=day.weekday())
        return cls("week", start, start + timedelta(days=6), iso_week(start))

    @classmethod
    def month_of(cls, day: date) -> Period:
        start = day.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        return cls("month", start, following - timedelta(days=1), f"{start:%Y-%m}")

    @classmethod
    def span(cls, start: date, end: date) -> Period:
        return cls("range", start, end, f"{start:%Y-%m-%d} to {end:%Y-%m-%d}")

    def previous(self) -> Period:
        """The period before, of the same kind (a range: as many days, ending the day before)."""
        before = self.start - timedelta(days=1)
        if self.kind == "week":
            return Period.week_of(before)
        if self.kind == "month":
            return Period.month_of(before)
        return Period.span(before - (self.end - self.start), before)

    def bounds(self, tz: ZoneInfo) -> tuple[pd.Timestamp, pd.Timestamp]:
        """UTC instants [first local midnight, midnight after the last day)."""
        return _midnight(self.start, tz), _midnight(self.end + timedelta(days=1), tz)

    def contains(self, times: pd.Series, tz: ZoneInfo) -> pd.Series:
        """Per UTC timestamp: falls on a local day of the period (missing: False)."""
        low, high = self.bounds(tz)
        utc = _utc(times)
        return ((utc >= low) & (utc < high)).fillna(False).astype(bool)

    def contains_days(self, days: pd.Series) -> pd.Series:
        """Per local date (a manager's typed date; None: False): inside the period."""
        values = _days(days)
        inside = (values >= pd.Timestamp(self.start)) & (values <= pd.Timestamp(self.end))
        return inside.fillna(False).astype(bool)

    def includes(self, day: date | None) -> bool:
        return day is not None and self.start <= day <= self.end


# The constructors as plain functions: `week_of(day)`, `month_of(day)`, `span(start, end)`,
# `previous(period)`.
week_of = Period.week_of
month_of = Period.month_of
span = Period.span
previous = Period.previous


# -- column readers: tolerant of None, NaT, missing columns and empty frames --------------


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _utc(values: pd.Series) -> pd.Series:
    """Instants as datetime64 UTC, NaT where missing, whatever the column's dtype."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    return pd.to_datetime(values.astype(object), utc=True, errors="coerce")


def _days(values: pd.Series) -> pd.Series:
    """Local dates (python dates or None) as naive midnights, NaT where missing."""
    return pd.to_datetime(values.astype(object), errors="coerce")


def _local_day(times: pd.Series, tz: ZoneInfo) -> pd.Series:
    """UTC instants as the naive midnight of their local day."""
    return _utc(times).dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()


def _flag(values: pd.Series) -> pd.Series:
    return pd.Series([isinstance(v, bool | np.bool_) and bool(v) for v in values],
                     index=values.index, dtype=bool)


def _present(values: pd.Series) -> pd.Series:
    """Per value: set (not None, NaN, NaT or blank text)."""
    return pd.Series([_text(v) != "" if isinstance(v, str) else v is not None and not pd.isna(v)
                      for v in values], index=values.index, dtype=bool)


def _as_day(value: Any) -> date | None:
    """A manager's date (a date, a Timestamp, or None/NaT) as a date."""
    if value is None or not isinstance(value, date) or pd.isna(value):
        return None
    return value.date() if isinstance(value, datetime) else value


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _texts(values: pd.Series) -> pd.Series:
    return pd.Series([_text(v) for v in values], index=values.index, dtype=object)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return list(value)
    return []


def _share(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def _labelled(values: pd.Series, choices: dict[str, str]) -> pd.Series:
    """Taxonomy keys as labels; missing or unknown values (a reporter's own word) are
    "not recorded", never a category of their own."""
    return pd.Series([choices.get(v, NOT_RECORDED) if isinstance(v, str) else NOT_RECORDED
                      for v in values], index=values.index, dtype=object)


def _choices(rules: Rules, field: str) -> dict[str, str]:
    return rules.choices(field) if field in rules.fields else {}


def _services(reports: pd.DataFrame, rules: Rules) -> dict[str, str]:
    """Service value -> label: the rules' choices when service is a choice field, else the
    services named in any report (free text, shown as typed)."""
    choices = _choices(rules, "service")
    if choices:
        return dict(choices)
    named = sorted({_text(v) for v in _col(reports, "service")} - {""})
    return {name: name for name in named}


# -- figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """A period's governance figures.

    figures: measures (`MEASURES`, labels in `LABELS`) x ["All services", service, ...],
      floats (counts too, so that NaN can sit in the same column).
    by_category / by_shift: service, category | shift, reports (taxonomy order, then
      "not recorded"; zeros kept; "All services" first, then each service).
    by_service: service, reports (each service, then "not recorded").
    by_week: service, week, week_start, reports (each ISO week the period touches).
    repeats_after_action: `REPEAT_COLUMNS`.
    """

    period: Period
    figures: pd.DataFrame
    by_category: pd.DataFrame
    by_service: pd.DataFrame
    by_shift: pd.DataFrame
    by_week: pd.DataFrame
    repeats_after_action: pd.DataFrame


def period_metrics(reports: pd.DataFrame, patterns: pd.DataFrame, actions: pd.DataFrame,
                   events: pd.DataFrame, outbox: pd.DataFrame, period: Period, tz: ZoneInfo,
                   now: pd.Timestamp, rules: Rules) -> Metrics:
    """The governance figures of `period`, for all services and per service."""
    services = _services(reports, rules)
    labels = list(services.values())
    facts = _report_facts(reports, outbox, period, tz, rules, services)

    # Which services a pattern and an action belong to, through the reports they name.
    service_of = dict(zip(_col(reports, "report_id"), _services_of(reports, services),
                          strict=True))
    pattern_services = {
        pid: {service_of.get(m) for m in _as_list(members)} - {None}
        for pid, members in zip(_col(patterns, "pattern_id"), _col(patterns, "members"),
                                strict=True)}
    action_services = {
        aid: ({service_of.get(r) for r in _as_list(linked)} - {None}).union(
            *(pattern_services.get(p, set()) for p in _as_list(pats)))
        for aid, linked, pats in zip(_col(actions, "action_id"), _col(actions, "reports"),
                                     _col(actions, "patterns"), strict=True)}

    in_period = period.contains(_col(events, "at"), tz)
    entity, what = _col(events, "entity"), _col(events, "event")
    pattern_events = pd.DataFrame({"id": _col(events, "entity_id"), "event": what})[
        in_period & (entity == "pattern")].drop_duplicates()
    added = set(_col(events, "entity_id")[in_period & (entity == "action")
                                          & (what == "action added")])

    status = _col(actions, "status")
    verified_in = period.contains_days(_col(actions, "verified_on"))
    action_facts = pd.DataFrame({
        "id": _col(actions, "action_id"),
        "completed": _flag(_col(actions, "done")) & verified_in,
        "overdue": _flag(_col(actions, "overdue")),
        "effective": (status == "Verified effective") & verified_in,
        "not_effective": (status == "Not effective") & verified_in,
    })
    open_now = [pid for pid, s in zip(_col(patterns, "pattern_id"), _col(patterns, "status"),
                                      strict=True) if s in OPEN_PATTERNS]

    columns: dict[str, dict[str, float]] = {}
    for label in [None, *labels]:
        mine = facts if label is None else facts[facts["service"] == label]
        values = _report_figures(mine)
        events_here = pattern_events[_belongs(pattern_events["id"], pattern_services, label)]
        for measure, event in PATTERN_EVENTS.items():
            values[measure] = events_here.loc[events_here["event"] == event, "id"].nunique()
        values["patterns_open_now"] = int(_belongs(open_now, pattern_services, label).sum())
        acts = action_facts[_belongs(action_facts["id"], action_services, label)]
        values["actions_issued"] = int(_belongs(added, action_services, label).sum())
        values["actions_completed"] = int(acts["completed"].sum())
        values["actions_overdue_now"] = int(acts["overdue"].sum())
        values["actions_verified_effective"] = int(acts["effective"].sum())
        values["actions_not_effective"] = int(acts["not_effective"].sum())
        columns[ALL if label is None else label] = values

    figures = pd.DataFrame(columns, index=pd.Index(MEASURES, name="measure"),
                           columns=[ALL, *labels], dtype=float)
    submitted = facts[facts["in_period"]]
    return Metrics(
        period=period,
        figures=figures,
        by_category=_breakdown(submitted, "category",
                               [*_choices(rules, "category").values(), NOT_RECORDED], labels),
        by_service=pd.DataFrame({
            "service": [*labels, NOT_RECORDED],
            "reports": pd.Series([s or NOT_RECORDED for s in submitted["service"]],
                                 dtype=object).value_counts()
            .reindex([*labels, NOT_RECORDED], fill_value=0).to_numpy(dtype=np.int64)}),
        by_shift=_breakdown(submitted, "shift",
                            [*_choices(rules, "shift").values(), NOT_RECORDED], labels),
        by_week=_by_week(submitted, period, labels),
        repeats_after_action=_repeats_after_action(reports, patterns, actions, tz, now, rules),
    )


def _belongs(ids: Iterable[Any], services: dict[Any, set[str]], label: str | None
             ) -> np.ndarray:
    """Per id: a pattern or action of service `label` (None: of any, for "All services")."""
    return np.array([label is None or label in services.get(i, ()) for i in ids], dtype=bool)


def _report_facts(reports: pd.DataFrame, outbox: pd.DataFrame, period: Period, tz: ZoneInfo,
                  rules: Rules, services: dict[str, str]) -> pd.DataFrame:
    """One row per report a figure counts (submitted or closed in the period): what each
    measure needs, computed once for every column."""
    counted = period.contains(_col(reports, "submitted_at"), tz) | (
        _flag(_col(reports, "closed")) & period.contains_days(_col(reports, "closed_on")))
    reports = reports[counted.to_numpy()]
    submitted = _utc(_col(reports, "submitted_at"))
    submitted_day = _local_day(submitted, tz)
    completed = _utc(_col(reports, "completed_at"))
    triaged = _flag(_col(reports, "triaged"))
    triaged_on = _days(_col(reports, "triaged_on")).where(triaged)
    due_day = _local_day(_col(reports, "triage_due"), tz)
    risk = _flag(_col(reports, "notification_risk"))
    ids = _col(reports, "report_id")
    sent = _col(outbox, "kind").eq("outcome") & _present(_col(outbox, "sent_at"))
    outcome_sent = set(_col(outbox, "entity_id")[sent])
    # A loop can only be closed by email with a reporter who can be written to.
    contactable = pd.Series([valid_address(e) for e in _col(reports, "reporter_email")],
                            index=reports.index, dtype=bool) & ~_flag(_col(reports, "anonymous"))
    on_time = (triaged_on <= due_day).astype(float).where(triaged_on.notna() & due_day.notna())
    return pd.DataFrame({
        "report_id": ids,
        "in_period": period.contains(submitted, tz),
        "service": pd.Series(_services_of(reports, services), index=reports.index,
                             dtype=object),
        "category": _labelled(_col(reports, "category"), _choices(rules, "category")),
        "shift": _labelled(_col(reports, "shift"), _choices(rules, "shift")),
        "week_start": submitted_day - pd.to_timedelta(submitted_day.dt.day_of_week, unit="D"),
        "incomplete": _col(reports, "dq_status").eq("incomplete").astype(bool),
        "completion_days": (completed - submitted).dt.total_seconds() / 86400,
        "triaged": triaged,
        # Local calendar days, as a manager types the triage date.
        "triage_days": (triaged_on - submitted_day).dt.days.astype(float),
        "on_time": on_time,
        "risk": risk,
        "decided": risk & _texts(_col(reports, "notification_decision")).ne(""),
        "closed_in_period": _flag(_col(reports, "closed"))
        & period.contains_days(_col(reports, "closed_on")),
        "contactable": contactable,
        "outcome_sent": ids.isin(outcome_sent).astype(bool),
    }, index=reports.index)


def _services_of(reports: pd.DataFrame, services: dict[str, str]) -> list[str | None]:
    return [services.get(_text(v)) for v in _col(reports, "service")]


def _report_figures(facts: pd.DataFrame) -> dict[str, float]:
    sub = facts[facts["in_period"]]
    n = len(sub)
    incomplete = int(sub["incomplete"].sum())
    completion = sub["completion_days"].dropna()
    triaged = sub[sub["triaged"]]
    on_time = triaged["on_time"].dropna()
    # Loops: reports closed in the period, whenever they were submitted.
    loops = facts[facts["closed_in_period"] & facts["contactable"]]
    closed = int(loops["outcome_sent"].sum())
    return {
        "reports": n,
        "incomplete": incomplete,
        "incomplete_share": _share(incomplete, n),
        "completed_later": len(completion),
        "median_days_to_complete": completion.median(),
        "triaged": len(triaged),
        "median_days_to_triage": triaged["triage_days"].median(),
        "triaged_on_time": int(on_time.sum()),
        "triaged_on_time_share": _share(on_time.sum(), len(on_time)),
        "notification_risk": int(sub["risk"].sum()),
        "notification_decided": int(sub["decided"].sum()),
        "loops_to_close": len(loops),
        "loops_closed": closed,
        "loops_closed_share": _share(closed, len(loops)),
    }


def _breakdown(submitted: pd.DataFrame, field: str, values: list[str], services: list[str]
               ) -> pd.DataFrame:
    """Reports per value of `field`, for all services then each service, zeros kept."""
    parts = []
    for label in [None, *services]:
        mine = submitted if label is None else submitted[submitted["service"] == label]
        counts = mine[field].value_counts().reindex(values, fill_value=0)
        parts.append(pd.DataFrame({"service": ALL if label is None else label,
                                   field: values,
                                   "reports": counts.to_numpy(dtype=np.int64)}))
    return pd.concat(parts, ignore_index=True)


def _by_week(submitted: pd.DataFrame, period: Period, services: list[str]) -> pd.DataFrame:
    first = period.start - timedelta(days=period.start.weekday())
    starts = [first + timedelta(weeks=k) for k in range((period.end - first).days // 7 + 1)]
    keys = [pd.Timestamp(s) for s in starts]
    parts = []
    for label in [None, *services]:
        mine = submitted if label is None else submitted[submitted["service"] == label]
        counts = mine["week_start"].value_counts().reindex(keys, fill_value=0)
        parts.append(pd.DataFrame({
            "service": ALL if label is None else label,
            "week": [iso_week(s) for s in starts],
            "week_start": pd.Series(starts, dtype=object),
            "reports": counts.to_numpy(dtype=np.int64)}))
    return pd.concat(parts, ignore_index=True)


# -- do repeats fall after actions? -------------------------------------------------------


def _edge(day: date, days: float, tz: ZoneInfo) -> pd.Timestamp:
    """`days` after (or before) the local midnight starting `day`: whole days are counted
    on the local calendar, so a window across a clock change still ends at midnight."""
    if float(days).is_integer():
        return _midnight(day + timedelta(days=int(days)), tz)
    return _midnight(day, tz) + pd.Timedelta(days=days)


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(value, list | tuple | np.ndarray):
        return wanted in list(value)
    return isinstance(value, str | int | float) and value == wanted


def _same_key(reports: pd.DataFrame, rule: RepeatRule | None, key: list[Any], rules: Rules
              ) -> pd.Series:
    """Reports the pattern's rule would group with it: same key values, `when` holding.
    Only when `reports` has every field the rule reads; otherwise none (members only)."""
    none = pd.Series(False, index=reports.index)
    if rule is None or len(key) != len(rule.key):
        return none
    needed = set(rule.key) | {f for cond in rule.when for f in cond.fields}
    if not needed <= set(reports.columns):
        return none
    match = holds(reports, rule.when, rules).to_numpy(dtype=bool)
    for field, wanted in zip(rule.key, key, strict=True):
        match = match & np.array([_matches(v, wanted) for v in reports[field]], dtype=bool)
    return pd.Series(match, index=reports.index)


def _repeats_after_action(reports: pd.DataFrame, patterns: pd.DataFrame, actions: pd.DataFrame,
                          tz: ZoneInfo, now: pd.Timestamp, rules: Rules) -> pd.DataFrame:
    """Per verified action and linked pattern: similar reports (by when they happened) in
    the pattern rule's window before the verification day and in the window after it.

    Every verified action is listed, whatever its period: whether repeats fell is known
    only once its after-window is over (`complete`); until then "after" counts reports up
    to `now`, and `fell` compares the counts so far.
    """
    occurred = _utc(_col(reports, "occurred_at"))
    ids = _col(reports, "report_id")
    by_id = {pid: row for pid, row in zip(_col(patterns, "pattern_id"),
                                          patterns.to_dict("records"), strict=True)}
    rule_of = {rule.id: rule for rule in rules.repeats}
    now = pd.Timestamp(now).tz_convert("UTC")
    rows = []
    for action in actions.to_dict("records"):
        verified_on = _as_day(action.get("verified_on"))
        if action.get("status") not in VERIFIED or verified_on is None:
            continue
        for pid in dict.fromkeys(_as_list(action.get("patterns"))):
            pattern = by_id.get(pid)
            if pattern is None:
                continue
            rule = rule_of.get(pattern.get("rule_id"))
            window = float(rule.window_days) if rule else DEFAULT_WINDOW_DAYS
            similar = ids.isin(_as_list(pattern.get("members"))) | _same_key(
                reports, rule, _as_list(pattern.get("key")), rules)
            times = occurred[similar & occurred.notna()]
            # The action counts from the end of the day it was verified on, as a recurrence
            # after that day reopens it.
            day_after = verified_on + timedelta(days=1)
            cutoff, start, end = (_midnight(day_after, tz), _edge(day_after, -window, tz),
                                  _edge(day_after, window, tz))
            before = int(((times >= start) & (times < cutoff)).sum())
            after = int(((times >= cutoff) & (times < end) & (times <= now)).sum())
            rows.append({"action_id": action.get("action_id"), "pattern_id": pid,
                         "key_label": pattern.get("key_label"), "window_days": window,
                         "verified_on": verified_on, "before": before, "after": after,
                         "fell": after < before, "complete": bool(now >= end)})
    out = pd.DataFrame(rows, columns=REPEAT_COLUMNS)
    return out.astype({"window_days": float, "before": np.int64, "after": np.int64,
                       "fell": bool, "complete": bool})


# -- is reporting falling away? -----------------------------------------------------------


def control_chart(reports: pd.DataFrame, tz: ZoneInfo, now: pd.Timestamp, *, weeks: int = 26,
                  baseline: int = 12, run: int = 8) -> pd.DataFrame:
    """Each service's weekly report counts on a c-chart from its own baseline.

    The last `weeks` full ISO weeks before the week of `now`, zeros included. The first
    `baseline` weeks give the centre c̄ (their mean) and limits c̄ ± 3√c̄ (LCL at least 0).
    After the baseline a week is flagged below the LCL or in a run of `run` or more weeks
    below the centre. More reports than the UCL is shown (`above_ucl`), never flagged:
    in a learning system a rise is usually more reporting, not more risk.
    """
    if weeks < 1 or baseline < 1 or run < 1:
        raise ValueError("weeks, baseline and run are at least 1")
    today = pd.Timestamp(now).tz_convert(tz).date()
    this_week = today - timedelta(days=today.weekday())
    starts = [this_week - timedelta(weeks=k) for k in range(weeks, 0, -1)]
    service = _texts(_col(reports, "service"))
    day = _local_day(_col(reports, "submitted_at"), tz)
    week = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    known = service.ne("") & week.notna()
    services = sorted(set(service[known]))
    if not services:
        return pd.DataFrame({c: [] for c in CHART_COLUMNS})

    grid = pd.MultiIndex.from_product([services, [pd.Timestamp(s) for s in starts]],
                                      names=["service", "week_start"])
    counts = (pd.DataFrame({"service": service[known], "week_start": week[known]})
              .groupby(["service", "week_start"]).size().reindex(grid, fill_value=0))
    chart = counts.rename("count").reset_index()
    chart["count"] = chart["count"].astype(np.int64)
    position = np.tile(np.arange(weeks), len(services))
    chart["baseline"] = position < baseline
    chart["centre"] = (chart["count"].where(chart["baseline"])
                       .groupby(chart["service"]).transform("mean"))
    spread = 3 * np.sqrt(chart["centre"])
    chart["lcl"] = (chart["centre"] - spread).clip(lower=0)
    chart["ucl"] = chart["centre"] + spread
    chart["below_lcl"] = chart["count"] < chart["lcl"]
    chart["above_ucl"] = chart["count"] > chart["ucl"]
    below = (chart["count"] < chart["centre"]) & ~chart["baseline"]
    run_id = (~below).groupby(chart["service"]).cumsum()
    length = below.groupby([chart["service"], run_id]).transform("sum")
    chart["run_below"] = below & (length >= run)
    chart["flag"] = ~chart["baseline"] & (chart["below_lcl"] | chart["run_below"])
    chart["week"] = [iso_week(s) for s in starts] * len(services)
    chart["week_start"] = pd.Series(starts * len(services), dtype=object)
    return chart[CHART_COLUMNS]


def _reports(n: int) -> str:
    return f"{n} report" + ("" if n == 1 else "s")


def signal_warnings(chart: pd.DataFrame) -> list[str]:
    """One plain sentence per service with a flagged week, about its latest flagged week."""
    out = []
    for service, rows in chart.groupby("service", sort=False):
        flagged = np.flatnonzero(rows["flag"].to_numpy(dtype=bool))
        if not len(flagged):
            continue
        last = int(flagged[-1])
        row = rows.iloc[last]
        parts = []
        if row["below_lcl"]:
            parts.append(f"{_reports(int(row['count']))} in {row['week']}, below its lower "
                         f"limit of {row['lcl']:.1f} a week")
        if row["run_below"]:
            in_run = rows["run_below"].to_numpy(dtype=bool)
            first, end = last, last
            while first > 0 and in_run[first - 1]:
                first -= 1
            while end + 1 < len(in_run) and in_run[end + 1]:
                end += 1
            weeks = rows["week"].to_numpy()
            parts.append(f"{end - first + 1} weeks in a row below its usual "
                         f"{row['centre']:.1f} a week ({weeks[first]} to {weeks[end]})")
        out.append(f"{service}: {', and '.join(parts)}: is reporting falling away?")
    return out
