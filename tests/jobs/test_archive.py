"""Yearly archive sheets, on the XLSX and the Google Sheets tracker: a report (or pattern)
closed more than `tracker.archive_after_days` (a year by default) before a run moves to
"Reports <year it was closed>" with its manager values; what a manager types there is
still seen; it is never archived twice nor restored to the live sheet; reopened, it comes
back."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from gspread.utils import rowcol_to_a1
from openpyxl import load_workbook

from connectors.base import SheetWrite
from connectors.google_sheets import GoogleSheetsTracker
from connectors.store import Store
from tests.fakes.deployment import Deployment
from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_deployment import WorkspaceDeployment
from transforms.tracker import REPORTS, cell_text

NOW = "2026-11-23 09:00"
OLD = "Evening dose signed for twice on the MAR"  # reported in March 2025
NEW = "Insulin pen stored in the wrong fridge"  # reported last week
OUTCOME = "Second signature on the MAR at every handover"
CLOSE = {"Triage status": "Closed", "Outcome for reporter": OUTCOME}


def trail(store: Store, key: str) -> list[tuple[str, str]]:
    return [(e["event"], e["reason"]) for e in store.audit_trail(key)]


def texts(row: dict[str, Any]) -> dict[str, str]:
    return {k: cell_text(v) for k, v in row.items() if k is not None}


# -- the XLSX tracker ----------------------------------------------------------------------------


def xlsx_rows(dep: Deployment, title: str) -> dict[str, dict[str, str]]:
    wb = load_workbook(dep.tracker_path)
    if title not in wb.sheetnames:
        return {}
    return {r["Report ID"] if "Report ID" in r else r["Pattern ID"]: texts(r)
            for r in dep.sheet(title)}


def key_of(rows: dict[str, dict[str, str]], description: str) -> str:
    (key,) = [k for k, r in rows.items() if r["What happened"] == description]
    return key


def add_own_column(dep: Deployment, title: str, key: str, heading: str, value: Any) -> None:
    """A manager adds a column of their own and writes in it for one row."""
    wb = load_workbook(dep.tracker_path)
    ws = wb[title]
    col = ws.max_column + 1
    ws.cell(1, col).value = heading
    for row in range(2, ws.max_row + 1):
        if ws.cell(row, 1).value == key:
            ws.cell(row, col).value = value
    wb.save(dep.tracker_path)


@pytest.fixture
def dep(tmp_path) -> Deployment:
    d = Deployment(tmp_path)
    d.add_google("2025-03-10 10:00", description=OLD, occurred_at="2025-03-09 20:10")
    d.add_google("2026-11-20 10:00", description=NEW, occurred_at="2026-11-19 21:00",
                 person_ref="OH-020")
    return d


def test_xlsx_a_report_closed_long_ago_moves_to_its_year_and_is_still_matched(dep):
    dep.run(NOW)
    live = xlsx_rows(dep, "Reports")
    old, new = key_of(live, OLD), key_of(live, NEW)
    # Closed in April 2025, as Excel keeps a typed date: a date cell.
    dep.edit_tracker("Reports", old, **CLOSE, **{"Closed on": datetime(2025, 4, 1)})
    add_own_column(dep, "Reports", old, "My notes", "pharmacy told")
    # a date and a number, read as calamine gives them, written back as the cells they were
    add_own_column(dep, "Reports", old, "Follow-up", datetime(2025, 5, 2))
    add_own_column(dep, "Reports", old, "Doses", 3)

    moved = dep.run(NOW)
    assert moved.tracker_archived == 1 and moved.tracker_rows == 0
    assert "1 rows archived" in moved.line()
    live_after = xlsx_rows(dep, "Reports")
    assert list(live_after) == [new]
    assert live_after[new] == {**live[new], "My notes": "", "Follow-up": "", "Doses": ""}
    (archived,) = xlsx_rows(dep, "Reports 2025").values()
    assert archived["Report ID"] == old
    assert {k: archived[k] for k in ("Triage status", "Closed on", "Outcome for reporter",
                                     "My notes")} == {
        "Triage status": "Closed", "Closed on": "2025-04-01", "Outcome for reporter": OUTCOME,
        "My notes": "pharmacy told"}
    assert archived["Category"] == "Medication" and archived["Loop"]  # system values too
    ws = load_workbook(dep.tracker_path)["Reports 2025"]  # laid out as the live sheet
    (moved_row,) = [r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == old]
    own = dict(zip([c.value for c in ws[1]], moved_row, strict=True))
    assert (own["Follow-up"], own["Doses"]) == (datetime(2025, 5, 2), 3)
    assert ws.freeze_panes == "A2"
    assert any("In review" in str(dv.formula1) for dv in ws.data_validations.dataValidation)
    store = Store.open(dep.folder / "nearmiss.db")
    assert ("row archived", "moved from Reports to Reports 2025: closed on 2025-04-01, more "
            "than 365 days ago") in trail(store, old)

    # A manager classifies the archived report: seen, audited, acted on in its row.
    dep.edit_tracker("Reports 2025", old, **{"Just-culture classification": "Human error"})
    seen = dep.run(NOW)
    assert seen.manager_changes == 1 and seen.tracker_archived == 0 and seen.tracker_rows == 0
    assert ("manager change", "Reports 'Just-culture classification': '' -> 'Human error'"
            ) in trail(store, old)
    (archived,) = xlsx_rows(dep, "Reports 2025").values()
    assert archived["Suggested response"] == "System redesign and coaching"
    assert list(xlsx_rows(dep, "Reports")) == [new]

    # Nothing archived twice, nothing restored, nothing written.
    before = dep.sheet_values()
    again = dep.run(NOW)
    assert (again.tracker_archived, again.tracker_returned, again.tracker_rows,
            again.tracker_cells) == (0, 0, 0, 0)
    assert dep.sheet_values() == before
    assert not [e for e, _ in trail(store, old) if e == "row restored"]


def test_xlsx_a_report_reopened_in_the_archive_goes_back_with_its_values(dep):
    dep.run(NOW)
    old = key_of(xlsx_rows(dep, "Reports"), OLD)
    dep.edit_tracker("Reports", old, **CLOSE, **{"Closed on": "2025-04-01",
                                                 "Just-culture classification": "Human error"})
    dep.run(NOW)
    assert list(xlsx_rows(dep, "Reports 2025")) == [old]

    dep.edit_tracker("Reports 2025", old, **{"Triage status": "In review", "Closed on": None})
    back = dep.run(NOW)
    assert back.tracker_returned == 1 and back.tracker_archived == 0
    assert xlsx_rows(dep, "Reports 2025") == {}  # the sheet stays, empty but for its header
    row = xlsx_rows(dep, "Reports")[old]
    assert (row["Triage status"], row["Closed on"], row["Just-culture classification"],
            row["Outcome for reporter"]) == ("In review", "", "Human error", OUTCOME)
    store = Store.open(dep.folder / "nearmiss.db")
    assert ("row unarchived", "moved from Reports 2025 back to Reports: no longer closed"
            ) in trail(store, old)
    assert dep.run(NOW).tracker_returned == 0


def test_xlsx_patterns_reviewed_long_ago_move_to_their_year(tmp_path):
    dep = Deployment(tmp_path)
    for day, person in ((1, "OH-001"), (4, "OH-002"), (7, "OH-003")):
        dep.add_google(f"2025-03-{day:02d} 10:00", occurred_at=f"2025-03-{day:02d} 08:00",
                       person_ref=person, description=f"Dose signed twice, {day} March")
    dep.run(NOW)
    patterns = xlsx_rows(dep, "Patterns")
    assert patterns
    for key in patterns:
        dep.edit_tracker("Patterns", key, **{"Review status": "Closed",
                                             "Closed on": "2025-04-02",
                                             "Review notes": "Handover checklist in place"})
    moved = dep.run(NOW)
    assert moved.tracker_archived == len(patterns)
    assert xlsx_rows(dep, "Patterns") == {}
    archived = xlsx_rows(dep, "Patterns 2025")
    assert set(archived) == set(patterns)
    assert {r["Review notes"] for r in archived.values()} == {"Handover checklist in place"}
    assert {r["Status"] for r in archived.values()} == {"closed"}
    assert len(xlsx_rows(dep, "Reports")) == 3  # open reports stay where they are
    again = dep.run(NOW)
    assert (again.tracker_archived, again.tracker_rows, again.tracker_cells) == (0, 0, 0)


# -- the Google Sheets tracker ---------------------------------------------------------------------



def type_into(dep: WorkspaceDeployment, title: str, key: str, **values: str) -> None:
    """A manager types into any sheet, in the browser."""
    header, *body = dep.rows(title)
    row = next(i for i, r in enumerate(body, start=2) if r and r[0] == key)
    for column, value in values.items():
        a1 = rowcol_to_a1(row, header.index(column) + 1)
        dep.server.sheets.set_values(dep.sheet_id, f"'{title}'!{a1}", [[value]],
                                     value_input_option="USER_ENTERED")


def sheets_requests(server: GoogleFakeServer) -> Counter:
    return Counter(r.method_id for r in server.requests if r.api == "sheets")


def test_google_a_report_closed_long_ago_moves_in_a_bounded_number_of_requests(workspace):
    dep, server = workspace, workspace.server
    dep.add("2025-03-10 10:00", description=OLD, occurred_at="2025-03-09 20:10")
    dep.add("2026-11-20 10:00", description=NEW, occurred_at="2026-11-19 21:00",
            person_ref="OH-020")
    dep.run(NOW)
    live = dep.records()
    (old,) = [k for k, r in live.items() if r["What happened"] == OLD]
    (new,) = [k for k, r in live.items() if r["What happened"] == NEW]
    type_into(dep, "Reports", old, **CLOSE, **{"Closed on": "2025-04-01"})

    server.requests.clear()
    moved = dep.run(NOW)
    requests = sheets_requests(server)
    assert moved.tracker_archived == 1
    # One read of every sheet, archives included; one structural and one values write.
    assert requests == {"sheets.spreadsheets.get": 1, "sheets.spreadsheets.values.batchGet": 1,
                        "sheets.spreadsheets.batchUpdate": 1,
                        "sheets.spreadsheets.values.batchUpdate": 1}
    assert list(dep.records()) == [new] and dep.records()[new] == live[new]
    archived = dep.records("Reports 2025")
    assert list(archived) == [old]
    assert {k: archived[old][k] for k in ("Triage status", "Closed on",
                                          "Outcome for reporter")} == {
        "Triage status": "Closed", "Closed on": "2025-04-01", "Outcome for reporter": OUTCOME}
    sheet = server.sheets.sheet(dep.sheet_id, "Reports 2025")  # laid out as the live sheet
    assert sheet["properties"]["gridProperties"]["frozenRowCount"] == 1
    assert sheet["protectedRanges"] and sheet["basicFilter"]
    assert any("In review" in str(v["rule"]) for v in sheet["dataValidations"])

    type_into(dep, "Reports 2025", old, **{"Just-culture classification": "Human error"})
    seen = dep.run(NOW)
    assert seen.manager_changes == 1 and seen.tracker_archived == 0 and seen.tracker_rows == 0
    assert ("manager change", "Reports 'Just-culture classification': '' -> 'Human error'"
            ) in trail(dep.store, old)
    assert dep.records("Reports 2025")[old]["Suggested response"] == (
        "System redesign and coaching")

    server.requests.clear()
    again = dep.run(NOW)
    assert (again.tracker_archived, again.tracker_rows, again.tracker_cells) == (0, 0, 0)
    assert sheets_requests(server) == {"sheets.spreadsheets.get": 1,
                                       "sheets.spreadsheets.values.batchGet": 1}
    assert list(dep.records("Reports 2025")) == [old] and list(dep.records()) == [new]
    assert not [e for e, _ in trail(dep.store, old) if e == "row restored"]


def test_google_a_lost_answer_to_a_move_deletes_nothing_twice(tmp_path):
    """Google applied the deletion, the answer was lost, the request is retried: deleting
    again would take other rows. The grid is full, so the move grows it too."""
    from tests.connectors.test_google_sheets import _LosingClients

    with GoogleFakeServer() as server:
        sid = server.sheets.create_spreadsheet("Tracker", ["Sheet1"])
        server.sheets.add_sheet(sid, "Reports", rows=4, cols=len(REPORTS.columns),
                                frozen_rows=1)
        server.sheets.set_values(sid, "Reports!A1", [REPORTS.columns, ["NM-000001"],
                                                     ["NM-000002"], ["NM-000003"]])
        clients = _LosingClients(server)
        tracker = GoogleSheetsTracker(sid, clients)
        tracker.read([REPORTS])
        archive = REPORTS.archive(2025)
        tracker.write([SheetWrite(spec=REPORTS, cells={(3, 2): 2}, append=[["NM-000004"]],
                                  delete_rows=[2]),
                       SheetWrite(spec=archive, create=True,
                                  header=dict(enumerate(archive.columns, 1)),
                                  append=[["NM-000001"]])])
        assert clients.adapter.lost == 1
        assert server.sheets.get_values(sid, "Reports!A:B") == [
            ["Report ID", "Version"], ["NM-000002", "2"], ["NM-000003"], ["NM-000004"]]
        assert server.sheets.get_values(sid, "'Reports 2025'!A:A") == [["Report ID"],
                                                                       ["NM-000001"]]
        server.assert_no_violations()
