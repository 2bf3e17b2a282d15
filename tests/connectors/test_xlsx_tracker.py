import zipfile

import pytest
from openpyxl import load_workbook

from connectors.base import SheetWrite
from connectors.errors import TrackerError
from connectors.xlsx_tracker import XlsxTracker
from transforms.tracker import REPORTS


def test_created_sheet_has_frozen_header_filter_and_dropdowns(tmp_path):
    path = tmp_path / "tracker.xlsx"
    tracker = XlsxTracker(path)
    assert tracker.read([REPORTS]) == {}
    header = dict(enumerate(REPORTS.columns, start=1))
    tracker.write([SheetWrite(spec=REPORTS, create=True, header=header,
                              append=[["NM-000001", 1], ["NM-000002", 2]])])
    ws = load_workbook(path)["Reports"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}3"
    assert [c.value for c in ws[1]][:2] == ["Report ID", "Version"]
    formulas = [dv.formula1 for dv in ws.data_validations.dataValidation]
    assert any("Human error" in f for f in formulas)
    rows = XlsxTracker(path).read([REPORTS])["Reports"]
    assert rows[1][:2] == ["NM-000001", 1] and len(rows) == 3


def test_text_that_looks_like_a_formula_stays_text(tmp_path):
    path = tmp_path / "tracker.xlsx"
    hostile = ["=HYPERLINK(\"http://x\",\"click\")", "+1+1", "-2", "@SUM(A1)"]
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "What happened"},
                                        append=[["NM-1", v] for v in hostile])])
    with zipfile.ZipFile(path) as z:
        sheet_xml = z.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml  # no formula cell anywhere
    ws = load_workbook(path)["Reports"]
    assert [ws.cell(r, 2).value for r in range(2, 6)] == hostile
    assert all(ws.cell(r, 2).data_type == "s" for r in range(2, 6))


def test_cells_update_in_place_and_manager_columns_survive(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "Version", 3: "Mine"},
                                        append=[["NM-1", 1, None]])])
    wb = load_workbook(path)
    wb["Reports"]["C2"] = "manager note"
    wb.save(path)
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])
    ws = load_workbook(path)["Reports"]
    assert [c.value for c in ws[2]] == ["NM-1", 2, "manager note"]


def test_nothing_to_write_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True, header={1: "Report ID"})])
    before = path.stat().st_mtime_ns
    XlsxTracker(path).write([SheetWrite(spec=REPORTS)])
    assert path.stat().st_mtime_ns == before


def test_damaged_or_read_only_tracker_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.xlsx"
    bad.write_text("not a workbook")
    with pytest.raises(TrackerError, match="not a readable Excel workbook"):
        XlsxTracker(bad).read([REPORTS])
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True, header={1: "Report ID"})])
    tracker = XlsxTracker(path)
    tracker.read([REPORTS])
    path.unlink()  # something else takes the tracker's place while the run is working
    path.mkdir()
    (path / "x").write_text("x")
    with pytest.raises(TrackerError, match="cannot write the tracker"):
        tracker.write([SheetWrite(spec=REPORTS, cells={(1, 2): "x"})])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tracker-")]
