"""Governance figures: every measure on a small October by hand, repeats before and after
actions, and the reporting-signal control chart."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import load_rules
from transforms.metrics import (
    ALL,
    LABELS,
    MEASURES,
    NOT_RECORDED,
    Metrics,
    Period,
    control_chart,
    month_of,
    period_metrics,
    previous,
    signal_warnings,
    span,
    week_of,
)

RULES = load_rules()
TZ = ZoneInfo("Europe/London")
NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")  # a Monday
OCTOBER = Period.month_of(date(2026, 10, 15))  # BST until 25 October, GMT after
NAN = math.nan


def utc(text: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(text, tz="UTC") if text else None


def report(n: int, submitted: str, service: str | None = "Oak House",
           category: str | None = "medication", shift: str | None = "early",
           **values: Any) -> dict[str, Any]:
    at = utc(submitted)
    row = {
        "report_id": f"NM-{n:06d}", "submitted_at": at, "occurred_at": at - pd.Timedelta(hours=1),
        "category": category, "service": service, "shift": shift, "dq_status": "complete",
        "completed_at": None, "pathway": "trend_monitoring", "priority": "P4",
        "triage_due": at + pd.Timedelta(hours=72), "notification_risk": False,
        "notification_decision": "", "triaged": False, "triaged_on": None, "closed": False,
        "closed_on": None, "reporter_email": None, "anonymous": False, "pattern_ids": [],
    }
    row.update(values)
    return row


def reports_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    out = pd.DataFrame(list(rows))
    for col in ("submitted_at", "occurred_at", "triage_due"):
        out[col] = pd.to_datetime(out[col], utc=True)
    # None must survive where the pipeline keeps it: a date typed by a manager or not yet.
    for col in ("completed_at", "triaged_on", "closed_on", "reporter_email", "pattern_ids"):
        out[col] = pd.Series([r[col] for r in rows], dtype=object)
    return out


def pattern(pid: str, rule_id: str, key: list[str], members: list[str], status: str = "open"
            ) -> dict[str, Any]:
    return {"pattern_id": pid, "rule_id": rule_id, "key": key, "key_label": " · ".join(key),
            "members": members, "count": len(members), "first_at": None, "last_at": None,
            "status": status, "closed_at": None}


def patterns_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    out = pd.DataFrame(list(rows), columns=list(pattern("", "", [], []))).astype(
        {"key": object, "members": object})
    for col in ("first_at", "last_at", "closed_at"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out


def action(aid: str, status: str, *, patterns: list[str] = (), reports: list[str] = (),
           due: date | None = None, verified_on: date | None = None, done: bool = False,
           overdue: bool = False) -> dict[str, Any]:
    return {"action_id": aid, "reports": list(reports), "patterns": list(patterns), "due": due,
            "status": status, "verified_on": verified_on, "done": done, "overdue": overdue,
            "reopened": "verification found it not effective" if status == "Not effective"
            else ""}


def actions_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    cols = list(action("", "Open"))
    return pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in cols}
                        ).astype({"done": bool, "overdue": bool})


def events_frame(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    out = pd.DataFrame(list(rows), columns=["entity", "entity_id", "event", "at"])
    out["at"] = pd.to_datetime(out["at"], utc=True)
    return out


def outbox_frame(*rows: tuple[str, str, str | None]) -> pd.DataFrame:
    return pd.DataFrame({
        "key": [f"{kind}:{rid}" for kind, rid, _ in rows],
        "kind": [kind for kind, _, _ in rows],
        "entity_id": [rid for _, rid, _ in rows],
        "sent_at": pd.Series([utc(sent) for _, _, sent in rows], dtype=object),
    })


# October 2026 in Europe/London. Submitted in October: 1, 2, 3, 4, 8, 9.
REPORTS = reports_frame(
    # 23:30 UTC on 30 September is 00:30 BST on 1 October: an October report.
    report(1, "2026-09-30 23:30", triaged=True, triaged_on=date(2026, 10, 2),
           triage_due=utc("2026-10-01 23:30"),  # local 2 October: triaged on the due day
           closed=True, closed_on=date(2026, 10, 5), reporter_email="a@care.example"),
    # A category typed by the reporter is "not recorded"; no shift either.
    report(2, "2026-10-10 09:00", category="meds", shift=None, dq_status="incomplete",
           triaged=True, triaged_on=date(2026, 10, 14), triage_due=utc("2026-10-11 09:00"),
           notification_risk=True, reporter_email="b@care.example"),
    report(3, "2026-10-20 12:00", service="Riverside", category="transport", shift="late",
           completed_at=utc("2026-10-22 00:00"), triaged=True, triaged_on=date(2026, 10, 20),
           triage_due=utc("2026-10-21 12:00"), notification_risk=True,
           notification_decision="Not notifiable", closed=True, closed_on=date(2026, 10, 28),
           reporter_email="c@care.example"),
    # 23:30 UTC on 31 October is 23:30 GMT: still October.
    report(4, "2026-10-31 23:30", service="Riverside", shift="night",
           completed_at=utc("2026-11-01 23:30"), anonymous=True),
    # September's report, closed in October: its loop counts in October.
    report(5, "2026-09-15 10:00", service="Elm Court", category="transport", closed=True,
           closed_on=date(2026, 10, 3), reporter_email="e@care.example", triaged=True,
           triaged_on=date(2026, 9, 15)),
    # 22:30 UTC on 30 September is 23:30 BST: September.
    report(6, "2026-09-30 22:30"),
    report(7, "2026-11-01 00:30", closed=True, closed_on=date(2026, 11, 2),
           reporter_email="g@care.example"),
    report(8, "2026-10-05 10:00", service="Riverside", triaged=True,
           triaged_on=date(2026, 10, 5), triage_due=utc("2026-10-06 10:00"), closed=True,
           closed_on=date(2026, 10, 10), reporter_email="h@care.example", anonymous=True),
    report(9, "2026-10-12 10:00", service=None, category="workflow", shift="late", closed=True,
           closed_on=date(2026, 10, 20), reporter_email="ask Sam on nights"),
)
PATTERNS = patterns_frame(
    pattern("PT-0001", "same-category-service", ["medication", "Riverside"],
            ["NM-000008", "NM-000004"]),
    pattern("PT-0002", "same-category-service", ["medication", "Oak House"],
            ["NM-000006", "NM-000001", "NM-000007"], "closed"),
    pattern("PT-0003", "same-person", ["P-1"], ["NM-000002", "NM-000003"], "reopened"),
    pattern("PT-0004", "same-category-service", ["transport", "Elm Court"], ["NM-000005"],
            "dissolved"),
)
ACTIONS = actions_frame(
    action("A-1", "Verified effective", patterns=["PT-0002"], due=date(2026, 10, 10),
           verified_on=date(2026, 10, 20), done=True),
    action("A-2", "Open", patterns=["PT-0001"], due=date(2026, 11, 1), overdue=True),
    action("A-3", "Not effective", reports=["NM-000003"], due=date(2026, 10, 25),
           verified_on=date(2026, 10, 27), overdue=True),
    # Done but not verified: not "completed in the period" (no verification date).
    action("A-4", "Done - awaiting verification", patterns=["PT-0003"], due=date(2026, 12, 1),
           done=True),
)
EVENTS = events_frame(
    ("pattern", "PT-0001", "opened", "2026-09-30 23:15"),  # 00:15 BST, 1 October
    ("pattern", "PT-0001", "grown", "2026-11-01 06:00"),
    ("pattern", "PT-0002", "opened", "2026-09-30 22:45"),  # 23:45 BST, 30 September
    ("pattern", "PT-0002", "grown", "2026-10-02 08:00"),
    ("pattern", "PT-0002", "grown", "2026-10-03 08:00"),  # the same pattern: counted once
    ("pattern", "PT-0002", "closed", "2026-10-21 06:00"),
    ("pattern", "PT-0003", "opened", "2026-08-01 08:00"),
    ("pattern", "PT-0003", "closed", "2026-09-01 08:00"),
    ("pattern", "PT-0003", "reopened", "2026-10-21 06:00"),
    ("pattern", "PT-0004", "dissolved", "2026-10-10 06:00"),
    ("report", "NM-000001", "closed", "2026-10-05 08:00"),  # a report's, not a pattern's
    ("action", "A-1", "action added", "2026-10-03 09:00"),
    ("action", "A-2", "action added", "2026-10-16 09:00"),
    ("action", "A-3", "action added", "2026-09-28 09:00"),
    ("action", "A-4", "action added", "2026-10-31 23:30"),  # 23:30 GMT, 31 October
)
OUTBOX = outbox_frame(
    ("acknowledgement", "NM-000003", "2026-10-20 12:05"),
    ("outcome", "NM-000003", None),  # queued, not sent
    ("outcome", "NM-000001", "2026-10-05 10:00"),
    ("outcome", "NM-000005", "2026-10-03 10:00"),
    ("outcome", "NM-000007", "2026-11-02 10:00"),
)
COLUMNS = [ALL, "Elm Court", "Oak House", "Riverside"]

# By hand, per column [All, Elm Court, Oak House, Riverside]. October's reports: Oak House
# 1, 2; Riverside 3, 4, 8; no service 9; Elm Court none (its report 5 is September's).
EXPECTED = {
    "reports": [6, 0, 2, 3],
    "incomplete": [1, 0, 1, 0],  # report 2
    "incomplete_share": [1 / 6, NAN, 0.5, 0.0],
    "completed_later": [2, 0, 0, 2],  # reports 3 (1.5 days) and 4 (1.0 day)
    "median_days_to_complete": [1.25, NAN, NAN, 1.25],
    "triaged": [4, 0, 2, 2],  # 1 (1 day), 2 (4 days), 3 (0), 8 (0)
    "median_days_to_triage": [0.5, NAN, 2.5, 0.0],
    "triaged_on_time": [3, 0, 1, 2],  # 2 was due on 11 October, triaged on the 14th
    "triaged_on_time_share": [0.75, NAN, 0.5, 1.0],
    "notification_risk": [2, 0, 1, 1],  # 2 and 3
    "notification_decided": [1, 0, 0, 1],  # 3
    "patterns_opened": [1, 0, 0, 1],  # PT-1 (Riverside)
    "patterns_grown": [1, 0, 1, 0],  # PT-2 (Oak House), twice in the month
    "patterns_reopened": [1, 0, 1, 1],  # PT-3: a same-person pattern at both services
    "patterns_closed": [1, 0, 1, 0],  # PT-2
    "patterns_open_now": [2, 0, 1, 2],  # PT-1, PT-3 (PT-4 dissolved)
    "actions_issued": [3, 0, 2, 2],  # A-1 (Oak), A-2 (Riverside), A-4 (both); A-3: September
    "actions_completed": [1, 0, 1, 0],
    "actions_overdue_now": [2, 0, 0, 2],
    "actions_verified_effective": [1, 0, 1, 0],
    "actions_not_effective": [1, 0, 0, 1],  # A-3 (linked to report 3)
    # Closed in October: 1 (sent), 3 (queued only), 5 (sent, Elm Court); 8 anonymous and
    # 9 without a usable address cannot be written to.
    "loops_to_close": [3, 1, 1, 1],
    "loops_closed": [2, 1, 1, 0],
    "loops_closed_share": [2 / 3, 1.0, 1.0, 0.0],
}


def october(period: Period = OCTOBER, **inputs: pd.DataFrame) -> Metrics:
    frames = {"reports": REPORTS, "patterns": PATTERNS, "actions": ACTIONS, "events": EVENTS,
              "outbox": OUTBOX, **inputs}
    return period_metrics(**frames, period=period, tz=TZ, now=NOW, rules=RULES)


# -- periods -------------------------------------------------------------------------------


def test_periods_are_iso_weeks_calendar_months_and_ranges() -> None:
    week = Period.week_of(date(2026, 11, 25))
    assert (week.start, week.end, week.label) == (date(2026, 11, 23), date(2026, 11, 29),
                                                  "2026-W48")
    assert Period.week_of(date(2027, 1, 1)).label == "2026-W53"  # the ISO year
    assert Period.week_of(date(2026, 1, 1)).previous() == Period(
        "week", date(2025, 12, 22), date(2025, 12, 28), "2025-W52")
    assert Period.month_of(date(2026, 3, 31)).previous() == Period(
        "month", date(2026, 2, 1), date(2026, 2, 28), "2026-02")
    assert Period.month_of(date(2026, 1, 5)).previous().label == "2025-12"
    autumn = Period.span(date(2026, 9, 1), date(2026, 11, 30))
    assert autumn.label == "2026-09-01 to 2026-11-30"
    assert autumn.previous() == Period.span(date(2026, 6, 2), date(2026, 8, 31))  # 91 days
    with pytest.raises(ValueError):
        Period.span(date(2026, 9, 2), date(2026, 9, 1))
    assert week_of(date(2026, 11, 25)) == week
    assert previous(month_of(date(2026, 11, 1))) == OCTOBER
    assert span(date(2026, 9, 1), date(2026, 11, 30)) == autumn


def test_a_period_holds_the_local_days_across_clock_changes() -> None:
    times = pd.Series(pd.to_datetime([
        "2026-09-30 22:59:59",  # 23:59:59 BST, 30 September
        "2026-09-30 23:00:00",  # midnight BST, 1 October
        "2026-10-31 23:59:00",  # 23:59 GMT, 31 October
        "2026-11-01 00:00:00",  # midnight GMT, 1 November
        None], utc=True))
    assert OCTOBER.contains(times, TZ).tolist() == [False, True, True, False, False]
    days = pd.Series([date(2026, 9, 30), date(2026, 10, 1), date(2026, 10, 31), None],
                     dtype=object)
    assert OCTOBER.contains_days(days).tolist() == [False, True, True, False]
    assert OCTOBER.includes(date(2026, 10, 31)) and not OCTOBER.includes(None)


# -- the figures ---------------------------------------------------------------------------


def test_every_figure_by_hand_for_all_services_and_each_service() -> None:
    got = october().figures
    expected = pd.DataFrame(EXPECTED, index=COLUMNS, dtype=float).T
    expected.index.name = "measure"
    assert got.index.tolist() == MEASURES == list(LABELS)
    pd.testing.assert_frame_equal(got, expected)


def test_breakdowns_keep_zeros_and_count_unknown_values_as_not_recorded() -> None:
    m = october()
    by_category = m.by_category.set_index(["service", "category"])["reports"]
    assert m.by_category["category"].tolist()[:9] == [
        "Medication", "Transport", "Mealtime / nutrition", "Escalation / deterioration",
        "Safeguarding", "Environment / equipment", "Behaviour", "Workflow / scheduling",
        NOT_RECORDED]  # taxonomy order; "meds" is not a category of its own
    assert by_category[ALL].to_dict() == {
        "Medication": 3, "Transport": 1, "Mealtime / nutrition": 0,
        "Escalation / deterioration": 0, "Safeguarding": 0, "Environment / equipment": 0,
        "Behaviour": 0, "Workflow / scheduling": 1, NOT_RECORDED: 1}
    assert by_category["Oak House"][by_category["Oak House"] > 0].to_dict() == {
        "Medication": 1, NOT_RECORDED: 1}
    assert by_category["Elm Court"].sum() == 0 and len(by_category["Elm Court"]) == 9
    by_shift = m.by_shift.set_index(["service", "shift"])["reports"]
    assert by_shift[ALL].to_dict() == {"Early (7am-2pm)": 2, "Late (2pm-10pm)": 2,
                                       "Night (10pm-7am)": 1, NOT_RECORDED: 1}
    assert m.by_service.set_index("service")["reports"].to_dict() == {
        "Elm Court": 0, "Oak House": 2, "Riverside": 3, NOT_RECORDED: 1}
    weeks = m.by_week[m.by_week["service"] == ALL]
    assert weeks["week"].tolist() == ["2026-W40", "2026-W41", "2026-W42", "2026-W43",
                                      "2026-W44"]
    assert weeks["week_start"].tolist()[0] == date(2026, 9, 28)
    assert weeks["reports"].tolist() == [1, 2, 1, 1, 1]
    riverside = m.by_week[m.by_week["service"] == "Riverside"]
    assert riverside["reports"].tolist() == [0, 1, 0, 1, 1]


def test_an_empty_period_gives_zeros_and_nan_but_keeps_what_is_true_now() -> None:
    quiet = Period.week_of(date(2026, 7, 15))
    figures = october(period=quiet).figures
    assert figures.columns.tolist() == COLUMNS
    for measure in ("reports", "triaged", "patterns_opened", "actions_issued", "loops_to_close"):
        assert (figures.loc[measure] == 0).all(), measure
    for measure in ("incomplete_share", "median_days_to_triage", "triaged_on_time_share",
                    "median_days_to_complete", "loops_closed_share"):
        assert figures.loc[measure].isna().all(), measure
    # Overdue actions and open patterns are as of now, whatever the period.
    assert figures.loc["actions_overdue_now", ALL] == 2
    assert figures.loc["patterns_open_now", ALL] == 2


@pytest.mark.parametrize("shape", ["no columns", "right columns"])
def test_empty_inputs(shape: str) -> None:
    def empty(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame() if shape == "no columns" else frame.iloc[0:0]

    m = october(reports=empty(REPORTS), patterns=empty(PATTERNS), actions=empty(ACTIONS),
                events=empty(EVENTS), outbox=empty(OUTBOX))
    assert m.figures.columns.tolist() == [ALL]
    assert m.figures.loc["reports", ALL] == 0 and m.figures.loc["actions_issued", ALL] == 0
    assert math.isnan(m.figures.loc["incomplete_share", ALL])
    assert m.by_category["reports"].sum() == 0 and len(m.by_category) == 9
    assert m.by_service.to_dict("list") == {"service": [NOT_RECORDED], "reports": [0]}
    assert m.repeats_after_action.empty


def test_actions_without_verification_are_neither_completed_nor_verified() -> None:
    unverified = actions_frame(
        action("A-2", "Open", patterns=["PT-0001"]),
        action("A-4", "Done - awaiting verification", patterns=["PT-0003"], done=True),
        action("A-1", "Verified effective", patterns=["PT-0002"], done=True))  # no date
    m = october(actions=unverified)
    for measure in ("actions_completed", "actions_verified_effective",
                    "actions_not_effective", "actions_overdue_now"):
        assert m.figures.loc[measure, ALL] == 0, measure
    assert m.figures.loc["actions_issued", ALL] == 3  # added in October
    assert m.repeats_after_action.empty


# -- do repeats fall after actions? --------------------------------------------------------


def occurred(n: int, at: str | None, service: str = "Oak House",
             category: str = "medication") -> dict[str, Any]:
    row = report(n, at or "2026-10-01 12:00", service=service, category=category)
    row["occurred_at"] = utc(at)
    return row


def test_repeats_before_and_after_each_verified_action() -> None:
    reports = reports_frame(
        occurred(101, "2026-10-08 10:00"), occurred(102, "2026-10-10 10:00"),
        occurred(103, "2026-10-15 10:00"),
        occurred(104, "2026-10-20 22:30"),  # 23:30 BST on the verification day: before
        occurred(105, "2026-10-25 10:00"),  # not a member, same category and service
        occurred(106, "2026-10-26 10:00", service="Riverside"),  # another service
        occurred(107, "2026-10-20 23:30"),  # 00:30 BST on 21 October: after
        occurred(108, "2026-10-06 22:30"),  # 23:30 BST on 6 October: before the window
        occurred(109, None),  # when it happened is unknown: not counted
        occurred(110, "2026-11-03 23:30"),  # 23:30 GMT: the window's last day (14 days)
        occurred(111, "2026-11-04 00:00"),  # the day after: outside
        occurred(201, "2026-11-10 10:00", "Riverside", "transport"),
        occurred(202, "2026-11-18 10:00", "Riverside", "transport"),
        occurred(203, "2026-11-22 10:00", "Riverside", "transport"),
        occurred(204, "2026-11-23 10:00", "Riverside", "transport"),  # after now
    )
    patterns = patterns_frame(
        pattern("PT-0001", "same-category-service", ["medication", "Oak House"],
                ["NM-000101", "NM-000102", "NM-000103", "NM-000104"], "closed"),
        # No person_ref in `reports`: the pattern's own members only.
        pattern("PT-0002", "same-person", ["P-9"],
                ["NM-000201", "NM-000202", "NM-000203", "NM-000204"], "reopened"),
        pattern("PT-0003", "retired-rule", ["x"], ["NM-000101"], "closed"),
    )
    actions = actions_frame(
        action("A-1", "Verified effective", patterns=["PT-0001"],
               verified_on=date(2026, 10, 20), done=True),
        action("A-2", "Not effective", patterns=["PT-0002"], verified_on=date(2026, 11, 20)),
        action("A-3", "Verified effective", patterns=["PT-0003", "PT-0099"],
               verified_on=date(2026, 10, 20), done=True),
        action("A-4", "Verified effective", patterns=["PT-0001"], done=True),  # no date
        action("A-5", "Open", patterns=["PT-0001"]),
    )
    got = october(reports=reports, patterns=patterns, actions=actions).repeats_after_action
    assert got.to_dict("records") == [
        # before: 101-104 (7-20 October); after: 105, 107, 110 (21 October - 3 November)
        {"action_id": "A-1", "pattern_id": "PT-0001", "key_label": "medication · Oak House",
         "window_days": 14.0, "verified_on": date(2026, 10, 20), "before": 4, "after": 3,
         "fell": True, "complete": True},
        # before: 201, 202; after so far: 203 (204 is after now); window ends 4 December
        {"action_id": "A-2", "pattern_id": "PT-0002", "key_label": "P-9", "window_days": 14.0,
         "verified_on": date(2026, 11, 20), "before": 2, "after": 1, "fell": True,
         "complete": False},
        # a rule no longer in the rules: 14 days, members only; PT-0099 is unknown
        {"action_id": "A-3", "pattern_id": "PT-0003", "key_label": "x", "window_days": 14.0,
         "verified_on": date(2026, 10, 20), "before": 1, "after": 0, "fell": True,
         "complete": True},
    ]


def test_repeats_in_the_october_data_set() -> None:
    got = october().repeats_after_action
    # PT-0002's reports happened on 30 September (6, 1) and 31 October (7): none in the 14
    # days before 20 October, one after.
    assert got[["action_id", "pattern_id", "before", "after", "fell", "complete"]].to_dict(
        "records") == [{"action_id": "A-1", "pattern_id": "PT-0002", "before": 0, "after": 1,
                        "fell": False, "complete": True}]


# -- properties ----------------------------------------------------------------------------

SERVICES = ["Oak House", "Riverside", None, "  "]
CATEGORIES = [*RULES.choices("category"), "meds", None]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SERVICES), st.sampled_from(CATEGORIES),
                          st.integers(0, 60 * 24 * 60)), max_size=40))
def test_service_counts_add_up_to_all_services(rows: list[tuple[Any, Any, int]]) -> None:
    start = pd.Timestamp("2026-09-15", tz="UTC")
    reports = reports_frame(*[
        report(i, str(start + pd.Timedelta(minutes=m)), service=s, category=c)
        for i, (s, c, m) in enumerate(rows, start=1)]) if rows else REPORTS.iloc[0:0]
    m = october(reports=reports)
    total = m.figures.loc["reports", ALL]
    assert m.by_service["reports"].sum() == total
    for column in m.figures.columns:
        assert m.by_category.loc[m.by_category["service"] == column, "reports"].sum() \
            == m.figures.loc["reports", column]
        assert m.by_week.loc[m.by_week["service"] == column, "reports"].sum() \
            == m.figures.loc["reports", column]
    unnamed = m.by_service.set_index("service").loc[NOT_RECORDED, "reports"]
    assert m.figures.loc["reports"].drop(ALL).sum() + unnamed == total


# -- the reporting-signal control chart ----------------------------------------------------

WEEKS = [date(2026, 5, 25) + timedelta(weeks=k) for k in range(26)]  # 2026-W22 .. 2026-W47


def weekly(service: str, counts: list[int]) -> list[dict[str, Any]]:
    """`counts[k]` reports in chart week k, on its Wednesday at noon local time."""
    rows = []
    for week, count in zip(WEEKS, counts, strict=True):
        noon = pd.Timestamp(f"{week + timedelta(days=2)} 12:00", tz=TZ).tz_convert("UTC")
        rows += [report(0, str(noon), service=service)] * count
    return rows


def chart_of(**services: list[int]) -> pd.DataFrame:
    rows = [r for name, counts in services.items() for r in weekly(name, counts)]
    return control_chart(reports_frame(*rows) if rows else REPORTS.iloc[0:0], TZ, NOW)


def test_limits_from_each_services_own_baseline() -> None:
    chart = chart_of(Ash=[2, 6] * 6 + [4] * 14, Birch=[12, 20] * 6 + [16] * 14)
    limits = chart.groupby("service")[["centre", "lcl", "ucl"]].first()
    # mean 4: 4 ± 3·2 -> LCL max(0, -2) = 0, UCL 10; mean 16: 16 ± 3·4 -> 4 and 28
    assert limits.loc["Ash"].tolist() == [4.0, 0.0, 10.0]
    assert limits.loc["Birch"].tolist() == [16.0, 4.0, 28.0]
    assert chart["week"].tolist()[:2] == ["2026-W22", "2026-W23"]
    assert chart["week"].tolist()[25] == "2026-W47" and chart["week_start"][25] == WEEKS[-1]
    assert chart["baseline"].tolist()[:13] == [True] * 12 + [False]
    assert not chart["flag"].any() and signal_warnings(chart) == []


def test_a_drop_below_the_lcl_is_flagged_a_rise_above_the_ucl_is_not() -> None:
    chart = chart_of(Birch=[16] * 25 + [2], Cedar=[16] * 25 + [30])
    last = chart.groupby("service").last()
    assert last.loc["Birch", ["below_lcl", "flag"]].tolist() == [True, True]
    assert last.loc["Cedar", ["above_ucl", "flag"]].tolist() == [True, False]
    assert signal_warnings(chart) == [
        "Birch: 2 reports in 2026-W47, below its lower limit of 4.0 a week: is reporting "
        "falling away?"]


def test_a_run_of_eight_weeks_below_the_centre_is_flagged_seven_is_not() -> None:
    chart = chart_of(Dale=[4] * 18 + [3] * 8, Elm=[4] * 19 + [3] * 7,
                     Gorse=[16] * 18 + [12] * 7 + [0])
    flagged = chart[chart["flag"]].groupby("service")["week"].agg(list)
    assert flagged["Dale"] == [f"2026-W{w}" for w in range(40, 48)]
    assert "Elm" not in flagged
    assert not chart.loc[chart["service"] == "Dale", "below_lcl"].any()  # LCL 0
    assert signal_warnings(chart) == [
        "Dale: 8 weeks in a row below its usual 4.0 a week (2026-W40 to 2026-W47): is "
        "reporting falling away?",
        "Gorse: 0 reports in 2026-W47, below its lower limit of 4.0 a week, and 8 weeks in a "
        "row below its usual 16.0 a week (2026-W40 to 2026-W47): is reporting falling away?"]


def test_weeks_below_the_centre_in_the_baseline_do_not_start_a_run() -> None:
    # The baseline's last 6 weeks and the next 7 are under the mean of 4: a run of 7.
    chart = chart_of(Fir=[6] * 6 + [2] * 6 + [3] * 7 + [6] * 7)
    assert not chart["run_below"].any()


def test_the_chart_counts_full_local_weeks_before_this_one() -> None:
    rows = [report(1, "2026-11-22 23:30", service="Oak House"),  # Sunday 23:30 GMT: W47
            report(2, "2026-11-23 08:00", service="Oak House"),  # this week: not shown
            report(3, "2026-05-24 22:30", service="Oak House"),  # Sunday 23:30 BST: W21
            report(4, "2026-05-24 23:30", service="Oak House")]  # Monday 00:30 BST: W22
    chart = control_chart(reports_frame(*rows), TZ, NOW, weeks=26, baseline=12)
    assert chart["count"].tolist() == [1] + [0] * 24 + [1]
    assert control_chart(REPORTS.iloc[0:0], TZ, NOW).columns.tolist() == [
        "service", "week", "week_start", "count", "baseline", "centre", "lcl", "ucl",
        "below_lcl", "above_ucl", "run_below", "flag"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 12), min_size=26, max_size=26))
def test_limits_bracket_the_centre_and_counts_are_kept(counts: list[int]) -> None:
    chart = chart_of(Oak=counts)
    if not sum(counts):  # no report at all: no service to chart
        assert chart.empty
        return
    assert chart["count"].tolist() == counts
    assert ((chart["lcl"] <= chart["centre"]) & (chart["centre"] <= chart["ucl"])).all()
    assert (chart["lcl"] >= 0).all()
    assert chart["flag"].equals(~chart["baseline"] & (chart["below_lcl"] | chart["run_below"]))
