"""The records every layer exchanges: audit events and the tracker's sheets and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class SheetWrite:
    """Changes to one sheet: header cells to set, cells to update, rows to append."""

    spec: SheetSpec
    create: bool = False
    header: dict[int, str] = field(default_factory=dict)  # 1-based column -> title
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)  # (row, col) 1-based
    append: list[list[Cell]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.create or bool(self.header or self.cells or self.append)
