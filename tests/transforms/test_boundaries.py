"""Time boundaries: the `recent_days` window of the emails, a report's triage due time (the
Overdue column) and an action's due day."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from transforms.actions import action_state
from transforms.loop import owed_messages
from transforms.tracker import reports_rows

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")
SECOND = pd.Timedelta(seconds=1)
ROLES = {"safeguarding_lead": ["sg@care.example"]}


def view(*rows: dict) -> pd.DataFrame:
    """Checked and triaged reports, as the loop and the tracker get them."""
    base = {"category": "medication", "service": "Oak House", "setting": "residential",
            "occurred_at": NOW - pd.Timedelta(days=30), "potential_harm": "moderate",
            "person_ref": "OH-014", "description": "d", "immediate_action": "a",
            "reporter_email": "kim@example.org", "missing": ["medication_name"],
            "invalid": [], "pathway": "safeguarding_review",
            "pathway_label": "Safeguarding review", "priority": "P1", "triage_due": NOW,
            "rule_id": "safeguarding", "alert_roles": ["safeguarding_lead"],
            "notification_risk": False, "notification_reasons": "", "closed": False,
            "closed_on": None, "outcome": "", "nfa_reason": "", "pattern_ids": [],
            "version": 1, "dq_status": "incomplete",
            "blocked": "cannot proceed without: medication name", "triaged": False,
            "suggested_response": None, "check": None, "loop": None}
    return pd.DataFrame([{**base, "report_id": f"NM-{i:06d}", **r}
                         for i, r in enumerate(rows, 1)])


def test_a_report_exactly_recent_days_old_is_owed_its_emails_one_second_older_is_not(
        rules, tz):
    """Submitted exactly 14 days before the run: acknowledged, asked for what is missing, and
    alerted; one second earlier: none of them."""
    window = pd.Timedelta(days=14)
    reports = view({"submitted_at": NOW - window},
                   {"submitted_at": NOW - window - SECOND})
    owed = {o.key.split(":")[0] + ":" + o.entity_id for o in owed_messages(
        reports, rules, roles=ROLES, queued=set(), now=NOW, tz=tz, recent_days=14)}
    assert owed == {"ack:NM-000001", "missing:NM-000001", "alert:NM-000001"}


def test_a_report_is_overdue_only_after_its_triage_due_time(rules, tz):
    """Due now: not overdue. Due a second ago: overdue. Triaged: never overdue."""
    reports = view({"triage_due": NOW}, {"triage_due": NOW - SECOND},
                   {"triage_due": NOW - SECOND, "triaged": True},
                   {"triage_due": NOW + SECOND})
    reports["submitted_at"] = NOW - pd.Timedelta(days=1)
    rows = reports_rows(reports, rules, tz, NOW)
    assert rows["Overdue"].to_dict() == {"NM-000001": "", "NM-000002": "overdue",
                                         "NM-000003": "", "NM-000004": ""}


def test_an_action_due_today_is_not_overdue_until_tomorrow(tz):
    """An action (and its verification) due today is not overdue; due yesterday it is."""
    today = date(2026, 11, 23)
    manager = {
        "A-0001": {"Action": "Second check at handover", "Due": "2026-11-23",
                   "Status": "Open"},
        "A-0002": {"Action": "Second check at handover", "Due": "2026-11-22",
                   "Status": "Open"},
        "A-0003": {"Action": "Second check at handover", "Due": "2026-11-01",
                   "Status": "Done - awaiting verification", "Verification due": "2026-11-23"},
        "A-0004": {"Action": "Second check at handover", "Due": "2026-11-01",
                   "Status": "Done - awaiting verification", "Verification due": "2026-11-22"},
    }
    out = action_state(manager, {}, today, tz).set_index("action_id")
    assert out["overdue"].to_dict() == {"A-0001": False, "A-0002": True, "A-0003": False,
                                        "A-0004": False}
    assert out["verification_overdue"].to_dict() == {"A-0001": False, "A-0002": False,
                                                     "A-0003": False, "A-0004": True}
    tomorrow = action_state(manager, {}, today + timedelta(days=1), tz).set_index("action_id")
    assert tomorrow.loc["A-0001", "overdue"] and tomorrow.loc["A-0003", "verification_overdue"]
