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

    def __bool__(self) -> bool:
        return self.create or bool(self.header or self.cells or self.append or self.delete_rows)

    def deleted(self) -> list[int]:
        """The rows to delete, once each, highest first (the header row never)."""
        return sorted({r for r in self.delete_rows if r > 1}, reverse=True)
