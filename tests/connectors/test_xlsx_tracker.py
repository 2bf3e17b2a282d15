import os
import stat
import tempfile
import time
import zipfile
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook

from connectors.base import SheetWrite
from connectors.errors import TrackerError
from connectors.xlsx_tracker import XlsxTracker
from tests.fakes.patterns import long_pattern_rows
from transforms.tracker import PATTERNS, REPORTS, cell_text, plan_sheet, read_sheet


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


# -- hostile text ------------------------------------------------------------------------------

HOSTILE = {"What happened": "left\x00right", "Immediate action": "tab\x0bbed\x1fend",
           "Contributing factors": "x" * 100_000, "Service": "\u202eשלום עולם",
           "Setting": "😀 ward", "Category": '=HYPERLINK("http://x","y")',
           "Reporter": "line\r\nbreak"}
SAFE = {"What happened": "left\ufffdright", "Immediate action": "tab\ufffdbed\ufffdend",
        "Service": "\u202eשלום עולם", "Setting": "😀 ward",
        "Category": '=HYPERLINK("http://x","y")', "Reporter": "line\nbreak"}
CUT_NOTE = " … [cut: 100,000 characters; the full text is in the store]"


def _plan(tracker: XlsxTracker, desired: pd.DataFrame) -> SheetWrite:
    state = read_sheet(REPORTS, tracker.read([REPORTS]).get(REPORTS.title))
    write, _, _ = plan_sheet(state, desired, {})
    return write


def _row(path) -> dict:
    ws = load_workbook(path)["Reports"]
    return {ws.cell(1, c).value: ws.cell(2, c) for c in range(1, ws.max_column + 1)}


def test_hostile_text_is_saved_safe_and_a_second_run_writes_nothing(tmp_path):
    path = tmp_path / "tracker.xlsx"
    desired = pd.DataFrame([{"Report ID": "NM-000001", "Version": 1, **HOSTILE}]).set_index(
        "Report ID", drop=False)
    XlsxTracker(path).write([_plan(XlsxTracker(path), desired)])
    cells = _row(path)
    assert {k: cells[k].value for k in SAFE} == SAFE
    cut = cells["Contributing factors"].value
    assert len(cut) == 32_767 and cut == "x" * (32_767 - len(CUT_NOTE)) + CUT_NOTE
    assert cells["Category"].data_type == "s"  # still text, never a formula
    with zipfile.ZipFile(path) as z:
        assert "<f>" not in z.read("xl/worksheets/sheet1.xml").decode()
    before = path.stat().st_mtime_ns
    second = _plan(XlsxTracker(path), desired)
    assert not second  # no cell differs from what the sheet holds
    XlsxTracker(path).write([second])
    assert path.stat().st_mtime_ns == before


def test_the_tracker_itself_makes_any_text_safe(tmp_path):
    """Defence in depth: a write that did not come through the planning still saves."""
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "What happened"},
                                        append=[["NM-1", "a\x00b\ud800"]])])
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, cells={(2, 3): "\x1f" + "x" * 99_999})])
    ws = load_workbook(path)["Reports"]
    assert ws["B2"].value == "a\ufffdb\ufffd"
    assert ws["C2"].value.startswith("\ufffdx") and ws["C2"].value.endswith(CUT_NOTE)
    assert len(ws["C2"].value) == 32_767


def test_errors_never_quote_cell_text(tmp_path):
    class Odd:  # a value openpyxl cannot store; its repr would be in openpyxl's message
        def __repr__(self) -> str:
            return "private words from a report"

    path = tmp_path / "tracker.xlsx"
    with pytest.raises(TrackerError) as err:
        XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True, header={1: "Report ID"},
                                            append=[["NM-1", Odd()]])])
    assert "private" not in str(err.value) and "B2" in str(err.value)
    assert not path.exists()


def test_a_workbook_whose_xml_does_not_parse_is_a_clear_error(tmp_path):
    path = tmp_path / "tracker.xlsx"
    wb = Workbook()
    wb.active["A1"] = "\ufffe"  # openpyxl writes it, but it is not an XML 1.0 character
    wb.save(path)
    tracker = XlsxTracker(path)
    assert tracker.read([REPORTS]) == {}  # calamine reads it; only a write needs openpyxl
    with pytest.raises(TrackerError, match="not a readable Excel workbook"):
        tracker.write([HEADER_ONLY])


# -- file access and temporary files ------------------------------------------------------------

HEADER_ONLY = SheetWrite(spec=REPORTS, create=True, header={1: "Report ID"})
AN_HOUR_AND_MORE = 3700


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask: what SQLite, openpyxl and open() make 0644
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _one_cell(path, value: str) -> None:
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, cells={(2, 1): value})])


def test_a_new_tracker_is_owner_only(tmp_path, umask_022):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([HEADER_ONLY])
    assert _mode(path) == 0o600


def test_a_read_only_tracker_stays_read_only_after_a_save(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([HEADER_ONLY])
    path.chmod(0o444)
    _one_cell(path, "NM-1")
    assert _mode(path) == 0o444
    assert load_workbook(path)["Reports"]["A2"].value == "NM-1"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another owner and group needs root")
def test_a_group_shared_tracker_keeps_its_mode_owner_and_group(tmp_path, umask_022):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([HEADER_ONLY])
    os.chown(path, 4343, 4242)  # say, a manager's account and the care-managers group
    path.chmod(0o660)
    _one_cell(path, "NM-1")
    after = os.stat(path)
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == (0o660, 4343, 4242)
    assert load_workbook(path)["Reports"]["A2"].value == "NM-1"


def _aged(path, seconds: float = AN_HOUR_AND_MORE):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_a_killed_runs_temporary_files_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([HEADER_ONLY])
    # What a SIGKILL during a save leaves behind: tempfile's own names, one empty, one not.
    killed = []
    for content in (b"", b"PK\x03\x04 half a workbook"):
        fd, name = tempfile.mkstemp(prefix=".tracker-", suffix=".xlsx", dir=tmp_path)
        os.write(fd, content)
        os.close(fd)
        killed.append(_aged(name))
    by_hand = tmp_path / ".tracker-k1lled_9.xlsx"
    by_hand.write_bytes(b"")
    _aged(by_hand)
    in_progress = tmp_path / ".tracker-saving12.xlsx"  # another deployment, saving now
    in_progress.write_bytes(b"")
    # Files a person saved, or that only look alike: all kept, however old.
    kept = [tmp_path / n for n in (
        "tracker-abcdefgh.xlsx", ".tracker-notes.xlsx", ".tracker-ABCDEFGH.xlsx",
        ".tracker-abcdefghi.xlsx", ".tracker-abcdefgh.xlsx.bak", ".tracker-abcdefgh.xls",
        "~$tracker.xlsx", "copy of tracker.xlsx")]
    for p in kept:
        p.write_bytes(b"mine")
        _aged(p)
    folder = tmp_path / ".tracker-folder12.xlsx"
    folder.mkdir()
    _aged(folder)
    link = tmp_path / ".tracker-link1234.xlsx"
    link.symlink_to(tmp_path / "tracker-abcdefgh.xlsx")
    _aged(link)

    _one_cell(path, "NM-1")

    assert not any(Path(p).exists() for p in [*killed, by_hand])
    assert in_progress.exists() and folder.is_dir() and link.is_symlink()
    assert all(p.read_bytes() == b"mine" for p in kept)
    assert load_workbook(path)["Reports"]["A2"].value == "NM-1"


def test_a_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([HEADER_ONLY])
    tracker = XlsxTracker(path)
    tracker.read([REPORTS])

    def refuse(src, dst):
        raise IsADirectoryError(21, "Is a directory")

    # The rename fails after the workbook was written to the temporary file.
    monkeypatch.setattr("connectors.xlsx_tracker.os.replace", refuse)
    with pytest.raises(TrackerError, match="cannot write the tracker"):
        tracker.write([SheetWrite(spec=REPORTS, cells={(2, 1): "NM-1"})])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracker.xlsx"]


# -- reading with calamine, as openpyxl reads --------------------------------------------------


@pytest.mark.parametrize("epoch", [datetime(1899, 12, 30), datetime(1904, 1, 1)])
def test_every_value_reads_as_the_text_of_what_openpyxl_reads(tmp_path, epoch):
    path = tmp_path / "tracker.xlsx"
    wb = Workbook()
    wb.epoch = epoch
    ws = wb.active
    ws.title = "Reports"
    values = [
        1, -3, 0, 2.5, 1e-05, 0.1 + 0.2, 10**14, 1e20, True, False, "text", " spaced ",
        "line\nbreak", "😀 ward", "0001", "TRUE", datetime(2026, 11, 20),
        datetime(2026, 11, 20, 10, 30), datetime(2026, 3, 29, 1, 30, 15),
        date(2026, 11, 20), dt_time(10, 30), timedelta(hours=30),
    ]
    for col, value in enumerate(values, start=2):  # from B3: rows and columns count from A1
        ws.cell(3, col, value)
        ws.cell(5, col, value)  # and a gap of one empty row
    for col, fmt in enumerate(["yyyy-mm-dd", "dd/mm/yyyy hh:mm", "hh:mm", "[h]:mm:ss", "0%",
                               "#,##0.00", "@", 'd" days"'], start=2):
        cell = ws.cell(7, col, 45000.25 if col % 2 else 45000)
        cell.number_format = fmt
    wb.save(path)
    expected = [[cell_text(v) for v in r]
                for r in load_workbook(path)["Reports"].iter_rows(values_only=True)]
    assert [[cell_text(v) for v in r] for r in XlsxTracker(path).read([REPORTS])["Reports"]
            ] == expected


def test_reading_never_loads_the_workbook_with_openpyxl(tmp_path, monkeypatch):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header=dict(enumerate(REPORTS.columns, start=1)),
                                        append=[["NM-000001", 1]])])

    def forbidden(*args, **kwargs):
        raise AssertionError("openpyxl loaded the workbook")

    monkeypatch.setattr("connectors.xlsx_tracker.load_workbook", forbidden)
    tracker = XlsxTracker(path)
    assert tracker.read([REPORTS])["Reports"][1][:2] == ["NM-000001", 1]
    tracker.write([SheetWrite(spec=REPORTS)])  # nothing to write: nothing loaded


def test_text_a_spreadsheet_could_take_for_something_else_reads_back_as_written(tmp_path):
    """openpyxl stores "#N/A" as an error (read back empty) and writes "_x0041_" as it is,
    which Excel and calamine read as "A": each would differ from itself on every run."""
    path = tmp_path / "tracker.xlsx"
    texts = ["#N/A", "#DIV/0!", "=1+1", "_x0041_", "a_x005F_b_x000D_", "_xD800_", "1e5",
             "_x0041_" * 4000]  # escaped, longer than a cell holds; as read, not
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "What happened"},
                                        append=[[f"NM-{i}", t] for i, t in enumerate(texts)])])
    rows = XlsxTracker(path).read([REPORTS])["Reports"]
    assert [r[1] for r in rows[1:]] == texts
    ws = load_workbook(path)["Reports"]
    assert {ws.cell(r, 2).data_type for r in range(2, len(texts) + 2)} == {"s"}


def test_a_write_that_changes_no_value_saves_nothing(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "Version", 3: "Service"},
                                        append=[["NM-1", 1, "#N/A"]])])
    before = (path.stat().st_mtime_ns, path.read_bytes())
    tracker = XlsxTracker(path)
    tracker.read([REPORTS])
    tracker.write([SheetWrite(spec=REPORTS, header={1: "Report ID"},
                              cells={(2, 2): 1, (2, 3): "#N/A", (2, 4): None})])
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    tracker.write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])
    assert load_workbook(path)["Reports"]["B2"].value == 2


def test_a_tracker_saved_by_someone_after_the_read_is_not_overwritten(tmp_path):
    path = tmp_path / "tracker.xlsx"
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True,
                                        header={1: "Report ID", 2: "Version", 3: "Mine"},
                                        append=[["NM-1", 1], ["NM-2", 1]])])
    tracker = XlsxTracker(path)
    tracker.read([REPORTS])
    wb = load_workbook(path)  # a manager sorts the rows and saves while the run works
    ws = wb["Reports"]
    ws["A2"], ws["A3"], ws["C2"] = "NM-2", "NM-1", "sorted"
    wb.save(path)
    with pytest.raises(TrackerError, match="changed after this run read it"):
        tracker.write([SheetWrite(spec=REPORTS, cells={(2, 2): 2})])  # planned for NM-1
    ws = load_workbook(path)["Reports"]
    assert [[c.value for c in r] for r in ws.iter_rows(min_row=2)] == [
        ["NM-2", 1, "sorted"], ["NM-1", 1, None]]


def test_a_pattern_past_the_cell_limit_is_written_once(tmp_path):
    """Its "Report IDs" run past Excel's 32,767 characters: cut with a note, read back as
    cut, and never planned again."""
    path = tmp_path / "tracker.xlsx"
    desired = long_pattern_rows()
    assert len(desired.iloc[0]["Report IDs"]) > 32_767

    def plan() -> SheetWrite:
        state = read_sheet(PATTERNS, XlsxTracker(path).read([PATTERNS]).get(PATTERNS.title))
        return plan_sheet(state, desired, {})[0]

    XlsxTracker(path).write([plan()])
    ids = load_workbook(path)["Patterns"]["E2"].value
    assert len(ids) == 32_767 and ids.endswith("[cut: 32,998 characters; the full text is in "
                                               "the store]")
    before = path.stat().st_mtime_ns
    again = plan()
    assert not again
    XlsxTracker(path).write([again])
    assert path.stat().st_mtime_ns == before


def test_when_openpyxl_writes_a_column_too_narrow_is_widened_alone(tmp_path):
    """Rows deleted go through openpyxl: it widens as the fast path does, splitting a run of
    columns Excel saved with one width, and a new cell in a wrapped column wraps."""
    path = tmp_path / "tracker.xlsx"
    header = {1: "Report ID", 2: "Service", 3: "Shift", 4: "What happened"}
    XlsxTracker(path).write([SheetWrite(spec=REPORTS, create=True, header=header,
                                        append=[["NM-1", "Oak", "Day", "x"],
                                                ["NM-2", "Oak", "Day", "y"]])])
    wb = load_workbook(path)
    ws = wb["Reports"]
    for letter in "ABC":
        del ws.column_dimensions[letter]
    ws.column_dimensions.group("A", "C")  # as Excel saves equal widths: one run
    ws.column_dimensions["A"].width = 12
    wb.save(path)

    tracker = XlsxTracker(path)
    tracker.read([REPORTS])
    service = "Riverside Supported Living"
    tracker.write([SheetWrite(spec=REPORTS, delete_rows=[2],
                              append=[["NM-3", service, "Night", "Wet floor"]])])
    ws = load_workbook(path)["Reports"]
    assert [ws.column_dimensions[c].width for c in "ABC"] == [12, len(service) + 2, 12]
    assert ws["D3"].alignment.wrap_text and ws["D3"].value == "Wet floor"
    assert XlsxTracker(path).read([REPORTS])["Reports"][1:] == [
        ["NM-2", "Oak", "Day", "y"], ["NM-3", service, "Night", "Wet floor"]]
