"""One contract for every Tracker: what the pipeline relies on, whatever the backend."""

from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from connectors.base import SheetWrite, Tracker
from transforms.tracker import (
    ACTIONS,
    DATA_QUALITY,
    REPORTS,
    SHEETS,
    cell_text,
    plan_sheet,
    read_sheet,
    stored_text,
)


def xlsx(tmp_path: Path) -> Iterator[Callable[[], Tracker]]:
    from connectors.xlsx_tracker import XlsxTracker

    path = tmp_path / "tracker.xlsx"
    yield lambda: XlsxTracker(path)  # a fresh instance per run, as in production


def google_sheets(tmp_path: Path) -> Iterator[Callable[[], Tracker]]:
    from connectors.google_auth import GoogleClients
    from connectors.google_sheets import GoogleSheetsTracker
    from tests.fakes.google import GoogleFakeServer

    with GoogleFakeServer() as server:
        spreadsheet_id = server.sheets.create_spreadsheet("Tracker", ["Sheet1"])
        clients = GoogleClients(endpoint=server.url, sleep=lambda s: None,
                                max_requests_per_minute=100000)
        yield lambda: GoogleSheetsTracker(spreadsheet_id, clients)
        server.assert_no_violations()  # every request was one the real API accepts


def excel_graph(tmp_path: Path) -> Iterator[Callable[[], Tracker]]:
    from config.settings import Workbook
    from connectors.excel_graph import ExcelGraphTracker
    from tests.fakes.microsoft import MicrosoftFakeServer
    from tests.fakes.microsoft_deployment import HOST, SITE, graph_clients, tenant

    with MicrosoftFakeServer() as server:
        site = tenant(server)
        server.graph.add_workbook(server.graph.drive_of_site(site), "Tracker.xlsx",
                                  {"Sheet1": []})
        clients = graph_clients(server, tmp_path)
        where = Workbook(site=HOST + SITE, path="Tracker.xlsx")
        yield lambda: ExcelGraphTracker(where, clients)
        server.assert_no_violations()


IMPLEMENTATIONS = {"xlsx": xlsx, "google_sheets": google_sheets, "excel_graph": excel_graph}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make(request, tmp_path) -> Iterator[Callable[[], Tracker]]:
    yield from IMPLEMENTATIONS[request.param](tmp_path)


def text(rows: list[list]) -> list[list[str]]:
    """Compare what a manager sees: backends differ in types, not in text."""
    out = [[cell_text(c) for c in row] for row in rows]
    for row in out:
        while row and row[-1] == "":
            row.pop()
    while out and not out[-1]:
        out.pop()
    return out


def create(make, spec=REPORTS, rows=None) -> None:
    make().write([SheetWrite(spec=spec, create=True, header=dict(enumerate(spec.columns, 1)),
                             append=rows or [])])


def test_missing_sheets_are_absent(make):
    assert make().read(SHEETS) == {}


def test_created_sheet_reads_back_header_and_rows(make):
    create(make, rows=[["NM-000001", 1, "2026-11-20 10:00"], ["NM-000002", 2]])
    rows = text(make().read([REPORTS])["Reports"])
    assert rows[0] == REPORTS.columns
    assert rows[1:] == [["NM-000001", "1", "2026-11-20 10:00"], ["NM-000002", "2"]]


def test_cells_update_in_place_and_rows_append_after_the_last(make):
    create(make, rows=[["NM-000001", 1], ["NM-000002", 1]])
    make().write([SheetWrite(spec=REPORTS, cells={(3, 2): 2},
                             append=[["NM-000003", 1]])])
    rows = text(make().read([REPORTS])["Reports"])
    assert rows[1:] == [["NM-000001", "1"], ["NM-000002", "2"], ["NM-000003", "1"]]


def test_several_sheets_in_one_write(make):
    make().write([
        SheetWrite(spec=REPORTS, create=True, header=dict(enumerate(REPORTS.columns, 1)),
                   append=[["NM-000001"]]),
        SheetWrite(spec=ACTIONS, create=True, header=dict(enumerate(ACTIONS.columns, 1))),
    ])
    got = make().read(SHEETS)
    assert set(got) == {"Reports", "Actions"}
    assert text(got["Actions"]) == [ACTIONS.columns]


def test_header_cells_added_at_the_right_keep_other_columns(make):
    create(make, rows=[["NM-000001"]])
    width = len(REPORTS.columns)
    make().write([SheetWrite(spec=REPORTS, header={width + 1: "New column"},
                             cells={(2, width + 1): "x"})])
    rows = text(make().read([REPORTS])["Reports"])
    assert rows[0][-1] == "New column" and rows[1][-1] == "x" and rows[1][0] == "NM-000001"


def test_formula_like_text_reads_back_as_the_same_text(make):
    hostile = ['=HYPERLINK("http://x","click")', "+44 7700 900123", "-1", "@home"]
    create(make, rows=[["NM-1", h] for h in hostile])
    rows = text(make().read([REPORTS])["Reports"])
    assert [r[1] for r in rows[1:]] == hostile


def test_an_empty_write_changes_nothing(make):
    create(make, rows=[["NM-000001"]])
    before = make().read([REPORTS])
    make().write([SheetWrite(spec=REPORTS)])
    assert make().read([REPORTS]) == before


# -- dates -------------------------------------------------------------------------------------

# The system's date cells as the rows are built (transforms/tracker.py): wall-clock times as
# pandas gives them, one at midnight, a day alone, and none.
TIMES = [pd.Timestamp("2026-11-20 10:07"), pd.Timestamp("2026-11-21 00:00"),
         pd.Timestamp("2026-03-29 01:59"), None]


def test_a_date_written_reads_back_as_the_same_value(make):
    """What every backend gives back for a date compares equal with what was written, on
    a sheet just created and on one written again: the plan writes nothing more."""
    rows = [[f"NM-{i:06d}", 1, at, at] for i, at in enumerate(TIMES, 1)]
    create(make, rows=rows[:2])
    make().write([SheetWrite(spec=REPORTS, append=rows[2:])])
    create(make, DATA_QUALITY, [["NM-000001", *[None] * 7, date(2026, 11, 20),
                                 datetime(2026, 11, 20, 9, 30)]])
    read = make().read([REPORTS, DATA_QUALITY])
    got = [[cell_text(c) for c in row[2:4]] for row in read["Reports"][1:]]
    assert got == [[stored_text(at)] * 2 for at in TIMES]
    assert got[:2] == [["2026-11-20 10:07"] * 2, ["2026-11-21"] * 2]
    quality = read["Data quality"][1]
    assert [cell_text(c) for c in quality[8:10]] == ["2026-11-20", "2026-11-20 09:30"]

    desired = pd.DataFrame(rows, columns=["Report ID", "Version", "Submitted", "Occurred"]
                           ).set_index("Report ID", drop=False)
    write, added, restored = plan_sheet(read_sheet(REPORTS, read["Reports"]), desired, {})
    assert not write and not added and not restored
    # A changed date is written over the old one, and reads back as it was written.
    later = pd.Timestamp("2026-11-22 18:45")
    make().write([SheetWrite(spec=REPORTS, cells={(2, 3): later})])
    assert cell_text(make().read([REPORTS])["Reports"][1][2]) == "2026-11-22 18:45"


# -- deleting rows -----------------------------------------------------------------------------


def keys(make, title: str = "Reports") -> list[str]:
    return [r[0] for r in text(make().read([REPORTS]).get(title, []))[1:]]


def test_deleted_rows_go_last_and_the_rows_below_move_up(make):
    create(make, rows=[[f"NM-00000{i}", 1] for i in range(1, 6)])
    # Row numbers are those read: the cell of row 3 is NM-000002's, the rows appended go
    # after NM-000005, and rows 2 and 4 (NM-000001, NM-000003) are deleted last.
    make().write([SheetWrite(spec=REPORTS, cells={(3, 2): 2, (5, 2): 3},
                             append=[["NM-000006", 1]], delete_rows=[4, 2])])
    rows = text(make().read([REPORTS])["Reports"])
    assert rows[1:] == [["NM-000002", "2"], ["NM-000004", "3"], ["NM-000005", "1"],
                        ["NM-000006", "1"]]
    # The next write appends after the new last row, not after the old one.
    make().write([SheetWrite(spec=REPORTS, append=[["NM-000007"]], delete_rows=[3])])
    assert keys(make) == ["NM-000002", "NM-000005", "NM-000006", "NM-000007"]


def test_deleting_every_row_keeps_the_header_and_later_rows_follow_it(make):
    create(make, rows=[["NM-000001"], ["NM-000002"]])
    make().write([SheetWrite(spec=REPORTS, delete_rows=[1, 2, 3, 9])])  # 1, 9: never
    assert text(make().read([REPORTS])["Reports"]) == [REPORTS.columns]
    make().write([SheetWrite(spec=REPORTS, append=[["NM-000003"]])])
    assert keys(make) == ["NM-000003"]


def test_a_row_moves_to_a_new_archive_sheet_in_one_write(make):
    create(make, rows=[["NM-000001", 1], ["NM-000002", 1]])
    archive = REPORTS.archive(2025)
    tracker = make()
    tracker.read([REPORTS])
    tracker.write([SheetWrite(spec=REPORTS, delete_rows=[2]),
                   SheetWrite(spec=archive, create=True,
                              header=dict(enumerate(archive.columns, 1)),
                              append=[["NM-000001", 1]])])
    got = make().read([REPORTS])  # archives are read with their sheet, by their own title
    assert set(got) == {"Reports", "Reports 2025"}
    assert text(got["Reports"])[1:] == [["NM-000002", "1"]]
    assert text(got["Reports 2025"]) == [archive.columns, ["NM-000001", "1"]]
    assert make().read([ACTIONS]) == {}  # a sheet without archives reads no others
