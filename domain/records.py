"""The records every layer exchanges: audit events and the tracker's sheets and writes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class AuditEvent:
    """One line of the append-only audit log: what was decided or seen, about what, and why."""

    entity: str  # "report", "pattern", "action", "run", "source", "tracker"
    entity_id: str
    event: str
    reason: str
    details: dict[str, Any] | None = None


Cell = Any  # str, number, datetime or None as the spreadsheet holds it


@dataclass(frozen=True)
class SheetSpec:
    """A tracker sheet: its title, the header row the system expects, and how it looks."""

    title: str
    columns: list[str]
    key_column: str
    manager_columns: list[str] = field(default_factory=list)
    # manager column -> allowed values (a dropdown where the tracker supports one)
    dropdowns: dict[str, list[str]] = field(default_factory=dict)
    # column shown as overdue (red) when it holds "overdue"
    overdue_column: str | None = None
    # its rows, once done with, move to yearly archive sheets ("Reports 2025"), which every
    # read of this sheet returns too, each under its own title
    archives: bool = False
    # the system column where a row is told what is wrong with it (a copied row)
    note_column: str | None = None

    def archive(self, year: int, title: str | None = None) -> SheetSpec:
        """The spec of this sheet's archive for `year`: the same columns, dropdowns and look
        (`title`: the name the sheet already has, when it exists)."""
        return replace(self, title=title or f"{self.title} {year}", archives=False)

    def archive_year(self, title: str) -> int | None:
        """The year of this sheet's archive named `title`, or None if it is not one. Names
        compare as spreadsheets compare them: case and runs of spaces aside."""
        if not self.archives:
            return None
        name = " ".join(title.split()).casefold()
        match = re.fullmatch(re.escape(" ".join(self.title.split()).casefold())
                             + r" ([0-9]{4})", name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Chart:
    """A native chart of a block of a sheet's own cells: it redraws as the cells change.

    The block runs from `header_row` (the series' names) to `last_row` (1-based,
    inclusive); `category_col` holds the labels, each of `series_cols` one series. `anchor`
    is the (row, column) its top-left corner sits on.
    """

    title: str
    kind: str  # "bar" or "line"
    header_row: int
    last_row: int
    category_col: int
    series_cols: tuple[int, ...]
    anchor: tuple[int, int]
    y_title: str = "reports"


@dataclass
class SheetWrite:
    """Changes to one sheet: header cells to set, cells to update, rows to append, rows to
    delete.

    Every row number is the row as the sheet was read. The deleted rows go last, so the
    header, cells and appended rows land where they would without them (a tracker that
    must delete first shifts them itself). The header row, and rows after the last row
    read, are never deleted.
    """

    spec: SheetSpec
    create: bool = False
    header: dict[int, str] = field(default_factory=dict)  # 1-based column -> title
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)  # (row, col) 1-based
    append: list[list[Cell]] = field(default_factory=list)
    delete_rows: list[int] = field(default_factory=list)  # 1-based, as read
    charts: list[Chart] = field(default_factory=list)  # added with a sheet it creates

    def __bool__(self) -> bool:
        return self.create or bool(self.header or self.cells or self.append or self.delete_rows)

    def deleted(self) -> list[int]:
        """The rows to delete, once each, highest first (the header row never)."""
        return sorted({r for r in self.delete_rows if r > 1}, reverse=True)


def merge_writes(*writes: SheetWrite) -> list[SheetWrite]:
    """One write per sheet (titles compared without case, as spreadsheets compare them), in
    the order the sheets were first mentioned, so a sheet is added once and its rows
    appended in one block; empty writes are dropped."""
    out: dict[str, SheetWrite] = {}
    for w in writes:
        key = w.spec.title.casefold()
        if key not in out:
            out[key] = SheetWrite(spec=w.spec)
        target = out[key]
        target.create |= w.create
        target.header.update(w.header)
        target.cells.update(w.cells)
        target.append.extend(w.append)
        target.delete_rows.extend(w.delete_rows)
        target.charts.extend(w.charts)
    return [w for w in out.values() if w]
