"""Repeat patterns through the whole loop: the tracker, the alerts and the audit log."""

import pytest

from connectors.store import Store
from tests.fakes.deployment import Deployment

FACTORS = [["Handover"], ["Staffing levels"], ["Equipment"], ["Communication"],
           ["Training / competency"]]


@pytest.fixture
def dep(tmp_path) -> Deployment:
    return Deployment(tmp_path)


def add(dep: Deployment, i: int, day: str) -> None:
    """A medication near miss at Oak House; each with its own factor and person, so only
    the category + service rule can group them."""
    dep.add_google(f"{day} 10:00", occurred_at=f"{day} 09:00", person_ref=f"OH-{i:03d}",
                   contributing_factors=FACTORS[i % len(FACTORS)])


def alerts(dep: Deployment) -> list[str]:
    return [p.name for p in dep.emails() if p.name.startswith("pattern_")]


def test_three_in_fourteen_days_open_one_pattern_and_one_alert(dep):
    for i, day in enumerate(["2026-11-02", "2026-11-09", "2026-11-15"]):
        add(dep, i, day)
    summary = dep.run()
    assert summary.patterns_open == 1
    (pattern,) = dep.sheet("Patterns")
    assert pattern["Pattern ID"] == "PT-0001"
    assert pattern["Similar on"] == "Medication · Oak House"
    assert pattern["Report IDs"] == "NM-000001, NM-000002, NM-000003"
    assert alerts(dep) == ["pattern_PT-0001_opened.eml"]
    rows = {r["Report ID"]: r for r in dep.sheet()}
    assert rows["NM-000002"]["Patterns"] == "PT-0001"

    add(dep, 3, "2026-11-20")  # a fourth inside the window grows it, without a second alert
    dep.run(now="2026-11-23 10:00")
    (pattern,) = dep.sheet("Patterns")
    assert pattern["Reports"] == 4 and alerts(dep) == ["pattern_PT-0001_opened.eml"]
    store = Store.open(dep.folder / "nearmiss.db")
    trail = [e["event"] for e in store.audit_trail("PT-0001")]
    assert trail == ["opened", "email sent", "grown"]


@pytest.mark.parametrize("days", [["2026-11-02", "2026-11-09"],
                                  ["2026-11-01", "2026-11-11", "2026-11-21"]])
def test_two_in_fourteen_or_three_over_twenty_days_open_none(dep, days):
    for i, day in enumerate(days):
        add(dep, i, day)
    dep.run()
    assert dep.sheet("Patterns") == [] and alerts(dep) == []


def test_recurrence_after_the_review_closed_reopens_with_the_reason(dep):
    for i, day in enumerate(["2026-11-02", "2026-11-09", "2026-11-15"]):
        add(dep, i, day)
    dep.run(now="2026-11-16 09:00")
    dep.edit_tracker("Patterns", "PT-0001", **{"Review status": "Closed",
                                               "Closed on": "2026-11-16"})
    dep.run(now="2026-11-16 12:00")
    assert dep.sheet("Patterns")[0]["Status"] == "closed"

    add(dep, 3, "2026-11-22")
    dep.run(now="2026-11-23 09:00")
    (pattern,) = dep.sheet("Patterns")
    assert pattern["Status"] == "reopened"
    assert "NM-000004" in pattern["Why"] and "2026-11-16" in pattern["Why"]
    assert alerts(dep) == ["pattern_PT-0001_opened.eml",
                           "pattern_PT-0001_reopened_2026-11-16.eml"]
    trail = Store.open(dep.folder / "nearmiss.db").audit_trail("PT-0001")
    reopened = [e for e in trail if e["event"] == "reopened"]
    assert len(reopened) == 1 and "NM-000004" in reopened[0]["reason"]
    assert any(e["event"] == "manager change" and "Review status" in e["reason"] for e in trail)


def test_the_audit_log_explains_every_decision_of_a_report(dep):
    for i, day in enumerate(["2026-11-02", "2026-11-09", "2026-11-15"]):
        add(dep, i, day)
    dep.run()
    trail = Store.open(dep.folder / "nearmiss.db").audit_trail("NM-000003")
    events = {e["event"]: e["reason"] for e in trail}
    assert events["received"].startswith("version 1 from google-form")
    assert events["rule fired"].startswith("rule medication: Medication safety review, P2")
    assert events["joined pattern"] == "PT-0001: Medication · Oak House (same-category-service)"
    assert events["email sent"] == "acknowledgement to kim@example.org"


def test_an_action_verified_effective_reopens_when_its_pattern_recurs(dep):
    """Only a pattern an action links to has its members' times looked at: that one
    reopens the action, the others' actions stay as they were."""
    for i, day in enumerate(["2026-11-02", "2026-11-09", "2026-11-15"]):
        add(dep, i, day)
    dep.run(now="2026-11-16 09:00")
    for linked, action in (("PT-0001", "Second check of the MAR at handover"),
                           ("NM-000001", "Spoke with the team")):
        dep.edit_tracker("Actions", "", **{
            "Linked to": linked, "Action": action, "Owner": "Team leader",
            "Status": "Verified effective", "Verified on": "2026-11-16"})
    dep.run(now="2026-11-16 12:00")
    assert not any("joined" in (a["Tracking"] or "") for a in dep.sheet("Actions"))

    add(dep, 3, "2026-11-22")
    dep.run(now="2026-11-23 09:00")
    actions = {a["Linked to"]: a for a in dep.sheet("Actions")}
    assert "NM-000004 joined PT-0001 on 2026-11-22" in actions["PT-0001"]["Tracking"]
    assert "joined" not in (actions["NM-000001"]["Tracking"] or "")
