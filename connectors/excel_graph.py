"""The tracker as an Excel workbook in SharePoint or OneDrive, through Microsoft Graph.

It behaves as the XLSX and Google trackers do (the same contract suite): rows matched by
id, manager columns never written, deleted rows restored by the pipeline. What a run costs:

* `version()`: the workbook's content tag, one small request (two when it is found by
  site and path), so a run with nothing new reads no sheet;
* read: one persistent workbook session, the sheet list, and every tracker sheet's used
  range in one JSON `$batch`;
* write: new sheets, then changed cells and new rows as range updates, 20 to a `$batch`;
  rows moved to an archive are deleted one run of rows at a time (a deletion sent twice
  would delete other rows, so a retry first checks the rows are still there).

Every text value is written with Excel's text prefix (an apostrophe, which Excel keeps out
of the value): typed into a cell, `=1+1` would become a formula, `1/2` a date and `0012`
a number. A date is written as Excel stores one, a serial number of days, with its number
format (`yyyy-mm-dd hh:mm`, a day alone `yyyy-mm-dd`) in the same range update: the read
gives a number in a date format back as the datetime it shows (connectors/graph.py
`cells`), so it compares equal and is not written again. A new sheet's columns are sized to
what its first rows hold and long text wraps (connectors/sheet_layout.py). Graph cannot set
data validation (the dropdowns of the XLSX and Google trackers), conditional formats or
sheet protection; the README says so.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

from config.settings import Workbook
from connectors.base import Cell, SheetSpec, SheetWrite
from connectors.errors import ApiError, TrackerError
from connectors.graph import (
    GraphClients,
    Item,
    SessionExpired,
    cells,
    explain_workbook,
    locate,
    ok,
    range_path,
    sheet_path,
    tags,
)
from connectors.sheet_layout import date_value, layout, number_format, points, runs_of, serial
from connectors.sheet_writes import (
    JsonValue,
    a1,
    archive_spec,
    column_letter,
    column_number,
    json_cell,
    rectangle,
    runs,
    shifted,
)
from domain.records import merge_writes

_ROWS_PER_RANGE = 1000  # appended rows per range update: a first run's block is split
_MANAGER_FILL = "#FFF2CC"  # as in the XLSX and Google trackers
_ADDRESS = re.compile(r"!?\$?([A-Z]+)\$?([0-9]+)(?::\$?([A-Z]+)\$?([0-9]+))?$")


class ExcelGraphTracker:
    """The Tracker protocol on an Excel workbook in Microsoft 365."""

    def __init__(self, workbook: Workbook, clients: GraphClients) -> None:
        self.where, self.clients = workbook, clients
        self._item: Item | None = None
        self._session: str | None = None
        self._sheets: dict[str, str] = {}  # title -> worksheet id, as last listed
        self._rows: dict[str, list[list[Cell]]] = {}  # title -> rows as read

    # -- Tracker ---------------------------------------------------------------------------

    def version(self) -> str | None:
        if self._item is None:
            self._item = locate(self.clients, self.where, "finding the tracker workbook",
                                self._explain)
        else:
            self._item = tags(self.clients, self._item, "finding the tracker workbook",
                              self._explain)
        return self._item.ctag or None

    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        what = "reading the tracker workbook"
        self._open(what)
        listed = self._list(what)
        found: list[tuple[SheetSpec, str]] = []
        for spec in specs:
            title = _find(listed, spec.title)
            if title is not None:
                found.append((spec, title))
        named = {title for _, title in found}
        found += [(archive, title) for title in listed if title not in named
                  for archive in [archive_spec(specs, title)] if archive is not None]
        answers = self.clients.batch(what, [
            {"method": "GET", "url": f"{sheet_path(self._book, listed[title])}/"
                                     "usedRange(valuesOnly=true)", "headers": self._headers()}
            for _, title in found], explain=self._explain)
        out: dict[str, list[list[Cell]]] = {}
        for (spec, title), (status, body) in zip(found, answers, strict=True):
            rows = _placed(ok(status, body, what))
            self._rows[title.casefold()] = rows
            out[spec.title] = rows
        return out

    def write(self, writes: Sequence[SheetWrite]) -> None:
        writes = merge_writes(*writes)
        if not writes:
            return
        what = "writing the tracker workbook"
        try:
            self._open(what)
            if not self._sheets or any(w.spec.title.casefold() not in self._rows
                                       and _find(self._sheets, w.spec.title) for w in writes):
                self.read([w.spec for w in writes])  # rows are appended after the last read
            self._add_sheets(writes, what)
            writes = [self._delete(w, what) for w in writes]
            requests = [r for w in writes for r in self._updates(w)]
            for (status, body), request in zip(
                    self.clients.batch(what, requests, explain=self._explain), requests,
                    strict=True):
                ok(status, body, f"{what} ({request['what']})")
            self._remember(writes)
        except SessionExpired as exc:
            raise TrackerError(f"{what}: the workbook's edit session ended before the run "
                               f"had written everything ({exc.status}); the next run reads "
                               "the workbook again and completes it") from None
        finally:
            self._close()

    # -- session and sheets ------------------------------------------------------------------

    @property
    def _book(self) -> str:
        assert self._item is not None
        return self._item.workbook

    def _headers(self) -> dict[str, str]:
        return {"workbook-session-id": self._session} if self._session else {}

    def _open(self, what: str) -> None:
        """One persistent session for the run: Excel applies the run's changes together
        and answers faster than without one."""
        if self._item is None:
            self.version()
        if self._session is None:
            body = self.clients.call(what, "POST", f"{self._book}/createSession",
                                     {"persistChanges": True}, explain=self._explain)
            self._session = str((body or {}).get("id") or "") or None

    def _close(self) -> None:
        session, self._session = self._session, None
        if session is None or self._item is None:
            return
        with contextlib.suppress(ApiError):  # Excel ends an idle session itself soon
            self.clients.call("closing the tracker workbook", "POST",
                              f"{self._book}/closeSession",
                              headers={"workbook-session-id": session})

    def _list(self, what: str) -> dict[str, str]:
        body = self.clients.call(what, "GET", f"{self._book}/worksheets",
                                 headers=self._headers(), explain=self._explain)
        self._sheets = {str(s["name"]): str(s["id"]) for s in (body or {}).get("value") or []}
        return self._sheets

    def _add_sheets(self, writes: Sequence[SheetWrite], what: str) -> None:
        """Add the sheets that do not exist. An add whose answer was lost is refused as a
        name already taken when sent again: the list then says it is there."""
        missing = [w.spec.title for w in writes if _find(self._sheets, w.spec.title) is None]
        if not missing:
            return
        answers = self.clients.batch(what, [
            {"method": "POST", "url": f"{self._book}/worksheets/add", "body": {"name": title},
             "headers": self._headers()} for title in missing], explain=self._explain)
        if any(status == 409 for status, _ in answers):
            self._list(what)
        for title, (status, body) in zip(missing, answers, strict=True):
            if status == 409 and _find(self._sheets, title) is not None:
                continue
            sheet = ok(status, body, f"{what} (adding the sheet {title!r})")
            self._sheets[str(sheet["name"])] = str(sheet["id"])
            self._rows[title.casefold()] = []

    def _delete(self, w: SheetWrite, what: str) -> SheetWrite:
        """Delete the write's rows (runs of rows, lowest last) and return the write as the
        sheet then stands."""
        title = _find(self._sheets, w.spec.title)
        rows = self._rows.get(w.spec.title.casefold(), [])
        gone = [r for r in w.deleted() if r <= len(rows)]
        if title is None or not gone:
            return w
        for start, end in reversed(runs(gone)):
            expected = [row[0] if row else None for row in rows[start - 1:end]]
            self._delete_rows(title, start, end, expected, what)
            del rows[start - 1:end]
        return shifted(w, gone)

    def _delete_rows(self, title: str, start: int, end: int, expected: list[Cell],
                     what: str) -> None:
        sheet = self._sheets[title]
        attempts = 0

        def send() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # sent before: were the rows deleted, its answer lost?
                now = self.clients.request("GET", range_path(self._book, sheet,
                                                             f"A{start}:A{end}"),
                                           headers=self._headers()).json()
                if [row[0] if row else None for row in cells(now)] != expected:
                    return
            self.clients.request("POST", range_path(self._book, sheet, f"{start}:{end}")
                                 + "/delete", {"shift": "Up"}, self._headers())

        self.clients.retried(what, send, self._explain)

    # -- values -----------------------------------------------------------------------------

    def _updates(self, w: SheetWrite) -> list[dict[str, Any]]:
        """Range updates for the header, changed cells and appended rows, then the look of a
        new sheet's header."""
        sheet = self._sheets[_find(self._sheets, w.spec.title) or w.spec.title]
        rows = self._rows.get(w.spec.title.casefold(), [])
        last = max(len(rows), 1)

        def update(address: str, body: dict[str, Any], say: str,
                   part: str = "") -> dict[str, Any]:
            return {"method": "PATCH", "url": range_path(self._book, sheet, address) + part,
                    "body": body, "headers": self._headers(), "what": say}

        out: list[dict[str, Any]] = []
        values: dict[tuple[int, int], JsonValue] = {(1, c): _json(t) for c, t in w.header.items()}
        values.update({key: _json(v) for key, v in w.cells.items()})
        formats = {key: _format(v) for key, v in w.cells.items()}
        for row in sorted({r for r, _ in values}):
            for start, end in runs(c for r, c in values if r == row):
                cols = range(start, end + 1)
                out.append(update(f"{a1(row, start)}:{a1(row, end)}", _body(
                    [[_cleared(values[(row, c)]) for c in cols]],
                    [[formats.get((row, c)) for c in cols]]), f"row {row} of {w.spec.title}"))
        block = [[_json(v) for v in line] for line in w.append]
        width = max((len(line) for line in block), default=0)
        first = max([last, *(r for (r, _), v in values.items() if v not in (None, ""))]) + 1
        for i in range(0, len(block) if width else 0, _ROWS_PER_RANGE):
            lines = w.append[i:i + _ROWS_PER_RANGE]
            part = [line + [None] * (width - len(line)) for line in block[i:i + _ROWS_PER_RANGE]]
            out.append(update(f"{a1(first + i, 1)}:{a1(first + i + len(part) - 1, width)}",
                              _body([[_cleared(v) for v in line] for line in part],
                                    [[_format(v) for v in line] + [None] * (width - len(line))
                                     for line in lines]),
                              f"new rows of {w.spec.title}"))
        if w.create or w.header:  # the header bold, the manager columns' titles filled
            width = max(w.header, default=0) or len(w.spec.columns)
            out.append(update(f"A1:{a1(1, width)}", {"bold": True},
                              f"the header of {w.spec.title}", "/format/font"))
            managers = [c for c, t in w.header.items() if t in w.spec.manager_columns]
            out += [update(f"{a1(1, start)}:{a1(1, end)}", {"color": _MANAGER_FILL},
                           f"the manager columns of {w.spec.title}", "/format/fill")
                    for start, end in runs(managers)]
        if w.create:  # after the values: the whole columns, rows appended later included
            columns = layout(w)
            for start, end in runs_of(columns, columns):
                look: dict[str, Any] = {"columnWidth": points(columns[start].width)}
                if columns[start].wrap:
                    look.update(wrapText=True, verticalAlignment="Top")
                out.append(update(f"{column_letter(start)}:{column_letter(end)}", look,
                                  f"the columns of {w.spec.title}", "/format"))
        return out

    def _remember(self, writes: Sequence[SheetWrite]) -> None:
        """Keep the rows current, so a second write appends after this one."""
        for w in writes:
            rows = self._rows.setdefault(w.spec.title.casefold(), [])
            for (r, c), value in [*(((1, c), t) for c, t in w.header.items()),
                                  *w.cells.items()]:
                rows.extend([] for _ in range(r - len(rows)))
                rows[r - 1] = rows[r - 1] + [None] * (c - len(rows[r - 1]))
                rows[r - 1][c - 1] = value
            rows += [list(line) for line in w.append]

    def _explain(self, exc: ApiError) -> str | None:
        if exc.status in (423, 409):
            return ("the tracker workbook is locked for editing (open in desktop Excel?): "
                    "close it there; the next run writes what this one could not")
        return explain_workbook(exc, "the tracker workbook", "tracker.workbook")


def _find(sheets: dict[str, Any], title: str) -> str | None:
    """Sheet names are unique regardless of case in Excel."""
    if title in sheets:
        return title
    return next((t for t in sheets if t.casefold() == title.casefold()), None)


def _placed(used: dict[str, Any]) -> list[list[Cell]]:
    """A used range's cells as rows from A1: the used range starts at its first used cell,
    which is not A1 when a manager cleared the top rows or first columns."""
    rows = cells(used)
    if rows == [[None]]:  # Graph's answer for an empty sheet
        return []
    match = _ADDRESS.search(str(used.get("address") or "").split("!")[-1])
    top, left = (int(match.group(2)), column_number(match.group(1))) if match else (1, 1)
    return rectangle([[] for _ in range(top - 1)] + [[None] * (left - 1) + row
                                                     for row in rows])


def _json(value: Cell) -> JsonValue:
    """A cell as Graph takes it: text with Excel's text prefix, so it is never read as a
    formula, number or date; a date as its serial number (shown by `_format`)."""
    when = date_value(value)
    if when is not None:
        return serial(when)
    cell = json_cell(value)
    return "'" + cell if isinstance(cell, str) and cell else cell


def _format(value: Cell) -> str | None:
    """The number format a value's cell needs: a date's; None leaves the cell's own."""
    when = date_value(value)
    return number_format(when) if when is not None else None


def _body(values: list[list[JsonValue]], formats: list[list[str | None]]) -> dict[str, Any]:
    """A range update: the values, with the number formats when some cell needs one (null
    entries leave a cell's format as it is)."""
    if any(f is not None for line in formats for f in line):
        return {"values": values, "numberFormat": formats}
    return {"values": values}


def _cleared(value: JsonValue) -> JsonValue:
    """In a range update null leaves a cell as it is; an empty string empties it."""
    return "" if value is None else value
