"""The tracker as a local Excel workbook (openpyxl), for providers without a cloud account.

The workbook is loaded once per run, changed in memory, and saved through a temporary file
and an atomic rename, so a failure mid-save never leaves a half-written tracker. The new file
takes the mode, owner and group of the one it replaces, so a tracker an operator made
read-only or shared with a group stays that way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from openpyxl import Workbook, load_workbook
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import IllegalCharacterError
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from connectors.base import Cell, SheetSpec, SheetWrite
from connectors.errors import TrackerError
from connectors.files import remove_stale_temp_files
from domain.text import sheet_text

log = logging.getLogger(__name__)

_HEADER_FONT = Font(bold=True)
_MANAGER_FILL = PatternFill("solid", fgColor="FFF2CC")  # manager columns: pale yellow
_OVERDUE_FILL = PatternFill("solid", fgColor="F4CCCC")

# A new tracker is readable by its owner only: it holds person references and what
# happened to them. Sharing it (a group such as care-managers, mode 0660) is the operator's
# deliberate step, and every later save keeps it.
NEW_TRACKER_MODE = 0o600

# `_save`'s temporary files: this prefix and suffix around tempfile's eight random
# characters, and nothing else, so no file a person saved is ever taken for one.
_TEMP_PREFIX, _TEMP_SUFFIX = ".tracker-", ".xlsx"
_TEMP_NAME = re.compile(rf"{re.escape(_TEMP_PREFIX)}[a-z0-9_]{{8}}{re.escape(_TEMP_SUFFIX)}")


def _set(ws: Worksheet, row: int, col: int, value: Cell) -> None:
    if isinstance(value, str):
        value = sheet_text(value)  # openpyxl raises on a control character, cuts long text
    cell = ws.cell(row=row, column=col)
    try:
        cell.value = value
    except (IllegalCharacterError, ValueError, TypeError) as exc:
        # Their messages quote the value: submitted text never goes into an error.
        raise TrackerError(f"cannot store a value in cell {cell.coordinate} of sheet "
                           f"{ws.title!r} ({type(exc).__name__})") from None
    if isinstance(value, str) and value.startswith("="):
        # openpyxl stores any "=..." string as a formula; submitted text must stay text.
        cell.data_type = "s"


class XlsxTracker:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._wb: Workbook | None = None

    def _workbook(self) -> Workbook:
        if self._wb is None:
            if self.path.exists():
                try:
                    self._wb = load_workbook(self.path)
                except PermissionError:
                    raise TrackerError(f"no permission to open the tracker {self.path}") from None
                except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
                    # SyntaxError: XML that does not parse (ElementTree's ParseError)
                    raise TrackerError(f"the tracker {self.path} is not a readable Excel "
                                       f"workbook ({type(exc).__name__}): restore it from a "
                                       "backup or move it away to start a new one") from None
            else:
                self._wb = Workbook()
                self._wb.remove(self._wb.active)
        return self._wb

    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        wb = self._workbook()
        out: dict[str, list[list[Cell]]] = {}
        for spec in specs:
            if spec.title in wb.sheetnames:
                out[spec.title] = [list(r) for r in wb[spec.title].iter_rows(values_only=True)]
        return out

    def write(self, writes: Sequence[SheetWrite]) -> None:
        writes = [w for w in writes if w]
        if not writes:
            return
        wb = self._workbook()
        for w in writes:
            ws = wb[w.spec.title] if w.spec.title in wb.sheetnames else wb.create_sheet(
                w.spec.title)
            for col, title in w.header.items():
                _set(ws, 1, col, title)
                ws.cell(row=1, column=col).font = _HEADER_FONT
            for (row, col), value in w.cells.items():
                _set(ws, row, col, value)
            start = ws.max_row + 1 if ws.max_row > 1 or ws.cell(1, 1).value else 2
            for i, line in enumerate(w.append):
                for col, value in enumerate(line, start=1):
                    if value is not None and value != "":
                        _set(ws, start + i, col, value)
            if w.create:
                self._format(ws, w.spec)
            # Keep the filter covering every row, including those just appended.
            ws.auto_filter.ref = f"A1:{get_column_letter(ws.max_column)}{ws.max_row}"
        self._save(wb)

    def _format(self, ws: Worksheet, spec: SheetSpec) -> None:
        ws.freeze_panes = "A2"
        titles = {ws.cell(1, c).value: c for c in range(1, ws.max_column + 1)}
        for title, col in titles.items():
            letter = get_column_letter(col)
            ws.column_dimensions[letter].width = min(max(len(str(title)) + 4, 12), 40)
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

    def _save(self, wb: Workbook) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.path.parent, _TEMP_NAME)
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX,
                                       dir=self.path.parent)
            try:
                os.close(fd)
                wb.save(tmp)
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


