"""A run with nothing new and nothing newly due costs a read: it saves no file and writes no
Sheets cell. The history holds a long repeat pattern and text a spreadsheet could take for
something else. (A pattern whose "Report IDs" pass a cell's 32,767 characters is planned once:
tests/transforms/test_tracker.py and the trackers' own tests.)"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime

import pandas as pd
import pytest
from openpyxl import load_workbook

from connectors.store import Store
from jobs.pipeline import RunFailed
from jobs.wiring import build
from tests.fakes.deployment import TZ, Deployment, answers, google_stamp

FIRST, LATER = "2026-11-23 09:00", "2026-11-23 09:40"  # nothing falls due in between
PATTERN_SIZE = 40

# Ordinary reports of the last days (acknowledged by email in the first run), one of them
# incomplete, one anonymous, and answers that a spreadsheet could read as something else.
RECENT = [
    {"service": "Riverside Supported Living", "description": "#N/A"},
    {"service": "Northgate Home Care", "description": "_x0041_ was on the label",
     "immediate_action": "=1+1", "person_ref": "0001"},
    {"service": "Elm Court Day Service", "description": "Fell short " * 4000},
    {"service": "Oak House", "category": "Transport", "description": "Taxi did not come",
     "email": None},
    {"service": "Oak House", "description": "MAR unsigned", "medication_name": None},
]


def pattern_report(i: int) -> tuple[pd.Timestamp, dict]:
    """The i-th report of one long chain: same category, same service, 30 minutes apart."""
    occurred = pd.Timestamp("2026-09-07 08:00", tz="UTC") + pd.Timedelta(minutes=30 * i)
    local = occurred.tz_convert(TZ).strftime("%Y-%m-%d %H:%M")
    return occurred + pd.Timedelta(hours=1), {"occurred_at": local, "person_ref": f"P-{i:04d}"}


def recent_report(i: int) -> tuple[pd.Timestamp, dict]:
    submitted = pd.Timestamp("2026-11-22 10:00", tz="UTC") + pd.Timedelta(hours=i)
    fields = {"occurred_at": (submitted - pd.Timedelta(hours=1)).tz_convert(TZ).strftime(
        "%Y-%m-%d %H:%M"), **RECENT[i]}
    return submitted, fields


def reports() -> Iterator[tuple[pd.Timestamp, str | None, dict]]:
    for i in range(PATTERN_SIZE):
        at, fields = pattern_report(i)
        yield at, "kim@example.org", fields
    for i in range(len(RECENT)):
        at, fields = recent_report(i)
        email = fields.pop("email", "kim@example.org")
        yield at, email, fields


def test_xlsx_a_steady_run_saves_no_file(tmp_path, monkeypatch):
    dep = Deployment(tmp_path)
    dep.data["mail"]["recent_days"] = 3  # the recent reports are acknowledged, not the history
    for at, email, fields in reports():  # one export written, not one per report
        row = {"Timestamp": google_stamp(at), "Email Address": email or ""}
        for question, value in answers(**fields).items():
            row[question] = ", ".join(value) if isinstance(value, list) else value
        dep.google_rows.append(row)
    dep.write_exports()

    first = dep.run(FIRST)
    assert first.reports == PATTERN_SIZE + len(RECENT) and not first.failures
    assert first.emails_pending == 0

    before = (dep.tracker_path.stat().st_mtime_ns, dep.tracker_path.read_bytes())

    def no_load(*args, **kwargs):
        raise AssertionError("the workbook was loaded for writing")

    monkeypatch.setattr("connectors.xlsx_tracker.load_workbook", no_load)
    steady = dep.run(LATER)
    assert not steady.failures and steady.new_responses == 0
    assert (steady.tracker_cells, steady.tracker_rows) == (0, 0)
    assert (dep.tracker_path.stat().st_mtime_ns, dep.tracker_path.read_bytes()) == before
    # Recomputed in full (a setting changed, one that changes no result): still no save.
    dep.data["mail"]["max_per_run"] = 7
    full = dep.run(LATER)
    assert not full.failures and (full.tracker_cells, full.tracker_rows) == (0, 0)
    assert (dep.tracker_path.stat().st_mtime_ns, dep.tracker_path.read_bytes()) == before



def test_xlsx_ten_new_reports_are_written_in_place_with_their_dates(tmp_path):
    """New reports are appended on the fast XML path, dates and widths included: openpyxl
    (minutes on a long history) is not needed for them."""
    dep = Deployment(tmp_path)
    for i in range(5):
        dep.add_google(f"2026-11-20 {9 + i}:00", service="Oak House")
    assert not dep.run(FIRST).failures
    with pytest.MonkeyPatch.context() as m:
        m.setattr("connectors.xlsx_tracker.load_workbook", _no_load)
        for i in range(10):
            dep.add_google(f"2026-11-23 09:{10 + i}", service="Riverside Supported Living "
                                                              "Services and Outreach")
        later = dep.run(LATER)
    assert not later.failures and later.new_responses == 10 and later.tracker_rows >= 10
    ws = load_workbook(dep.tracker_path)["Reports"]
    header = [c.value for c in ws[1]]
    submitted = header.index("Submitted") + 1
    service = header.index("Service") + 1
    last = ws.cell(ws.max_row, submitted)
    assert last.is_date and last.number_format == "yyyy-mm-dd hh:mm"
    assert last.value == pd.Timestamp("2026-11-23 09:19", tz="UTC").tz_convert(TZ).tz_localize(
        None).to_pydatetime()
    wide = len("Riverside Supported Living Services and Outreach") + 2
    assert ws.column_dimensions[ws.cell(1, service).column_letter].width == wide


def _no_load(*args, **kwargs):
    raise AssertionError("the workbook was loaded for writing")


def test_google_sheets_a_steady_run_writes_no_cell(workspace):
    dep, server = workspace, workspace.server
    dep.data["mail"]["recent_days"] = 3
    for at, email, fields in reports():
        answered = {k: v for k, v in fields.items() if v is not None}
        made = dep.server.forms.add_response(
            dep.form_id, {dep.ids[q]: v for q, v in answers(**answered).items()},
            email=email, at=at.to_pydatetime())
        assert made["responseId"]

    first = dep.run(FIRST)
    assert first.reports == PATTERN_SIZE + len(RECENT) and not first.failures

    server.requests.clear()
    steady = dep.run(LATER)
    assert not steady.failures and steady.new_responses == 0
    sent = Counter(r.method_id for r in server.requests if r.api == "sheets")
    assert sent["sheets.spreadsheets.values.batchUpdate"] == 0
    assert sent["sheets.spreadsheets.batchUpdate"] == 0
    assert sent["sheets.spreadsheets.values.batchGet"] == 1  # the read still happens


# -- a run with nothing new repeats the last one's results without recomputing them ----------

STANDS = "its results stand"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _recomputed(caplog, dep: Deployment, now: str, **kwargs) -> bool:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nearmiss"):
        summary = dep.run(now, **kwargs)
    assert not summary.failures
    return not any(STANDS in m for m in caplog.messages)


def test_a_run_recomputes_when_anything_it_depends_on_changes(tmp_path, caplog):
    """Each input in turn (a response, a manager's edit, a setting, the clock passing a due
    time or midnight, a failed run) makes the next run compute in full; with none, the run
    stands on the last one's results and says the same."""
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-23 08:00", category="Safeguarding", service="Oak House")
    first = dep.run("2026-11-23 09:00")
    due = pd.Timestamp(dep.sheet()[0]["Triage due"], tz=TZ)  # untriaged: overdue after
    assert ts("2026-11-23 09:30") < due < ts("2026-11-23 20:00")  # before the day ends

    assert not _recomputed(caplog, dep, "2026-11-23 09:05")
    again = dep.run("2026-11-23 09:06")  # the same figures, restored
    assert (again.reports, again.incomplete, again.patterns_open) == (
        first.reports, first.incomplete, first.patterns_open)

    dep.edit_tracker("Reports", "NM-000001", **{"Just-culture classification": "Human error"})
    assert _recomputed(caplog, dep, "2026-11-23 09:10")
    assert not _recomputed(caplog, dep, "2026-11-23 09:11")

    dep.add_google("2026-11-23 09:12", category="Falls", service="Oak House")
    assert _recomputed(caplog, dep, "2026-11-23 09:15")
    assert not _recomputed(caplog, dep, "2026-11-23 09:16")

    dep.data["mail"]["recent_days"] = 30
    assert _recomputed(caplog, dep, "2026-11-23 09:20")

    # The first report's triage falls due: its Overdue cell must be written.
    after_due = (due + pd.Timedelta(minutes=1)).tz_convert("UTC").strftime("%Y-%m-%d %H:%M")
    assert not _recomputed(caplog, dep, "2026-11-23 09:25")
    assert _recomputed(caplog, dep, after_due)
    assert dep.sheet()[0]["Overdue"] == "overdue"
    midnight = pd.Timestamp(due.date() + pd.Timedelta(days=1), tz=TZ).tz_convert("UTC")
    assert not _recomputed(caplog, dep, str(midnight - pd.Timedelta(minutes=1)))
    assert _recomputed(caplog, dep, str(midnight + pd.Timedelta(minutes=1)))

    # A failed run may have stored what its tracker write never showed: the next recomputes.
    export = tmp_path / "exports" / "near-miss-google-form.csv"
    kept = export.read_bytes()
    export.write_text("not,an,export\n1,2,3\n")
    with pytest.raises(RunFailed):
        dep.run(str(midnight + pd.Timedelta(minutes=5)))
    export.write_bytes(kept)  # as it was: nothing new in it
    assert _recomputed(caplog, dep, str(midnight + pd.Timedelta(minutes=6)))
    assert not _recomputed(caplog, dep, str(midnight + pd.Timedelta(minutes=7)))


def test_a_tracker_a_manager_saved_is_read_as_the_run_starts(tmp_path, caplog, monkeypatch):
    """The XLSX tracker is read from the start of a run (beside the exports) exactly when it
    is not as the last run left it: that run will compute. An untouched tracker waits for
    the run to know it computes; a cloud tracker, which shares clients with its forms,
    always waits."""
    from jobs import pipeline

    decided: list[bool] = []
    saved = pipeline.tracker_saved
    monkeypatch.setattr(pipeline, "tracker_saved",
                        lambda r: decided.append(saved(r)) or decided[-1])
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-23 08:00", category="Safeguarding", service="Oak House")
    assert _recomputed(caplog, dep, "2026-11-23 09:00") and decided == [True]  # no last run
    assert not _recomputed(caplog, dep, "2026-11-23 09:05") and decided[-1] is False
    dep.edit_tracker("Reports", "NM-000001", **{"Triage status": "Triaged"})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nearmiss"):
        edited = dep.run("2026-11-23 09:10")
    assert decided[-1] is True and edited.manager_changes == 1
    assert not any(STANDS in m for m in caplog.messages)
    dep.add_google("2026-11-23 09:12", category="Falls", service="Oak House")
    assert _recomputed(caplog, dep, "2026-11-23 09:15") and decided[-1] is False

    dep.edit_tracker("Reports", "NM-000001", **{"Triage status": "Closed"})
    connectors = build(dep.config())
    assert connectors.tracker_apart  # the XLSX tracker: a file of its own
    run = pipeline.Run(dep.config(), connectors, ts("2026-11-23 09:20"))
    connectors.store.begin_run(run.now)
    assert saved(run) is True
    connectors.tracker_apart = False  # as the cloud trackers are built
    assert saved(run) is False


def test_a_manager_typing_any_kind_of_value_is_read_as_its_text_and_settles(tmp_path):
    """The XLSX tracker reads calamine's cells (numbers as floats, a day as a date, a
    formula as its value): what a manager types, of whatever type, is audited as the text
    the sheet shows, a system cell typed over is put back, and the next run writes nothing."""
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    dep.add_microsoft("2026-11-21 09:00", category="Falls prevention")
    dep.run("2026-11-23 09:00")
    first, second = (r["Report ID"] for r in dep.sheet("Reports")[:2])
    system = {k: dep.sheet("Reports")[0][k] for k in ("Category", "Priority")}
    dep.edit_tracker("Reports", first, **{
        "Triage status": 3, "Triage date": "N/A", "Just-culture classification": True,
        "Outcome for reporter": "tab\there\nbreak ", "Closed on": date(2026, 11, 20),
        "Category": 42.5, "Priority": None})
    dep.edit_tracker("Reports", second, **{
        "Triage status": " Closed ", "Triage date": 46350,
        "Closed on": datetime(2026, 3, 29, 1, 30)})  # the hour the clocks go forward

    typed = dep.run("2026-11-23 10:00")
    # Category and Priority put back, and what the closures change (loop, overdue)
    assert typed.manager_changes == 8 and typed.tracker_cells >= 2
    store = Store.open(tmp_path / "nearmiss.db")
    seen = {e["reason"] for k in (first, second) for e in store.audit_trail(k)
            if e["event"] == "manager change"}
    assert seen == {
        "Reports 'Triage status': '' -> '3'", "Reports 'Triage date': '' -> 'N/A'",
        "Reports 'Just-culture classification': '' -> 'TRUE'",
        "Reports 'Outcome for reporter': '' -> 'tab\\there\\nbreak'",
        "Reports 'Closed on': '' -> '2026-11-20'", "Reports 'Triage status': '' -> 'Closed'",
        "Reports 'Triage date': '' -> '46350'",
        "Reports 'Closed on': '' -> '2026-03-29 01:30'"}
    assert {k: dep.sheet("Reports")[0][k] for k in system} == system

    again = dep.run("2026-11-23 10:05")
    assert (again.manager_changes, again.tracker_cells, again.tracker_rows) == (0, 0, 0)
