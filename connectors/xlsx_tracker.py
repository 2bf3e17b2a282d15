"""The tracker as a local Excel workbook (openpyxl), for providers without a cloud account.

The workbook is loaded once per run, changed in memory, and saved through a temporary file
and an atomic rename, so a failure mid-save never leaves a half-written tracker.
"""

from __future__ import annotations

import os
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
from domain.text import sheet_text

_HEADER_FONT = Font(bold=True)
_MANAGER_FILL = PatternFill("solid", fgColor="FFF2CC")  # manager columns: pale yellow
_OVERDUE_FILL = PatternFill("solid", fgColor="F4CCCC")


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
            fd, tmp = tempfile.mkstemp(prefix=".tracker-", suffix=".xlsx", dir=self.path.parent)
            os.close(fd)
            try:
                wb.save(tmp)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
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
