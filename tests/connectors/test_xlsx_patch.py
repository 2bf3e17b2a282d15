"""Writing into a workbook's XML: what it reads back is what a model of the sheet says, in
files openpyxl wrote and in files laid out as Excel saves them (shared strings, spans,
sparse rows, styles); dates are date cells whose format is added to styles.xml once;
columns too narrow for what is written are widened; what it cannot do it declines, and
openpyxl writes."""

import re
import zipfile
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

import connectors.xlsx_tracker as xlsx_tracker
from connectors.base import Cell, SheetSpec, SheetWrite
from connectors.calamine_rows import openpyxl_row
from connectors.sheet_layout import MAX_WIDTH
from connectors.xlsx_patch import Declined, column_letter, column_number, patch_workbook
from connectors.xlsx_tracker import XlsxTracker
from domain.text import sheet_text

SPEC = SheetSpec(title="Reports", columns=["Report ID", "Version", "What happened"],
                 key_column="Report ID", manager_columns=["Notes"])


def values(tracker: XlsxTracker, spec: SheetSpec = SPEC) -> list[list[Cell]]:
    """The sheet's rows as the tracker reads them (calamine's cells), each cell made what
    openpyxl gives for it: the writes are compared by type, not as text alone."""
    return [openpyxl_row(r) for r in tracker.read([spec])[spec.title]]


def cells_of(rows: list[list[Cell]]) -> dict[tuple[int, int], Cell]:
    return {(r, c): v for r, row in enumerate(rows, start=1)
            for c, v in enumerate(row, start=1) if v is not None}


def as_read(value: Cell) -> Cell:
    """A value as the tracker's read gives it back (a date cell as openpyxl gives it: a
    datetime, at midnight for a day)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time())
    if isinstance(value, str):
        value = sheet_text(value)
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def apply(model: dict[tuple[int, int], Cell], write: SheetWrite) -> None:
    """What a write means, on a plain map of cells."""
    for col, title in write.header.items():
        model[(1, col)] = title
    for key, value in write.cells.items():
        model[key] = value
    for key in [k for k, v in model.items() if as_read(v) is None]:
        del model[key]
    start = max([r for r, _ in model] + [1]) + 1  # after the last row holding a value
    for i, line in enumerate(write.append):
        for col, value in enumerate(line, start=1):
            if as_read(value) is not None:
                model[(start + i, col)] = value


def no_openpyxl(monkeypatch: pytest.MonkeyPatch) -> None:
    def loaded(*args, **kwargs):
        raise AssertionError("the workbook was loaded with openpyxl")

    monkeypatch.setattr(xlsx_tracker, "load_workbook", loaded)


def test_column_letters_round_trip():
    for col in (1, 26, 27, 52, 702, 703, 16384):
        assert column_number(column_letter(col)) == col
    assert column_letter(28) == "AB"


TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["#N/A", "=1+1", "_x0041_", " lead", "trail ", "a & b <c> \"d\"", "line\r\nbreak",
     "\x07bell", "é ü 中文 🙂", "x" * 33000]))
MOMENTS = {"min_value": datetime(1950, 1, 1), "max_value": datetime(2100, 12, 31)}
DATE = st.one_of(st.datetimes(**MOMENTS).map(lambda d: d.replace(microsecond=0)),
                 st.dates(MOMENTS["min_value"].date(), MOMENTS["max_value"].date()))
VALUE = st.one_of(st.none(), TEXT, st.integers(-10**9, 10**9), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False, width=32), DATE)
WRITE = st.builds(
    lambda cells, append: SheetWrite(spec=SPEC, cells=cells, append=append),
    st.dictionaries(st.tuples(st.integers(2, 8), st.integers(1, 30)), VALUE, max_size=8),
    st.lists(st.lists(VALUE, max_size=5), max_size=3))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(WRITE, min_size=1, max_size=3))
def test_what_reads_back_is_what_the_writes_mean(tmp_path_factory, monkeypatch, writes):
    path = tmp_path_factory.mktemp("patch") / "tracker.xlsx"
    first = SheetWrite(spec=SPEC, create=True, header={1: "Report ID", 2: "Version"},
                       append=[["NM-1", 1, "kept"], ["NM-2", 2, datetime(2026, 11, 20, 10, 7)]])
    XlsxTracker(path).write([first])
    model: dict[tuple[int, int], Cell] = {}
    apply(model, first)
    with monkeypatch.context() as m:
        no_openpyxl(m)
        for write in writes:
            tracker = XlsxTracker(path)
            tracker.read([SPEC])
            tracker.write([write])
            apply(model, write)
            read = cells_of(values(XlsxTracker(path)))
            assert read == {k: as_read(v) for k, v in model.items()}
    ws = load_workbook(path)["Reports"]  # openpyxl still opens what was written
    last = max(r for r, _ in model)
    assert ws.max_row == last and ws.auto_filter.ref.endswith(str(last))
    for (row, col), value in model.items():  # a date shows as a date, a number as a number
        assert ws.cell(row, col).is_date == isinstance(value, date), (row, col, value)
    with zipfile.ZipFile(path) as z:
        styles = z.read("xl/styles.xml").decode()
    # The tracker's date formats were added once, whatever the number of date writes.
    assert styles.count('formatCode="yyyy-mm-dd hh:mm"') <= 1
    assert styles.count('formatCode="yyyy-mm-dd"') <= 1
    assert int(re.search(r'<cellXfs count="(\d+)"', styles).group(1)) <= 8


# -- a workbook laid out as Excel saves it --------------------------------------------------

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
EXCEL_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
        'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml'
        '.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.'
        'openxmlformats-officedocument.spreadsheetml.styles+xml"/><Override PartName="/xl/'
        'sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'spreadsheetml.sharedStrings+xml"/></Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<workbook xmlns="{MAIN}" xmlns:r="{RELS}"><sheets>'
        '<sheet name="Notes &amp; more" sheetId="2" r:id="rId2"/>'
        '<sheet name="Reports" sheetId="1" r:id="rId1"/></sheets><definedNames>'
        '<definedName name="_xlnm._FilterDatabase" localSheetId="1" hidden="1">'
        "Reports!$A$1:$C$5</definedName></definedNames></workbook>"),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{RELS}/worksheet" Target="worksheets/sheet2.xml"/>'
        f'<Relationship Id="rId3" Type="{RELS}/styles" Target="styles.xml"/>'
        f'<Relationship Id="rId4" Type="{RELS}/sharedStrings" Target="sharedStrings.xml"/>'
        "</Relationships>"),
    "xl/styles.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<styleSheet xmlns="{MAIN}"><fonts count="2"><font><sz val="11"/></font><font><b/>'
        '<sz val="11"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/>'
        '</fill><fill><patternFill patternType="gray125"/></fill></fills><borders count="1">'
        '<border/></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
        'borderId="0"/></cellStyleXfs><cellXfs count="2"><xf numFmtId="0" fontId="0" '
        'fillId="0" borderId="0" xfId="0"/><xf numFmtId="0" fontId="1" fillId="0" borderId="0"'
        ' xfId="0" applyFont="1"/></cellXfs></styleSheet>'),
    "xl/sharedStrings.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<sst xmlns="{MAIN}" count="6" uniqueCount="6"><si><t>Report ID</t></si>'
        "<si><t>Version</t></si><si><t>What happened</t></si><si><t>NM-1</t></si>"
        '<si><r><t xml:space="preserve">MAR not </t></r><r><rPr><b/></rPr><t>signed</t></r>'
        '<rPh sb="0" eb="1"><t>ふりがな</t></rPh></si><si><t>NM-4</t></si></sst>'),
    "xl/worksheets/sheet2.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<worksheet xmlns="{MAIN}"><sheetData/></worksheet>'),
    "xl/worksheets/sheet1.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<worksheet xmlns="{MAIN}" xmlns:r="{RELS}" '
        'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
        'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac" '
        'mc:Ignorable="x14ac"><dimension ref="A1:C5"/><sheetViews><sheetView workbookViewId="0">'
        '</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15" x14ac:dyDescent="0.25"/>'
        '<sheetData><row r="1" spans="1:3" x14ac:dyDescent="0.25"><c r="A1" s="1" t="s"><v>0</v>'
        '</c><c r="B1" s="1" t="s"><v>1</v></c><c r="C1" s="1" t="s"><v>2</v></c></row>'
        '<row r="2" spans="1:3" x14ac:dyDescent="0.25"><c r="A2" t="s"><v>3</v></c>'
        '<c r="B2"><v>1</v></c><c r="C2" s="1" t="s"><v>4</v></c></row>'
        '<row r="4" spans="1:3" x14ac:dyDescent="0.25"><c r="A4" t="s"><v>5</v></c>'
        '<c r="B4"><v>2.5</v></c></row>'
        '<row r="5" spans="1:3" ht="30" customHeight="1" x14ac:dyDescent="0.25"/>'
        '</sheetData><autoFilter ref="A1:C5"/><pageMargins left="0.7" right="0.7" top="0.75" '
        'bottom="0.75" header="0.3" footer="0.3"/></worksheet>'),
}


@pytest.fixture
def excel_file(tmp_path: Path) -> Path:
    path = tmp_path / "tracker.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, xml in EXCEL_PARTS.items():
            z.writestr(name, xml)
    return path


def test_a_workbook_excel_saved_is_written_in_place(excel_file, monkeypatch):
    tracker = XlsxTracker(excel_file)
    before = values(tracker)
    assert before[1] == ["NM-1", 1, "MAR not signed"] and before[2] == [None] * 3

    no_openpyxl(monkeypatch)
    # Equal values (a shared string, a rich one, a number) change nothing: no save.
    stamp = excel_file.stat().st_mtime_ns
    tracker.write([SheetWrite(spec=SPEC, cells={(2, 1): "NM-1", (2, 3): "MAR not signed",
                                                (4, 2): 2.5, (3, 3): None})])
    assert excel_file.stat().st_mtime_ns == stamp

    tracker.write([SheetWrite(spec=SPEC, header={4: "Notes"},
                              cells={(2, 3): "MAR unsigned & late", (3, 1): "NM-3"},
                              append=[["NM-5", 3]])])
    rows = values(XlsxTracker(excel_file))
    assert rows == [["Report ID", "Version", "What happened", "Notes"],
                    ["NM-1", 1, "MAR unsigned & late", None],
                    ["NM-3", None, None, None],
                    ["NM-4", 2.5, None, None],
                    ["NM-5", 3, None, None]]  # after the last row with a cell, as openpyxl
    with zipfile.ZipFile(excel_file) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
        assert z.read("xl/sharedStrings.xml").decode() == EXCEL_PARTS["xl/sharedStrings.xml"]
        workbook = z.read("xl/workbook.xml").decode()
    assert '<c r="C2" s="1" t="inlineStr">' in sheet  # the cell keeps its style
    assert '<c r="D1" s="1" t="inlineStr">' in sheet  # a new header cell takes the header's
    assert 'ht="30"' in sheet and '<autoFilter ref="A1:D5"/>' in sheet
    assert "Reports!" not in workbook and "'Reports'!$A$1:$D$5" in workbook
    monkeypatch.undo()
    ws = load_workbook(excel_file)["Reports"]
    assert ws["C2"].value == "MAR unsigned & late" and ws["C2"].font.b


def test_what_it_cannot_write_it_declines_and_openpyxl_writes(excel_file, tmp_path):
    for write in (SheetWrite(spec=SPEC, delete_rows=[4]),
                  SheetWrite(spec=SheetSpec(title="Patterns", columns=["Pattern ID"],
                                            key_column="Pattern ID"), create=True)):
        with pytest.raises(Declined):
            patch_workbook(excel_file, [write])
    with pytest.raises(Declined):
        patch_workbook(tmp_path / "missing.xlsx", [SheetWrite(spec=SPEC, cells={(2, 2): 1})])
    # A workbook counting days from 1904: its dates are left to openpyxl, which knows.
    when = datetime(2026, 11, 23, 9, 0)
    with zipfile.ZipFile(excel_file) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(
        b"<sheets>", b'<workbookPr date1904="1"/><sheets>')
    with zipfile.ZipFile(excel_file, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    with pytest.raises(Declined):
        patch_workbook(excel_file, [SheetWrite(spec=SPEC, cells={(2, 2): when})])
    tracker = XlsxTracker(excel_file)
    tracker.read([SPEC])
    tracker.write([SheetWrite(spec=SPEC, cells={(2, 2): when})])
    assert load_workbook(excel_file)["Reports"]["B2"].value == when


# -- dates and widths on the fast path ----------------------------------------------------


def test_a_date_is_written_in_place_as_a_date_cell(excel_file, monkeypatch):
    """In a file Excel saved (no date format in its styles): the format and a cell format
    using it are added once, a cell keeps its font, and the readers give the date."""
    tracker = XlsxTracker(excel_file)
    tracker.read([SPEC])
    no_openpyxl(monkeypatch)
    when = datetime(2026, 11, 23, 9, 5)
    tracker.write([SheetWrite(spec=SPEC, cells={(2, 2): when, (2, 3): when},
                              append=[["NM-6", date(2026, 11, 24), when]])])
    tracker = XlsxTracker(excel_file)
    rows = values(tracker)
    assert rows[1][1:3] == [when, when]
    assert rows[-1] == ["NM-6", datetime(2026, 11, 24), when]
    with zipfile.ZipFile(excel_file) as z:
        styles = z.read("xl/styles.xml").decode()
    assert styles.count('formatCode="yyyy-mm-dd hh:mm"') == 1
    assert styles.count('formatCode="yyyy-mm-dd"') == 1
    # Two more dates: nothing more in styles.xml; the same values: no save at all.
    tracker.write([SheetWrite(spec=SPEC, cells={(3, 2): when}, append=[["NM-7", when]])])
    with zipfile.ZipFile(excel_file) as z:
        assert z.read("xl/styles.xml").decode() == styles
    stamp = excel_file.stat().st_mtime_ns
    tracker = XlsxTracker(excel_file)
    tracker.read([SPEC])
    tracker.write([SheetWrite(spec=SPEC, cells={(2, 2): pd.Timestamp(when), (3, 2): when})])
    assert excel_file.stat().st_mtime_ns == stamp
    monkeypatch.undo()
    ws = load_workbook(excel_file)["Reports"]
    assert ws["B2"].number_format == "yyyy-mm-dd hh:mm" and ws["B2"].value == when
    assert ws["C2"].font.b and ws["C2"].is_date  # its bold kept, with the date format
    assert ws["B5"].number_format == "yyyy-mm-dd" and ws["B5"].value == datetime(2026, 11, 24)


def test_columns_too_narrow_for_what_is_written_are_widened(tmp_path, monkeypatch):
    spec = SheetSpec(title="Reports", columns=["Report ID", "Service", "What happened"],
                     key_column="Report ID")
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=spec, create=True,
                                        header=dict(enumerate(spec.columns, 1)),
                                        append=[["NM-1", "Oak House", "MAR unsigned"]])])
    ws = load_workbook(path)["Reports"]
    before = {c: ws.column_dimensions[c].width for c in "ABC"}
    assert ws["C2"].alignment.wrap_text and not ws["B2"].alignment.wrap_text
    stamp = path.stat().st_mtime_ns

    no_openpyxl(monkeypatch)
    tracker = XlsxTracker(path)
    tracker.read([spec])
    tracker.write([SheetWrite(spec=spec, append=[["NM-2", "Oak House", "Wet floor"]])])
    assert path.stat().st_mtime_ns != stamp
    tracker = XlsxTracker(path)
    tracker.read([spec])
    service = "Riverside Supported Living Services"
    tracker.write([SheetWrite(spec=spec, append=[["NM-3", service, "x " * 200]])])
    monkeypatch.undo()
    ws = load_workbook(path)["Reports"]
    widths = {c: ws.column_dimensions[c].width for c in "ABC"}
    assert widths["A"] == before["A"]  # wide enough already: never narrowed nor touched
    assert widths["B"] == len(service) + 2 > before["B"]
    assert widths["C"] == MAX_WIDTH  # capped; the text wraps
    assert ws["C4"].alignment.wrap_text and ws["C3"].alignment.wrap_text  # the column's style


def test_a_run_of_columns_excel_saved_with_one_width_is_split_to_widen_one(excel_file,
                                                                          monkeypatch):
    with zipfile.ZipFile(excel_file) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"<sheetData>", b'<cols><col min="1" max="3" width="12.7109375" customWidth="1"/>'
                        b'</cols><sheetData>')
    with zipfile.ZipFile(excel_file, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    tracker = XlsxTracker(excel_file)
    tracker.read([SPEC])
    no_openpyxl(monkeypatch)
    tracker.write([SheetWrite(spec=SPEC, cells={(3, 2): "a value wider than the column"})])
    with zipfile.ZipFile(excel_file) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert re.search(r'<cols><col min="1" max="1" width="12.7109375" customWidth="1"/>'
                     r'<col min="2" max="2" width="31" customWidth="1"/>'
                     r'<col min="3" max="3" width="12.7109375" customWidth="1"/></cols>'
                     r"<sheetData>", sheet)
    monkeypatch.undo()
    ws = load_workbook(excel_file)["Reports"]
    assert ws.column_dimensions["B"].width == 31
