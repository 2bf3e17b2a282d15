"""The tracker as a manager opens it: every column wide enough for what it holds, long text
capped and wrapped, dates as spreadsheet dates; and running again on the same inputs still
saves nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from connectors.sheet_layout import MAX_WIDTH
from jobs.cli import main
from transforms.tracker import SHEETS

# The system's date columns, by sheet (managers' own date columns are theirs to format).
DATES = {"Reports": {"Submitted", "Occurred", "Triage due"},
         "Patterns": {"First", "Last"},
         "Data quality": {"Information requested", "Completed"}}
# Shown as dates with a time, or as days.
FORMATS = {"yyyy-mm-dd hh:mm": 16, "yyyy-mm-dd": 10}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as m:
        m.chdir(work)
        assert main(["demo", "--workdir", str(work / "demo")]) == 0
    return work / "demo" / "tracker.xlsx"


def shown(cell) -> int:
    """The characters a cell shows on its longest line (a date as its format shows it)."""
    if cell.value is None:
        return 0
    if isinstance(cell.value, datetime):
        return FORMATS[cell.number_format]
    return max(len(line) for line in str(cell.value).split("\n"))


def columns(ws: Worksheet):
    """Each column: its title, its width, whether it wraps, its value cells."""
    for col in range(1, ws.max_column + 1):
        dim = ws.column_dimensions[get_column_letter(col)]
        cells = [ws.cell(row, col) for row in range(2, ws.max_row + 1)]
        yield ws.cell(1, col).value, dim.width, dim.alignment.wrap_text, [
            c for c in cells if c.value is not None]


def test_every_column_is_as_wide_as_what_it_holds_and_long_text_wraps(demo):
    book = load_workbook(demo)
    for spec in SHEETS:
        ws = book[spec.title]
        assert [c.value for c in ws[1]] == spec.columns
        for title, width, wrap, cells in columns(ws):
            where = f"{spec.title}: {title}"
            lengths = [shown(c) for c in cells]
            assert len(title) + 2 <= width <= MAX_WIDTH, where  # its header reads whole
            if not lengths:
                continue
            if max(lengths) + 2 <= MAX_WIDTH:
                # Every value shows whole, with a margin: the typical one and the widest.
                assert width >= max(lengths) + 2, where
            else:
                # Capped, and wrapped so that the rest shows in the row.
                assert width == MAX_WIDTH and wrap, where
                assert all(c.alignment.wrap_text for c in cells), where
    # Free text is wrapped even when the demo's is short: what a manager types may not be.
    assert {title for title, _, wrap, _ in columns(book["Actions"]) if wrap} >= {
        "Action", "Outcome", "Tracking"}
    assert {title for title, _, wrap, _ in columns(book["Reports"]) if wrap} >= {
        "What happened", "Immediate action", "Outcome for reporter"}
    assert not any(wrap for title, _, wrap, _ in columns(book["Reports"])
                   if title in DATES["Reports"] | {"Service", "Report ID"})


def test_the_system_date_columns_hold_spreadsheet_dates(demo):
    book = load_workbook(demo)
    seen = set()
    for title, dated in DATES.items():
        for header, width, _, cells in columns(book[title]):
            if header not in dated:
                assert not any(c.is_date for c in cells), header  # only dates are dates
                continue
            for cell in cells:
                assert isinstance(cell.value, datetime), (header, cell.value)
                assert cell.is_date and cell.number_format in FORMATS, header
                seen.add(header)
            if cells:
                assert width >= 18, header  # "2026-11-20 10:07" and its margin
    # The demo fills every one of them but "Completed" (no report was completed later).
    assert seen == set().union(*DATES.values()) - {"Completed"}
    submitted = [c for h, _, _, cells in columns(book["Reports"]) if h == "Submitted"
                 for c in cells]
    assert all(c.number_format == "yyyy-mm-dd hh:mm" for c in submitted)
    requested = [c for h, _, _, cells in columns(book["Data quality"])
                 if h == "Information requested" for c in cells]
    assert requested and all(c.number_format == "yyyy-mm-dd" for c in requested)


def test_running_the_demo_again_saves_nothing(demo, monkeypatch):
    before = demo.read_bytes()
    monkeypatch.chdir(demo.parent.parent)
    assert main(["demo", "--workdir", str(demo.parent)]) == 0
    assert demo.read_bytes() == before
