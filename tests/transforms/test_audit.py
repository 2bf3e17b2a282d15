import pandas as pd

from transforms.audit import decision_events, manager_events, pattern_events, question_events
from transforms.tracker import ManagerChange

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")


def view(**overrides) -> pd.DataFrame:
    row = {"report_id": "NM-000001", "version": 1, "source": "google-form",
           "response_id": "g-1", "dq_status": "incomplete", "missing": ["medication_name"],
           "invalid": [], "dq_messages": ["medication name: missing (medication)"],
           "rule_id": "medication", "pathway": "medication_review",
           "pathway_label": "Medication safety review", "priority": "P2",
           "triage_due": NOW, "notification_risk": False, "notification_reasons": "",
           "problems": [], **overrides}
    return pd.DataFrame([row])


def test_first_sight_logs_receipt_check_and_rule(rules, tz):
    events, state = decision_events(view(), {}, rules, tz, NOW)
    assert [e.event for e in events] == ["received", "check failed", "rule fired"]
    assert events[2].reason == ("rule medication: Medication safety review, P2, triage due "
                                "2026-11-23 09:00")
    again, _ = decision_events(view(), state, rules, tz, NOW)
    assert again == []  # unchanged decisions are not logged twice


def test_completion_new_version_and_risk_are_logged_when_they_change(rules, tz):
    _, state = decision_events(view(), {}, rules, tz, NOW)
    later = NOW + pd.Timedelta(hours=2)
    events, state = decision_events(
        view(version=2, dq_status="complete", missing=[], dq_messages=[],
             notification_risk=True, notification_reasons="serious potential harm"),
        state, rules, tz, later)
    assert [e.event for e in events] == ["new version", "completed", "notification risk"]
    assert events[1].reason == "now complete: medication name supplied"
    assert state["NM-000001"]["completed_at"] == "2026-11-23 11:00"


def pattern(**overrides) -> pd.DataFrame:
    row = {"pattern_id": "PT-0001", "rule_id": "same-category-service",
           "key_label": "Medication · Oak House", "members": ["NM-1", "NM-2", "NM-3"],
           "count": 3, "status": "open", "closed_at": pd.NaT, "reason": "reached 3", **overrides}
    return pd.DataFrame([row])


def test_pattern_opened_grown_and_reopened(tz):
    events, happened, state = pattern_events(pattern(), {}, tz)
    assert happened.tolist() == ["opened"]
    assert [(e.entity, e.event) for e in events][:2] == [("pattern", "opened"),
                                                         ("report", "joined pattern")]
    events, happened, state = pattern_events(
        pattern(members=["NM-1", "NM-2", "NM-3", "NM-4"], count=4), state, tz)
    assert happened.tolist() == [""]
    assert [e.event for e in events] == ["grown", "joined pattern"]
    closed = pd.Timestamp("2026-11-20 23:59", tz="UTC")
    events, happened, _ = pattern_events(
        pattern(members=["NM-1", "NM-2", "NM-3", "NM-4", "NM-5"], count=5, status="reopened",
                closed_at=closed, reason="NM-5 on 2026-11-22 is 2 days after..."), state, tz)
    assert happened.tolist() == ["reopened"]
    assert ("reopened", "NM-5 on 2026-11-22 is 2 days after...") in [
        (e.event, e.reason) for e in events]


def test_manager_changes_name_sheet_column_old_and_new():
    (event,) = manager_events([ManagerChange("Actions", "A-0001", "Status", "Open",
                                             "Verified effective")])
    assert (event.entity, event.entity_id) == ("action", "A-0001")
    assert event.reason == "Actions 'Status': 'Open' -> 'Verified effective'"


def test_questions_added_renamed_and_removed_are_named_once():
    before = {"q1": "What happened?", "q2": "Shift", "q3": "Ward"}
    now = {"q1": "What happened? (in your words)", "q2": "Shift", "q4": "Service"}
    said = [(e.event, e.reason) for e in question_events("form", before, now)]
    assert said == [("question renamed", "'What happened?' -> 'What happened? (in your words)'"),
                    ("question added", "'Service'"), ("question removed", "'Ward'")]
    # The first read, an unchanged form, and a read that gave no questions say nothing.
    assert question_events("form", {}, now) == []
    assert question_events("form", now, dict(now)) == []
    assert question_events("form", before, {}) == []
