"""What the Excel tracker in Microsoft 365 does beyond the tracker contract: text kept as
text, dates as dates, columns sized to their content, a locked workbook, an edit session
that ends, a deletion whose answer was lost."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from config.settings import Workbook
from connectors.base import SheetWrite
from connectors.errors import ApiError, TrackerError
from connectors.excel_graph import ExcelGraphTracker
from connectors.sheet_layout import MAX_WIDTH, points
from connectors.sheet_writes import a1, column_letter
from tests.fakes.microsoft import MicrosoftFakeServer
from tests.fakes.microsoft_deployment import HOST, SITE, graph_clients, tenant
from transforms.tracker import ACTIONS, REPORTS, SHEETS

WHERE = Workbook(site=HOST + SITE, path="Tracker.xlsx")


@pytest.fixture
def book(tmp_path):
    with MicrosoftFakeServer() as server:
        site = tenant(server)
        item = server.graph.add_workbook(server.graph.drive_of_site(site), "Tracker.xlsx",
                                         {"Sheet1": []})
        clients = graph_clients(server, tmp_path, attempts=3)
        yield server, item, lambda: ExcelGraphTracker(WHERE, clients)
        server.assert_no_violations()


def create(make, rows):
    make().write([SheetWrite(spec=REPORTS, create=True, header=dict(enumerate(REPORTS.columns,
                                                                           1)),
                             append=rows)])


def test_text_that_excel_would_read_as_something_else_stays_text(book):
    server, item, make = book
    typed = ["0012", "1/2", "TRUE", "=1+1", "+44 7700 900123", "'quoted", "3.10", "12%"]
    create(make, [[f"NM-{i:06d}", 1, text] for i, text in enumerate(typed, 1)])
    rows = make().read([REPORTS])["Reports"]
    assert [r[2] for r in rows[1:]] == typed
    assert [r[2] for r in server.graph.cells(item, "Reports")[1:]] == typed


def test_the_header_is_bold_and_the_manager_columns_are_tinted(book):
    server, item, make = book
    create(make, [["NM-000001", 1]])
    formats = server.graph.formats(item, "Reports")
    assert formats.bold == {a1(1, c) for c in range(1, len(REPORTS.columns) + 1)}
    assert formats.fills == {a1(1, REPORTS.columns.index(title) + 1): "#FFF2CC"
                             for title in REPORTS.manager_columns}


def test_dates_are_serial_days_with_a_date_format(book):
    server, item, make = book
    at = pd.Timestamp("2026-11-20 10:07")
    create(make, [["NM-000001", 1, at, pd.Timestamp("2026-11-21")]])
    make().write([SheetWrite(spec=REPORTS, cells={(2, 4): date(2026, 11, 22)},
                             append=[["NM-000002", 1, at]])])
    stored = server.graph.cells(item, "Reports")
    assert stored[1][2] == pytest.approx(46346 + 607 / 1440) and stored[1][3] == 46348
    formats = server.graph.formats(item, "Reports").number_formats
    assert formats == {"C2": "yyyy-mm-dd hh:mm", "D2": "yyyy-mm-dd", "C3": "yyyy-mm-dd hh:mm"}
    assert server.graph.text(item, "Reports", "C2") == "2026-11-20 10:07"
    rows = make().read([REPORTS])["Reports"]
    assert rows[1][2:4] == [at.to_pydatetime(), pd.Timestamp("2026-11-22").to_pydatetime()]


def test_a_new_sheet_has_columns_sized_to_its_content_and_long_text_wrapped(book):
    server, item, make = book
    service = "Riverside Supported Living"
    row = dict.fromkeys(REPORTS.columns)
    row.update({"Report ID": "NM-000001", "Version": 1,
                "Submitted": pd.Timestamp("2026-11-20 10:07"), "Service": service,
                "What happened": "The evening dose was not given after handover. " * 5})
    create(make, [list(row.values())])
    formats = server.graph.formats(item, "Reports")

    def column(title: str) -> str:
        return column_letter(REPORTS.columns.index(title) + 1)

    widths = formats.column_widths
    assert set(widths) == {column(t) for t in REPORTS.columns}
    assert widths[column("Service")] == points(len(service) + 2)
    assert widths[column("Submitted")] == points(len("2026-11-20 10:07") + 2)
    assert widths[column("What happened")] == points(MAX_WIDTH)
    assert widths[column("Just-culture classification")] == points(
        len("Just-culture classification") + 4)  # the header and its filter button
    assert f"{column('What happened')}2" in formats.wrap_text
    assert not any(cell.startswith(column("Service")) for cell in formats.wrap_text)


def test_the_version_moves_with_each_edit_and_only_then(book):
    server, item, make = book
    create(make, [["NM-000001", 1]])
    tracker = make()
    first = tracker.version()
    assert tracker.version() == first
    server.graph.set_cell(item, "Reports", 2, 2, 2)
    assert tracker.version() != first


def test_a_workbook_locked_for_a_moment_is_written_after_a_retry(book):
    server, item, make = book
    create(make, [["NM-000001", 1]])
    server.faults.fail_next(2, 423, only="graph.workbook.range.update")
    make().write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])
    assert server.graph.cells(item, "Reports")[1][:2] == ["NM-000001", 2]


def test_a_workbook_that_stays_locked_ends_in_one_line(book):
    server, item, make = book
    create(make, [["NM-000001", 1]])
    server.graph.lock(item, 423)
    with pytest.raises(ApiError) as err:
        make().write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])
    assert "locked for editing (open in desktop Excel?): close it there" in str(err.value)
    assert "\n" not in str(err.value)
    server.graph.unlock(item)
    assert server.graph.cells(item, "Reports")[1][:2] == ["NM-000001", 1]


def test_an_edit_session_that_ends_mid_run_stops_the_write_in_one_line(book):
    server, _, make = book
    create(make, [["NM-000001", 1]])
    tracker = make()
    tracker.read(SHEETS)
    server.graph.expire_sessions()
    with pytest.raises(TrackerError, match="edit session ended before the run had written "
                                           "everything"):
        tracker.write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])


def test_a_deletion_whose_answer_was_lost_deletes_nothing_more(book):
    server, item, make = book
    create(make, [[f"NM-{i:06d}", i] for i in range(1, 6)])
    server.faults.lose_next(1, only="graph.workbook.range.delete")
    make().write([SheetWrite(spec=REPORTS, delete_rows=[3])])
    assert [r[0] for r in server.graph.cells(item, "Reports")[1:]] == [
        "NM-000001", "NM-000003", "NM-000004", "NM-000005"]


def test_a_sheet_added_twice_because_its_answer_was_lost_is_added_once(book):
    server, item, make = book
    server.faults.lose_next(1, only="graph.batch")
    make().write([SheetWrite(spec=ACTIONS, create=True,
                             header=dict(enumerate(ACTIONS.columns, 1)))])
    assert [r[0] for r in server.graph.cells(item, "Actions")] == ["Action ID"]
