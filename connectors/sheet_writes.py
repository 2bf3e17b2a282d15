"""What every tracker backend does alike with a run's writes: one write per sheet, archive
sheets known by their titles, rows moved up past deleted ones, runs of columns, A1 names
and cells as JSON."""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

from domain.records import Cell, SheetSpec, SheetWrite
from domain.text import sheet_text

JsonValue = str | int | float | bool | None


def archive_spec(specs: Sequence[SheetSpec], title: str) -> SheetSpec | None:
    """The spec of an archive sheet of one of `specs`, named as the sheet is."""
    for spec in specs:
        year = spec.archive_year(title)
        if year is not None:
            return spec.archive(year, title)
    return None


def shifted(w: SheetWrite, gone: Sequence[int]) -> SheetWrite:
    """`w` on the sheet once the rows `gone` are deleted: cells in them dropped, cells
    below moved up (appended rows follow the last row, which the caller moves)."""
    if not gone:
        return w
    order = sorted(gone)
    doomed = set(order)
    cells = {(row - bisect.bisect_left(order, row), col): value
             for (row, col), value in w.cells.items() if row not in doomed}
    return SheetWrite(spec=w.spec, create=w.create, header=dict(w.header), cells=cells,
                      append=w.append)


def rectangle(rows: list[list[Any]]) -> list[list[Cell]]:
    """Rows as the XLSX tracker gives them: padded to one width, empty cells None.

    The API trims trailing empty cells per row; padding keeps the header as wide as the
    widest row, so a new column never lands on text a manager typed past the header.
    """
    width = max((len(row) for row in rows), default=0)
    return [[None if v == "" else v for v in row] + [None] * (width - len(row)) for row in rows]


def runs(columns: Iterable[int]) -> list[tuple[int, int]]:
    """1-based columns as contiguous (first, last) runs: [1, 2, 3, 5] -> [(1, 3), (5, 5)]."""
    out: list[tuple[int, int]] = []
    for col in sorted(set(columns)):
        if out and out[-1][1] == col - 1:
            out[-1] = (out[-1][0], col)
        else:
            out.append((col, col))
    return out


def json_cell(value: Cell) -> JsonValue:
    """A cell as a cloud spreadsheet API takes it in JSON: dates as the text they show
    (the trackers write a date cell as a serial number with a date format themselves: see
    connectors/sheet_layout.py), anything else unexpected as text.

    Text is made safe and cut to the cell limit (Sheets takes 50,000 characters, Excel
    32,767: one limit keeps the backends alike), so no value fails a batch.
    """
    if isinstance(value, str):
        return sheet_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None  # NaN: a missing value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d" if value.time() == time() else "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars (numpy.bool_ is not Integral)
    if callable(item):
        return json_cell(item())
    return sheet_text(str(value))


def column_letter(col: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def column_number(letters: bytes | str) -> int:
    """A -> 1, AA -> 27."""
    n = 0
    for ch in letters.decode() if isinstance(letters, bytes) else letters:
        n = n * 26 + ord(ch) - 64
    return n


def a1(row: int, col: int) -> str:
    return f"{column_letter(col)}{row}"
