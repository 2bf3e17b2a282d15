"""A Microsoft Form's responses, read from the workbook Forms keeps in sync, through Graph.

Graph has no Forms API: a group form's responses go to a workbook in the group's
SharePoint library, a personal form's to its owner's OneDrive ("Open results in Excel"),
and Forms adds each new response to it. That workbook is read here with the same rules as
a downloaded one (connectors.form_exports): ID identifies a response, `Last modified time`
(or a changed row) makes a new version, times are the deployment's local wall clock.

A run with nothing new costs one small request: the workbook's content tag (cTag) is
remembered in the watermark with its ids, and an unchanged tag answers without reading a
row. The daily full read (no watermark) locates the workbook again, so a moved or renamed
file is found by its configured place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from config.settings import Workbook
from connectors.base import Pull
from connectors.errors import ApiError, SourceError
from connectors.form_exports import MicrosoftFormsXlsxSource
from connectors.graph import (
    GraphClients,
    Item,
    cells,
    explain_workbook,
    locate,
    sheet_path,
    tags,
)


class MicrosoftFormsGraphSource(MicrosoftFormsXlsxSource):
    """The FormSource of a Microsoft Form's response workbook in SharePoint or OneDrive."""

    def __init__(self, name: str, workbook: Workbook, clients: GraphClients, tz: ZoneInfo,
                 sheet: str | None = None, *, dayfirst: bool = False) -> None:
        super().__init__(name, workbook.path or "", tz, sheet, dayfirst=dayfirst)
        self.workbook, self.clients = workbook, clients
        self.what = f"{name}: reading the Microsoft Forms workbook"

    def pull(self, watermark: str | None = None) -> Pull:
        memo = _memo(watermark)
        if memo:
            item = tags(self.clients, Item(memo["drive"], memo["item"]), self.what,
                        self._explain)
            if item.ctag and item.ctag == memo.get("ctag"):
                return Pull(responses=[], watermark=watermark, unchanged=True)
        else:
            item = locate(self.clients, self.workbook, self.what, self._explain)
        pulled = self._parse(self._sheet_rows(item), item.name or "the workbook")
        mark = json.dumps({"drive": item.drive_id, "item": item.item_id, "ctag": item.ctag})
        return Pull(pulled.responses, pulled.questions, mark, pulled.warnings)

    def _sheet_rows(self, item: Item) -> list[Sequence[object]]:
        """The sheet's used range as rows of cells, dates as the wall clock they show."""
        sheets = self.clients.call(self.what, "GET", f"{item.workbook}/worksheets",
                                   explain=self._explain).get("value") or []
        if not sheets:
            raise SourceError(f"{self.name}: {item.name} has no sheets")
        if self.sheet:
            found = next((s for s in sheets if str(s.get("name", "")).casefold()
                          == self.sheet.casefold()), None)
            if found is None:
                raise SourceError(f"{self.name}: {item.name} has no sheet {self.sheet!r}")
        else:
            found = min(sheets, key=lambda s: s.get("position", 0))
        used = self.clients.call(
            self.what, "GET",
            f"{sheet_path(item.workbook, str(found['id']))}/usedRange(valuesOnly=true)",
            explain=self._explain)
        return cells(used)

    def _explain(self, exc: ApiError) -> str | None:
        return explain_workbook(exc, "the Microsoft Forms response workbook",
                                "sources.workbook")


def _memo(watermark: str | None) -> dict[str, str] | None:
    """The workbook's ids and content tag from the last read (None: locate it again)."""
    try:
        memo = json.loads(watermark or "")
    except ValueError:
        return None
    return memo if isinstance(memo, dict) and memo.get("drive") and memo.get("item") else None
