"""The tracker round trip and the closed loop, against a real SMTP server on 127.0.0.1."""

from email.message import EmailMessage

import pandas as pd
import pytest
from openpyxl import load_workbook

from connectors.store import Store
from jobs.cli import main
from jobs.pipeline import RunFailed
from tests.fakes.deployment import Deployment
from tests.fakes.smtp import SmtpServer


@pytest.fixture
def dep(tmp_path, smtp) -> Deployment:
    d = Deployment(tmp_path)
    d.data["mail"]["transport"] = {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                   "security": "none", "timeout_seconds": 5}
    d.add_google("2026-11-16 10:00", email="kim@example.org")
    d.add_google("2026-11-17 10:00", email="jo@example.org", category="Transport",
                 appointment_time="10:30", transport_change="Pickup moved",
                 staffing_allocation="One carer", person_impact="Nearly late",
                 communication_source="Driver", immediate_mitigation="Called ahead",
                 case_manager_notified="Yes")
    return d


def kinds(messages: list[EmailMessage]) -> list[str]:
    return sorted(str(m["X-Nearmiss-Key"]).split(":")[0] for m in messages)


def to_reporters(messages: list[EmailMessage]) -> list[str]:
    return [k for k in kinds(messages) if k in ("ack", "missing", "outcome")]


def test_acknowledge_then_outcome_and_reminder_then_nothing(dep, smtp):
    dep.run(now="2026-11-23 09:00")
    assert kinds(smtp.messages) == ["ack", "ack"]
    ack = smtp.messages[0]
    assert ack["To"] == "kim@example.org"
    assert "NM-000001" in ack["Subject"]
    body = ack.get_body(("plain",)).get_content()
    assert "Medication" in body and "Medication safety review" in body
    assert "OH-014" not in body  # no person-served reference in reporter emails

    dep.edit_tracker("Reports", "NM-000001", **{
        "Triage status": "Closed", "Closed on": "2026-11-24",
        "Outcome for reporter": "We added a reconciliation check for OH-014 at handover"})
    dep.edit_tracker("Actions", "", **{
        "Linked to": "NM-000001", "Action": "Reconciliation checkpoint after every med change",
        "Owner": "Pat", "Owner email": "pat@example.org", "Due": "2026-11-20",
        "Status": "Open"})
    smtp.messages.clear()
    dep.run(now="2026-11-25 09:00")
    assert kinds(smtp.messages) == ["outcome", "reminder"]
    outcome = next(m for m in smtp.messages if "outcome" in str(m["X-Nearmiss-Key"]))
    text = outcome.get_body(("plain",)).get_content()
    assert outcome["To"] == "kim@example.org"
    assert "We added a reconciliation check for [person] at handover" in text
    assert "OH-014" not in text
    reminder = next(m for m in smtp.messages if "reminder" in str(m["X-Nearmiss-Key"]))
    assert reminder["To"] == "pat@example.org" and "A-0001" in reminder["Subject"]
    actions = dep.sheet("Actions")
    assert actions[0]["Action ID"] == "A-0001" and actions[0]["Overdue"] == "overdue"

    smtp.messages.clear()
    dep.run(now="2026-11-25 15:00")  # same day: the reminder is at most daily
    assert smtp.messages == []


def test_closing_without_an_outcome_is_flagged_and_not_closed(dep, smtp):
    dep.run()
    dep.edit_tracker("Reports", "NM-000002", **{"Triage status": "Closed",
                                                "Closed on": "2026-11-24"})
    smtp.messages.clear()
    dep.run(now="2026-11-25 09:00")
    assert smtp.messages == []
    row = {r["Report ID"]: r for r in dep.sheet()}["NM-000002"]
    assert "closed without an outcome" in row["Check"]
    dep.edit_tracker("Reports", "NM-000002", **{
        "No further action reason": "Transport provider already changed its process"})
    dep.run(now="2026-11-25 10:00")
    assert kinds(smtp.messages) == ["outcome"]
    assert "already changed its process" in smtp.messages[0].get_body(
        ("plain",)).get_content()


def test_smtp_refusing_then_dropping_loses_nothing_and_sends_nothing_twice(dep, smtp):
    for i in range(3, 7):
        dep.add_google(f"2026-11-18 1{i}:00", email=f"staff{i}@example.org")
    smtp.reject_after = 2  # a temporary 451 after two messages
    with pytest.raises(RunFailed, match=r"^\d+ emails not sent: the SMTP server refused the "
                       r"message: 451 4\.3\.0 try again later; retried on a later run$"):
        dep.run()
    assert len(smtp.messages) == 2
    store = Store.open(dep.folder / "nearmiss.db")
    owed = len(store.pending())
    assert owed >= 4  # four more acknowledgements, and the alerts of the repeat pattern

    smtp.reject_after = None
    smtp.drop_after = 4  # the connection drops after two more
    with pytest.raises(RunFailed, match="SMTP"):
        dep.run(now="2026-11-23 10:00")
    assert len(smtp.messages) == 4

    smtp.drop_after = None
    dep.run(now="2026-11-23 11:00")
    keys = smtp.keys()
    assert len(keys) == 2 + owed and len(set(keys)) == len(keys)  # all once, none twice
    assert store.pending() == []


def test_server_down_keeps_everything_queued(dep, smtp):
    smtp.stop()
    with pytest.raises(RunFailed, match="cannot connect to the SMTP server"):
        dep.run()
    store = Store.open(dep.folder / "nearmiss.db")
    assert len(store.pending()) == 2
    assert {r["Report ID"] for r in dep.sheet()} == {"NM-000001", "NM-000002"}
    with SmtpServer(port=smtp.port) as back:
        dep.run(now="2026-11-23 10:00")
        assert kinds(back.messages) == ["ack", "ack"]


def test_sorted_extended_and_pruned_tracker_keeps_every_manager_value(dep, smtp):
    dep.add_google("2026-11-18 10:00", email="al@example.org")
    dep.run()
    dep.edit_tracker("Reports", "NM-000001", **{"Triage status": "Triaged",
                                                "Triage date": "2026-11-23"})
    dep.edit_tracker("Reports", "NM-000003", **{"Just-culture classification": "Human error"})
    # the manager sorts descending, adds two columns and deletes a row
    wb = load_workbook(dep.tracker_path)
    ws = wb["Reports"]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    header, body = rows[0], sorted(rows[1:], key=lambda r: r[0], reverse=True)
    header = ["Manager notes", *header, "Follow-up"]
    body = [[f"note {r[0]}", *r, "yes"] for r in body if r[0] != "NM-000002"]
    wb.remove(ws)
    ws = wb.create_sheet("Reports", 0)
    for row in [header, *body]:
        ws.append(row)
    wb.save(dep.tracker_path)

    dep.edit_microsoft  # noqa: B018 - the export is unchanged; only the tracker moved
    dep.add_google("2026-11-19 10:00", email="new@example.org")  # one new report too
    dep.run(now="2026-11-24 09:00")
    rows = {r["Report ID"]: r for r in dep.sheet()}
    assert set(rows) == {"NM-000001", "NM-000002", "NM-000003", "NM-000004"}
    assert rows["NM-000001"]["Triage status"] == "Triaged"
    assert rows["NM-000001"]["Manager notes"] == "note NM-000001"
    assert rows["NM-000003"]["Follow-up"] == "yes"
    assert rows["NM-000003"]["Suggested response"] == "System redesign and coaching"
    ws = load_workbook(dep.tracker_path)["Reports"]
    ids = [c.value for c in ws["B"][1:]]
    assert ids[:2] == ["NM-000003", "NM-000001"]  # the manager's order is kept
    assert sorted(ids[2:]) == ["NM-000002", "NM-000004"]  # restored and new rows appended
    trail = Store.open(dep.folder / "nearmiss.db").audit_trail("NM-000002")
    assert any(e["event"] == "row restored" for e in trail)


def test_hostile_text_stays_text_in_the_tracker_and_escaped_in_email(dep, smtp):
    dep.add_google("2026-11-18 10:00", email="eve@example.org",
                   description='=HYPERLINK("http://evil.example","click")',
                   immediate_action="+44 call me", conditions="-1 staff",
                   staff_involved="@everyone", service="<b>Oak</b> House")
    dep.run()
    ws = load_workbook(dep.tracker_path)["Reports"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2) if r[0].value == "NM-000003")
    cell = row[header.index("What happened")]
    assert cell.value.startswith("=HYPERLINK") and cell.data_type == "s"
    assert row[header.index("Immediate action")].value == "+44 call me"
    ack = next(m for m in smtp.messages if m["To"] == "eve@example.org")
    html = ack.get_body(("html",)).get_content()
    assert "<b>Oak</b>" not in html and "&lt;b&gt;Oak&lt;/b&gt; House" in html


def test_audit_shows_manager_changes_and_emails_per_report(dep, smtp):
    dep.run()
    dep.edit_tracker("Reports", "NM-000001", **{"Triage status": "Triaged"})
    dep.run(now="2026-11-23 10:00")
    trail = Store.open(dep.folder / "nearmiss.db").audit_trail("NM-000001")
    events = [(e["event"], e["reason"]) for e in trail]
    assert ("email sent", "acknowledgement to kim@example.org") in events
    assert ("manager change", "Reports 'Triage status': '' -> 'Triaged'") in events
    assert [e for e, _ in events][:2] == ["received", "rule fired"]


def test_a_run_that_would_ask_many_reporters_the_same_holds_the_requests(tmp_path, smtp):
    """A question the mapping misses makes every report of a run incomplete: the requests
    are held (the run says why, and exits non-zero until a person acts), then released
    once and sent once. A handful is an ordinary run."""
    dep = Deployment(tmp_path)
    dep.data["mail"]["transport"] = {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                     "security": "none", "timeout_seconds": 5}
    for i in range(12):
        dep.add_google(f"2026-11-20 {8 + i // 6:02d}:{i % 6 * 10:02d}",
                       email=f"staff{i}@example.org", medication_name=None)
    with pytest.raises(RunFailed, match=r"12 requests for missing items are held: 12 "
                                        r"reporters would be asked for 'medication name'"):
        dep.run(now="2026-11-23 09:00")
    assert to_reporters(smtp.messages) == ["ack"] * 12  # and one pattern alert
    sent = len(smtp.messages)
    with pytest.raises(RunFailed, match="held"):  # still held: still said
        dep.run(now="2026-11-23 09:15")
    assert len(smtp.messages) == sent

    config = str(dep.config().path)
    assert main(["release", "missing-info", "--config", config]) == 0
    assert main(["release", "missing-info", "--config", config]) == 0  # nothing more
    summary = dep.run(now="2026-11-23 09:30")
    assert not summary.failures and kinds(smtp.messages[sent:]) == ["missing"] * 12
    dep.run(now="2026-11-23 09:45")
    assert len(smtp.messages) == sent + 12
    store = Store.open(tmp_path / "nearmiss.db")
    events = [e["event"] for e in store.audit_trail("NM-000001")]
    store.close()
    assert events.count("request held") == 1

    # Three such reports in a later run of three: an ordinary run.
    for i in range(3):
        dep.add_google(f"2026-11-23 10:{i:02d}", email=f"late{i}@example.org",
                       medication_name=None)
    assert not dep.run(now="2026-11-23 11:00").failures
    assert to_reporters(smtp.messages[sent + 12:]) == ["ack"] * 3 + ["missing"] * 3


def test_a_first_run_over_a_long_history_sends_each_lead_at_most_one_alert(tmp_path, smtp):
    dep = Deployment(tmp_path)
    dep.data["mail"]["transport"] = {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                     "security": "none", "timeout_seconds": 5}
    dep.data["mail"]["recent_days"] = 14
    dep.data["mail"]["hold_requests"] = None  # their missing items are asked for, not held
    start = pd.Timestamp("2026-10-01 10:00", tz="UTC")
    for day in range(40):  # six weeks of escalations, safeguarding and repeats
        dep.add_google(start + pd.Timedelta(days=day, hours=day % 5),
                       email=f"staff{day}@example.org",
                       category="Safeguarding" if day % 2 else "Escalation / deterioration",
                       potential_harm="Severe")
    dep.run(now="2026-11-23 09:00")
    leads = set().union(*dep.data["roles"].values())
    alerts = [m for m in smtp.messages if str(m["X-Nearmiss-Key"]).split(":")[0]
              in ("alert", "notify", "pattern", "digest")]
    per_lead = {lead: sum(lead in str(m["To"]) for m in alerts) for lead in leads}
    assert max(per_lead.values()) == 1 and sum(per_lead.values()) >= 3
    assert any(str(m["X-Nearmiss-Key"]).startswith("digest:") for m in alerts)
    sent = len(smtp.messages)
    dep.run(now="2026-11-23 09:15")
    assert len(smtp.messages) == sent  # nothing owed twice
