"""The whole loop on embedded connectors: real export files, SQLite, XLSX and .eml files."""

import re

import pandas as pd
import pytest

from connectors.store import Store
from jobs.pipeline import RunFailed
from tests.fakes.deployment import MEDICATION, Deployment


@pytest.fixture
def dep(tmp_path) -> Deployment:
    d = Deployment(tmp_path)
    d.add_google("2026-11-16 10:00", **{"service": "Riverside Supported Living"})
    d.add_microsoft("2026-11-17 11:00", email="sam@example.org", name="Sam",
                    category="Transport", service="Northgate Home Care",
                    appointment_time="10:30", transport_change="Pickup moved an hour",
                    staffing_allocation="One carer", person_impact="Nearly late",
                    communication_source="Driver's text", immediate_mitigation="Called ahead",
                    case_manager_notified="No")
    return d


def store_of(dep: Deployment) -> Store:
    return Store.open(dep.folder / "nearmiss.db")


def test_second_run_on_the_same_inputs_adds_nothing(dep):
    first = dep.run()
    assert (first.new_responses, first.reports) == (2, 2)
    assert first.emails_sent == 2  # two acknowledgements
    tracker_before = dep.sheet_values()
    emails_before = [p.read_bytes() for p in dep.emails()]

    second = dep.run()
    assert (second.new_responses, second.new_versions, second.reports_changed) == (0, 0, 0)
    assert (second.emails_queued, second.emails_sent) == (0, 0)
    assert (second.tracker_rows, second.tracker_cells) == (0, 0)
    assert dep.sheet_values() == tracker_before
    assert [p.read_bytes() for p in dep.emails()] == emails_before
    last = store_of(dep).audit_trail(str(second.run_id))[-1]
    assert last["event"] == "run finished" and last["reason"].startswith("0 new, 0 edited")


def test_edited_response_is_a_new_version_of_the_same_report(dep):
    dep.run()
    dep.edit_microsoft(1, "2026-11-18 09:00", description="Pickup moved, and nobody told us")
    summary = dep.run()
    assert (summary.new_responses, summary.new_versions, summary.reports) == (0, 1, 2)
    rows = {r["Report ID"]: r for r in dep.sheet()}
    assert len(rows) == 2
    assert rows["NM-000002"]["Version"] == 2
    assert rows["NM-000002"]["What happened"] == "Pickup moved, and nobody told us"
    store = store_of(dep)
    assert [v["version"] for v in store.raw_versions("microsoft-form", "1")] == [1, 2]
    assert any(e["event"] == "new version" for e in store.audit_trail("NM-000002"))


def test_malformed_rows_are_kept_marked_and_the_run_completes(dep):
    dep.google_rows.append({"Timestamp": "sometime on Tuesday", "Email Address": "",
                            "What kind of near miss was it?": "Paperwork",
                            "What happened?": "Form filled in wrong"})
    dep.write_exports()
    summary = dep.run()
    assert summary.reports == 3
    rows = {r["Report ID"]: r for r in dep.sheet()}
    odd = rows["NM-000003"]
    assert odd["Category"] == "Paperwork" and odd["Data quality"] == "Incomplete"
    trail = store_of(dep).audit_trail("NM-000003")
    reasons = " ".join(e["reason"] for e in trail)
    assert "invalid: Submitted: 'sometime on Tuesday' is not a date and time; dated by when " \
        "it was first received" in reasons
    assert "'Paperwork' is not a known value" in reasons
    marked = {r["Report ID"]: r for r in dep.sheet("Data quality")}["NM-000003"]
    assert marked["Marked values"].startswith("invalid: Submitted: 'sometime on Tuesday'")


def test_missing_input_file_names_the_file_and_keeps_the_rest(dep):
    dep.run()
    dep.add_google("2026-11-20 10:00", **{"service": "Oak House"})
    (dep.folder / "exports" / "near-miss-microsoft-form.xlsx").unlink()
    with pytest.raises(RunFailed, match=r"microsoft-form: export file not found: .*\.xlsx"):
        dep.run()
    rows = {r["Report ID"] for r in dep.sheet()}
    assert rows == {"NM-000001", "NM-000002", "NM-000003"}  # nothing lost, new one in


def test_medication_report_missing_the_name_is_incomplete_then_completed(dep):
    dep.add_google("2026-11-19 10:00", email="jo@example.org", medication_name=None)
    dep.run()
    row = {r["Report ID"]: r for r in dep.sheet()}["NM-000003"]
    assert row["Data quality"] == "Incomplete"
    assert row["Missing information"] == "cannot proceed without: medication name"
    quality = {r["Report ID"]: r for r in dep.sheet("Data quality")}
    assert quality["NM-000003"]["Status"] == "Incomplete"
    request = [p for p in dep.emails() if p.name.startswith("missing_NM-000003")]
    assert len(request) == 1 and b"medication name" in request[0].read_bytes()

    follow_up = {**{k: None for k in MEDICATION}, "medication_name": "Sertraline 50mg"}
    dep.add_google("2026-11-20 08:00", email="jo@example.org", report_reference="NM-000003",
                   **follow_up)
    summary = dep.run(now="2026-11-23 10:00")
    assert summary.reports == 3
    row = {r["Report ID"]: r for r in dep.sheet()}["NM-000003"]
    assert row["Data quality"] == "Complete" and row["Version"] == 2
    assert {r["Report ID"]: r for r in dep.sheet("Data quality")}["NM-000003"][
        "Status"] == "Complete"
    events = [e["event"] for e in store_of(dep).audit_trail("NM-000003")]
    assert "check failed" in events and "completed" in events


def test_unmapped_question_holds_only_the_reports_that_answer_it(dep):
    dep.google_rows.append({"Timestamp": "2026/11/20 10:00:00 AM GMT",
                            "What kind of near miss was it?": "Medication",
                            "Was anyone else nearby?": "No"})
    dep.write_exports()
    summary = dep.run()
    assert summary.held == 1 and summary.reports == 3
    assert any("Was anyone else nearby?" in u for u in summary.unmapped)
    assert {r["Report ID"] for r in dep.sheet()} == {"NM-000001", "NM-000002"}
    held = {r["Report ID"]: r for r in dep.sheet("Data quality")}["NM-000003"]
    assert held["Status"] == "Held"
    dep.data["mapping"]["Was anyone else nearby?"] = "ignore"
    assert dep.run().held == 0
    assert "NM-000003" in {r["Report ID"] for r in dep.sheet()}


def test_anonymous_report_is_kept_and_not_emailed(tmp_path):
    dep = Deployment(tmp_path)
    dep.add_microsoft("2026-11-20 10:00")  # email "anonymous", no name
    summary = dep.run()
    row = dep.sheet()[0]
    assert row["Reporter"] == "Anonymous"
    assert summary.emails_queued == 0
    assert row["Loop"] == "anonymous: hears back in the team brief"


def test_run_lock_stops_a_second_run(dep):
    from connectors.errors import LockedError
    from jobs.lock import run_lock

    with run_lock(dep.folder / "nearmiss.lock"), pytest.raises(LockedError,
                                                               match="another run"):
        dep.run()


def test_reports_older_than_the_recent_window_get_no_email(tmp_path):
    dep = Deployment(tmp_path)
    dep.data["mail"]["recent_days"] = 14
    dep.add_google("2026-06-01 10:00")
    dep.add_google("2026-11-20 10:00")
    summary = dep.run()
    assert summary.emails_sent == 1
    assert pd.Series([p.name for p in dep.emails()]).str.contains("NM-000002").all()


def test_a_form_with_no_responses_yet_creates_the_tracker(tmp_path):
    dep = Deployment(tmp_path)
    summary = dep.run()
    assert (summary.reports, summary.emails_queued) == (0, 0)
    values = dep.sheet_values()
    assert set(values) == {"Reports", "Patterns", "Actions", "Data quality"}
    assert values["Reports"][0][0] == "Report ID" and len(values["Reports"]) == 1


def test_an_edited_response_that_adds_the_missing_item_completes_the_report(tmp_path):
    dep = Deployment(tmp_path)
    dep.add_microsoft("2026-11-19 10:00", email="sam@example.org", name="Sam",
                      medication_name=None)
    dep.run()
    assert dep.sheet()[0]["Data quality"] == "Incomplete"
    dep.edit_microsoft(1, "2026-11-19 12:00", medication_name="Metformin 500mg")
    summary = dep.run(now="2026-11-23 10:00")
    assert summary.new_versions == 1
    row = dep.sheet()[0]
    assert (row["Report ID"], row["Version"], row["Data quality"]) == ("NM-000001", 2,
                                                                      "Complete")
    events = [e["event"] for e in store_of(dep).audit_trail("NM-000001")]
    assert events.count("check failed") == 1 and "completed" in events


def us_export(tmp_path, dayfirst: bool) -> Deployment:
    """A Google CSV saved from a US-locale sheet: M/D/YYYY timestamps and answers."""
    d = Deployment(tmp_path, dayfirst=dayfirst)
    for stamp, occurred in [("10/6/2026 10:00:00", "10/5/2026 21:15"),
                            ("10/18/2026 9:30:00", "10/17/2026 8:00"),
                            ("11/3/2026 14:05:00", "11/2/2026 7:45")]:
        d.add_google("2026-11-01 10:00", occurred_at=occurred)
        d.google_rows[-1]["Timestamp"] = stamp
    d.write_exports()
    return d


def test_a_month_first_export_reads_the_same_whatever_dayfirst_says(tmp_path):
    times = []
    for dayfirst in (True, False):
        d = us_export(tmp_path / str(dayfirst), dayfirst)
        summary = d.run()
        assert summary.warnings == []
        times.append([(r["Submitted"], r["Occurred"]) for r in d.sheet()])
    assert times[0] == times[1] == [("2026-10-06 10:00", "2026-10-05 21:15"),
                                    ("2026-10-18 09:30", "2026-10-17 08:00"),
                                    ("2026-11-03 14:05", "2026-11-02 07:45")]


def test_a_column_in_both_day_orders_is_named_and_its_ambiguous_dates_marked(tmp_path):
    d = Deployment(tmp_path)
    for occurred in ["25/10/2026 10:00", "10/18/2026 10:00", "3/4/2026 10:00"]:
        d.add_google("2026-11-01 10:00", occurred_at=occurred)
    summary = d.run()
    assert summary.warnings == [
        "google-form: when it happened: dates in both day orders ('25/10/2026 10:00' is "
        "day-first but '10/18/2026 10:00' is month-first); the ambiguous ones are marked"]
    assert [r["Marked values"] for r in d.sheet("Data quality")] == [
        "invalid: when it happened: '3/4/2026 10:00' could be either 3 April or 4 March: the "
        "column has dates in both orders"]
    trail = [e["event"] for e in store_of(d).audit_trail("google-form")]
    assert trail.count("warning") == 1
    d.run()  # said once
    assert [e["event"] for e in store_of(d).audit_trail("google-form")].count("warning") == 1


def test_a_row_a_manager_copied_is_marked_and_audited_once(dep):
    dep.add_google("2026-11-16 10:00")
    dep.run()
    original = next(r for r in dep.sheet("Reports") if r["Report ID"] == "NM-000001")
    dep.edit_tracker("Reports", "", **{**original, "Triage status": "Closed"})  # the copy
    dep.run("2026-11-23 10:00")
    dep.run("2026-11-23 11:00")
    rows = [r for r in dep.sheet("Reports") if r["Report ID"] == "NM-000001"]
    assert [r["Triage status"] for r in rows] == [None, "Closed"]
    assert rows[0]["Check"] in (None, "")
    assert rows[1]["Check"] == ("copy of NM-000001: row 2 is the one read; what is typed "
                                "here is not read: move it there and delete this row")
    trail = Store.open(dep.folder / "nearmiss.db").audit_trail("NM-000001")
    copied = [e for e in trail if e["event"] == "copied row"]
    assert len(copied) == 1 and re.search(r"^Reports row \d+ repeats NM-000001: row 2 is the "
                                          r"one read", copied[0]["reason"])
    assert not any(e["event"] == "manager change" for e in trail)  # the copy is not read
