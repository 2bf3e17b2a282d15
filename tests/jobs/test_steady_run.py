"""A run with nothing new and nothing newly due costs a read: it saves no file and writes no
Sheets cell. The history holds a long repeat pattern and text a spreadsheet could take for
something else. (A pattern whose "Report IDs" pass a cell's 32,767 characters is planned once:
tests/transforms/test_tracker.py and the trackers' own tests.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pandas as pd

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
