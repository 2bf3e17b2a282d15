"""The tracker as a local Excel workbook, for providers without a cloud account.

Reading uses python-calamine, a compiled reader many times faster than openpyxl on a long
history, and gives each sheet's rows as openpyxl's ``values_only`` reading does
(connectors/calamine_rows.py). Changed cells and new rows of existing sheets are written into
the workbook's XML (connectors/xlsx_patch.py); openpyxl, which sets formats, filters and
validations, loads it only to create a sheet or delete rows. The workbook is saved only when
some cell's value really differs: a run with nothing new costs one fast read and no save.

Columns are sized to what they hold (connectors/sheet_layout.py). The widths live in the
sheet's own `<cols>`, where both writers keep them: a new sheet gets them from its first
rows, and a later write widens a column its values do not fit, on the fast path as on
openpyxl's, so widths never cost a run its fast path nor a save of its own. Long-text
columns carry a wrapping style as their column style, which every cell written into them
takes. Dates are date cells shown as `yyyy-mm-dd hh:mm` (a day alone as `yyyy-mm-dd`).

A save goes through a temporary file and an atomic rename, so a failure mid-save never
leaves a half-written tracker. The new file takes the mode, owner and group of the one it
replaces, so a tracker an operator made read-only or shared with a group stays that way.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from copy import copy
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.numbers import is_date_format
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.exceptions import IllegalCharacterError
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from python_calamine import CalamineError, CalamineWorkbook

from connectors.base import Cell, SheetSpec, SheetWrite
from connectors.errors import TrackerError
from connectors.files import remove_stale_temp_files
from connectors.sheet_layout import date_value, layout, number_format, widened
from connectors.xlsx_patch import Declined, patch_workbook, sheet_xml
from connectors.zip_copy import copy_with_parts
from domain.records import Chart
from domain.text import sheet_text

log = logging.getLogger(__name__)

_HEADER_FONT = Font(bold=True)
_MANAGER_FILL = PatternFill("solid", fgColor="FFF2CC")  # manager columns: pale yellow
_OVERDUE_FILL = PatternFill("solid", fgColor="F4CCCC")
# Long text: wrapped, and read from the top of its row as the row grows with it.
_WRAP = Alignment(wrap_text=True, vertical="top")
_DEFAULT_WIDTH = 8.43  # Excel's width of a column without one of its own

# A new tracker is readable by its owner only: it holds person references and what
# happened to them. Sharing it (a group such as care-managers, mode 0660) is the operator's
# deliberate step, and every later save keeps it.
NEW_TRACKER_MODE = 0o600

# `_save`'s temporary files: this prefix and suffix around tempfile's eight random
# characters, and nothing else, so no file a person saved is ever taken for one.
_TEMP_PREFIX, _TEMP_SUFFIX = ".tracker-", ".xlsx"
_TEMP_NAME = re.compile(rf"{re.escape(_TEMP_PREFIX)}[a-z0-9_]{{8}}{re.escape(_TEMP_SUFFIX)}")


# OOXML text escapes a character as _xHHHH_, and Excel and calamine decode it when reading;
# openpyxl writes text as given. So text that happens to contain such a sequence has its
# underscore escaped (_x005F_), or "_x0041_" typed in a report would read back as "A".
_ESCAPE_LIKE = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")

def _column_styles(ws: Worksheet) -> dict[int, Any]:
    """Column -> the style of the columns that have one (their cells' default in Excel)."""
    out = {}
    for dim in ws.column_dimensions.values():
        if dim.has_style:
            first = dim.min or column_index_from_string(dim.index)
            out.update(dict.fromkeys(range(first, min(dim.max or first, 16_384) + 1),
                                     dim._style))
    return out


def _set(ws: Worksheet, row: int, col: int, value: Cell,
         column_styles: dict[int, Any] | None = None) -> bool:
    """Store `value` in a cell; True when the cell's value or type changed.

    A new cell takes its column's style (`column_styles`: a wrapped column's wrap), as a
    cell typed into the column in Excel does. A date is shown in the tracker's date format,
    unless its cell already shows dates in a format of its own (one a manager chose)."""
    cell = ws._cells.get((row, col))
    if cell is None:
        cell = ws.cell(row=row, column=col)
        if column_styles and col in column_styles:
            cell._style = copy(column_styles[col])
    before = (cell.value, cell.data_type)
    when = date_value(value)
    if when is not None:
        value = when  # a plain datetime: openpyxl handles pandas' Timestamp unevenly
        if not (cell.has_style and is_date_format(cell.number_format)):
            # Before the value: openpyxl then keeps it rather than setting its own.
            cell.number_format = number_format(when)
    if isinstance(value, str):
        value = sheet_text(value)  # openpyxl raises on a control character, cuts long text
    try:
        cell.value = value
    except (IllegalCharacterError, ValueError, TypeError) as exc:
        # Their messages quote the value: submitted text never goes into an error.
        raise TrackerError(f"cannot store a value in cell {cell.coordinate} of sheet "
                           f"{ws.title!r} ({type(exc).__name__})") from None
    if isinstance(value, str):
        # openpyxl stores "=..." as a formula and "#N/A" and the like as errors; submitted
        # text must stay text (and an error cell reads back empty).
        cell.data_type = "s"
        escaped = _ESCAPE_LIKE.sub("_x005F_", value)
        if escaped != value:
            # Set past openpyxl's check, which would cut the longer escaped form at the
            # cell limit: the limit is on the text as read.
            cell._value = escaped
    after = (cell.value, cell.data_type)
    return before != after or type(before[0]) is not type(after[0])


_UNREAD = object()  # XlsxTracker._seen before any read


class XlsxTracker:
    """The Tracker protocol on a local .xlsx file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._wb: Workbook | None = None
        # The file as this instance last read or saved it (None: there was none). Writes are
        # planned against that read: applied to a file changed since, they would land on
        # rows a manager has since sorted, and the save would undo the manager's edits.
        self._seen: Any = _UNREAD
        # its sheets' XML, as read (`xlsx_patch.sheet_xml`): inflated while the run goes on
        self._xml: Future[dict[str, bytes]] | None = None

    def _signature(self) -> tuple[int, int, int] | None:
        """What tells one version of the file from another (None: there is no file)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def version(self) -> str | None:
        """The file's SHA-256: a manager's save, a restored backup or a deleted file all
        change it (a copy with the same content does not, and need not)."""
        try:
            with open(self.path, "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return None  # no file, or none readable: the run's read says which

    def _not_readable(self, exc: BaseException) -> TrackerError:
        return TrackerError(f"the tracker {self.path} is not a readable Excel workbook "
                            f"({type(exc).__name__}): restore it from a backup or move it "
                            "away to start a new one")

    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        """Every row (header first) of each spec's sheet that exists, and of the archive
        sheets of specs that have them (under their own titles), read with calamine.

        Cells are as calamine gives them (an empty cell "", every number a float, a
        date-formatted whole day a `date`), as the other trackers give theirs (text, or
        JSON's values): what reads them compares `cell_text`, which reads each as the text
        of openpyxl's value. Made openpyxl's values, the cells of a 100,000-row tracker
        cost half a second more of every run."""
        self._wb, self._xml = None, None  # a workbook loaded before may be older than the file
        out: dict[str, list[list[Cell]]] = {}
        xml = None
        try:
            seen = self._signature()
            if seen is not None:
                with open(self.path, "rb"):  # an unreadable file fails here, by its cause
                    pass
                book = CalamineWorkbook.from_path(self.path)
                titles = [spec.title for spec in specs if spec.title in book.sheet_names]
                titles += [name for name in book.sheet_names if name not in titles and any(
                    spec.archive_year(name) is not None for spec in specs)]
                for title in titles:
                    rows = book.get_sheet_by_name(title).to_python(
                        skip_empty_area=False)  # rows and columns count from A1
                    out[title] = rows
                # what a write then patches (it checks the file is still this one)
                xml = _inflating(self.path, titles)
        except PermissionError:
            raise TrackerError(f"no permission to open the tracker {self.path}") from None
        except (CalamineError, ValueError, OSError) as exc:
            raise self._not_readable(exc) from None
        self._seen, self._xml = seen, xml
        return out

    def _as_read(self) -> tuple[int, int, int] | None:
        """The file's signature, refusing a file changed since this run read it."""
        try:
            now = self._signature()
        except OSError as exc:
            raise TrackerError(f"cannot write the tracker {self.path}: {exc.strerror}"
                               ) from None
        if self._seen is not _UNREAD and now != self._seen:
            raise TrackerError(f"cannot write the tracker {self.path}: it changed after this "
                               "run read it (saved in Excel meanwhile?); the next run brings "
                               "it up to date")
        return now

    def _workbook(self) -> Workbook:
        """The workbook to write to, loaded with openpyxl at the first write of the run."""
        now = self._as_read()
        if self._wb is None:
            if now is None:
                self._wb = Workbook()
                self._wb.remove(self._wb.active)
            else:
                try:
                    self._wb = load_workbook(self.path)
                except PermissionError:
                    raise TrackerError(f"no permission to open the tracker {self.path}"
                                       ) from None
                except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
                    # SyntaxError: XML that does not parse (ElementTree's ParseError)
                    raise self._not_readable(exc) from None
            self._seen = now
        return self._wb

    def write(self, writes: Sequence[SheetWrite]) -> None:
        """Apply all changes; save only if some cell's value really changed.

        Cells and rows of sheets the file has are written into its XML (connectors/
        xlsx_patch.py): seconds where loading and saving a large workbook takes minutes.
        New sheets and deleted rows go through openpyxl."""
        writes = [w for w in writes if w]
        if not writes:
            return
        if self._wb is None and self._as_read() is not None:
            # valid for the file as read, and `_as_read` says the file is still that one
            xml, self._xml = self._xml.result() if self._xml else {}, None
            try:
                parts = patch_workbook(self.path, writes, xml)
            except Declined as why:
                log.debug("tracker written with openpyxl: %s", why)
            else:
                if parts:
                    self._save(lambda tmp: copy_with_parts(self.path, tmp, parts))
                    with contextlib.suppress(OSError):
                        self._seen = self._signature()
                return
        wb = self._workbook()
        changed = False
        for w in writes:
            if w.spec.title in wb.sheetnames:
                ws = wb[w.spec.title]
            else:
                ws = wb.create_sheet(w.spec.title)
                changed = True
            for col, title in w.header.items():
                changed |= _set(ws, 1, col, title)
                ws.cell(row=1, column=col).font = _HEADER_FONT
            if w.create:  # before the values, which take the columns' styles
                self._format(ws, w)
            else:
                # Widened with the values it is for: saved when they are, never alone.
                _widen(ws, w)
            styles = _column_styles(ws)
            for (row, col), value in w.cells.items():
                changed |= _set(ws, row, col, value, styles if row > 1 else None)
            last = ws.max_row  # rows after it are the appended ones: never deleted
            start = ws.max_row + 1 if ws.max_row > 1 or ws.cell(1, 1).value else 2
            for i, line in enumerate(w.append):
                for col, value in enumerate(line, start=1):
                    if value is not None and value != "":
                        changed |= _set(ws, start + i, col, value, styles)
            if w.create:
                for chart in w.charts:
                    ws.add_chart(_chart(ws, chart), f"{get_column_letter(chart.anchor[1])}"
                                                    f"{chart.anchor[0]}")
                changed = True
            if w.deleted():
                changed |= _delete_rows(ws, [r for r in w.deleted() if r <= last])
            # Keep the filter covering every row, including those just appended.
            ws.auto_filter.ref = f"A1:{get_column_letter(ws.max_column)}{ws.max_row}"
        if changed:
            self._save(wb.save)
            with contextlib.suppress(OSError):  # else the next write refuses: safe
                self._seen = self._signature()  # the workbook in memory is now the file

    def _format(self, ws: Worksheet, w: SheetWrite) -> None:
        """The look of a new sheet: header, column widths and wraps (from what `w` puts in
        it), filter colours, dropdowns."""
        spec = w.spec
        ws.freeze_panes = "A2"
        for col, column in layout(w).items():
            dim = ws.column_dimensions[get_column_letter(col)]
            dim.width = column.width
            if column.wrap:
                dim.alignment = _WRAP
        titles = {ws.cell(1, c).value: c for c in range(1, ws.max_column + 1)}
        for title, col in titles.items():
            letter = get_column_letter(col)
            if title in spec.manager_columns:
                ws.cell(1, col).fill = _MANAGER_FILL
            if title in spec.dropdowns:
                dv = DataValidation(type="list", allow_blank=True,
                                    formula1='"' + ",".join(spec.dropdowns[title]) + '"')
                dv.error = f"Choose one of: {', '.join(spec.dropdowns[title])}"
                dv.errorStyle = "warning"
                ws.add_data_validation(dv)
                dv.add(f"{letter}2:{letter}1048576")
        if spec.overdue_column in titles:
            letter = get_column_letter(titles[spec.overdue_column])
            ws.conditional_formatting.add(
                f"{letter}2:{letter}1048576",
                CellIsRule(operator="equal", formula=['"overdue"'], fill=_OVERDUE_FILL))

    def _save(self, write: Callable[[str], None]) -> None:
        """`write` the workbook to a temporary file that then replaces the tracker."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.path.parent, _TEMP_NAME)
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX,
                                       dir=self.path.parent)
            try:
                os.close(fd)
                write(tmp)
                _take_access_of(tmp, self.path)
                os.replace(tmp, self.path)
            finally:
                # Every failure, an interrupt included, removes the temporary file.
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        except PermissionError:
            raise TrackerError(f"cannot write the tracker {self.path}: it is read-only or open "
                               "in another program; close it and run again") from None
        except OSError as exc:
            raise TrackerError(f"cannot write the tracker {self.path}: {exc.strerror}") from None
        except Exception as exc:
            # Named by type only: the message of an unexpected error may quote cell text.
            raise TrackerError(f"cannot write the tracker {self.path} "
                               f"({type(exc).__name__})") from None


def _inflating(path: Path, titles: Sequence[str]) -> Future[dict[str, bytes]]:
    """`sheet_xml`, in a thread of its own: a sheet of 100,000 rows is 150 MB of XML to
    inflate, which zlib does without the GIL while the values read are compared."""
    def inflate() -> dict[str, bytes]:
        try:
            return sheet_xml(path, titles)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError):
            return {}  # the write reads and judges the file itself

    pool = ThreadPoolExecutor(1, thread_name_prefix="tracker-xml")
    try:
        return pool.submit(inflate)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def _chart(ws: Worksheet, spec: Chart) -> Any:
    """An openpyxl chart over the sheet's own cells (Excel redraws it as they change)."""
    from openpyxl.chart import BarChart, LineChart, Reference

    chart = BarChart() if spec.kind == "bar" else LineChart()
    chart.title, chart.y_axis.title = spec.title, spec.y_title
    chart.width, chart.height = 18, 8  # centimetres: readable beside the figures
    for col in spec.series_cols:
        chart.add_data(Reference(ws, min_col=col, min_row=spec.header_row,
                                 max_row=spec.last_row), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=spec.category_col, min_row=spec.header_row + 1,
                                   max_row=spec.last_row))
    return chart


def _widen(ws: Worksheet, w: SheetWrite) -> None:
    """Widen the columns of an existing sheet too narrow for what `w` writes into them, as
    connectors/xlsx_patch.py does on the fast path: never narrower, never a hidden column.
    A run of columns sharing one width (as Excel saves them) is split first, so only the
    column that needs it changes."""
    dims = ws.column_dimensions
    for col, width in widened(w).items():
        letter = get_column_letter(col)
        run = next((d for d in dims.values() if (d.min <= col <= d.max if d.min and d.max
                                                  else d.index == letter)), None)
        if run is not None and run.hidden:
            continue
        if (run.width if run is not None and run.width else _DEFAULT_WIDTH) >= width:
            continue
        if run is not None and run.min and run.max and run.min != run.max:
            del dims[run.index]
            for i in range(run.min, run.max + 1):
                piece = copy(run)
                piece.index, piece.min, piece.max = get_column_letter(i), i, i
                dims[piece.index] = piece
        dims[letter].width = width


def _delete_rows(ws: Worksheet, rows: Sequence[int]) -> bool:
    """Delete whole rows, moving the rows below up; True when the sheet changed.

    One pass over the cells, where openpyxl's `delete_rows` goes over every cell below the
    row for each row deleted: archiving a few thousand rows of a long history at once must
    not take hours. Row heights and hidden rows move with their rows.
    """
    gone = sorted(set(rows))
    if not gone or gone[0] > ws.max_row:  # nothing there, nothing below
        return False

    def above(row: int) -> int:  # deleted rows above `row`
        return bisect.bisect_left(gone, row)

    doomed = set(gone)
    for row, col in sorted(ws._cells):  # top down: a cell moves up into a freed place
        if row in doomed:
            del ws._cells[(row, col)]
        elif shift := above(row):
            ws._move_cell(row, col, -shift, 0)
    kept = {row - above(row): dim for row, dim in ws.row_dimensions.items()
            if row not in doomed}
    ws.row_dimensions.clear()
    for row, dim in kept.items():
        dim.index = row
        ws.row_dimensions[row] = dim
    return True


def _take_access_of(tmp: str, path: Path) -> None:
    """Give `tmp` the mode, owner and group of `path` (NEW_TRACKER_MODE if there is none).

    The rename replaces the file, and with it whatever access an operator had set on it.
    Ownership goes first, as chown may clear mode bits. A user who may not give the file
    its owner (only root may) still keeps its group when they belong to it, and its mode.
    """
    try:
        old = os.stat(path)
    except FileNotFoundError:
        os.chmod(tmp, NEW_TRACKER_MODE)
        return
    new = os.stat(tmp)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.chown(tmp, old.st_uid, old.st_gid)
        except OSError:
            with contextlib.suppress(OSError):  # not in that group: the mode is still kept
                os.chown(tmp, -1, old.st_gid)
    os.chmod(tmp, stat.S_IMODE(old.st_mode))


