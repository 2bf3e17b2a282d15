"""The evidence pack's two files: a workbook of tables and a standalone HTML report.

Both are for their owner only (mode 0600): they hold what happened to whom."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from connectors.errors import NearmissError
from domain.text import sheet_text


def write_workbook(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """One sheet per table, header bold and frozen, columns sized to their text."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for title, frame in tables.items():
        ws = book.create_sheet(title)
        ws.append(list(frame.columns))
        for row in frame.itertuples(index=False):
            ws.append([sheet_text(v) if isinstance(v, str) else v for v in row])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for i, column in enumerate(frame.columns, 1):
            longest = max([len(str(column)), *(len(str(v)) for v in frame.iloc[:, i - 1])])
            ws.column_dimensions[ws.cell(1, i).column_letter].width = min(longest + 2, 60)
    return _private(path, book.save)


def write_page(path: Path, html: str) -> Path:
    return _private(path, lambda p: Path(p).write_text(html, encoding="utf-8"))


def _private(path: Path, write) -> Path:  # type: ignore[no-untyped-def]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        write(str(path))
        path.chmod(0o600)
    except OSError as exc:
        raise NearmissError(f"cannot write {path}: {exc.strerror}") from None
    return path
