"""The tracker as a shared Google Sheets spreadsheet (gspread's HTTP client, Sheets API v4).

A run costs a bounded number of requests whatever the number of rows, because a service
account is one "user" to the quota (60 requests per minute):

* read: one ``spreadsheets.get`` masked to the sheets' ids, titles and grid sizes, and one
  ``values.batchGet`` of every tracker sheet that exists (FORMATTED_VALUE: all strings);
* write: at most one ``spreadsheets.batchUpdate`` for structure (new sheets and their
  layout, grid growth, rows deleted, the number format of the cells a date is written to)
  and one ``values.batchUpdate`` (RAW) for every cell of every sheet (split only when it
  would exceed the 2 MB Google recommends: a first run over a long history).

Rows are deleted in the structural request, before the values are written, so the cells
and appended rows of a write are moved up past the deleted rows before they are sent.

Rows are appended at explicit A1 ranges after the last row seen by the read, never with
``values.append``, whose table detection can land rows in the wrong columns. Every value is
written RAW, so submitted text such as ``=HYPERLINK(...)`` stays text.

A date is written as a serial number of days, and the cells it goes to are given a date
number format (``yyyy-mm-dd hh:mm``, a day alone ``yyyy-mm-dd``) in the same run's
structural request: managers sort and filter a real date, and the FORMATTED_VALUE read gives
back the text the tracker compares, so the value is not written again. (USER_ENTERED would
parse an ISO text into a date too, but in a format of the spreadsheet's locale, and would
turn submitted text into formulas.) The format goes with the values on every write rather
than once on the column: a sheet an earlier version created has none, and rows the grid
grows by carry none.

A new sheet's columns are sized to what its first rows hold and long text wraps
(connectors/sheet_layout.py); a later write leaves widths alone, as reading them back
would cost every run a larger metadata request.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gspread.http_client import HTTPClient
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL
from gspread.utils import rowcol_to_a1

from connectors.base import Cell, SheetSpec, SheetWrite
from connectors.errors import ApiError
from connectors.google_auth import GoogleClients, forbidden_reason
from connectors.sheet_layout import (
    DATE_TIME_FORMAT,
    date_value,
    layout,
    number_format,
    pixels,
    runs_of,
    serial,
)
from connectors.sheet_writes import (
    JsonValue,
    archive_spec,
    json_cell,
    rectangle,
    runs,
    shifted,
)
from domain.records import Chart, merge_writes

T = TypeVar("T")

PROTECTION_MODES = ("warning", "strict", "off")

# All a run needs of the spreadsheet: each sheet's id, title and grid size, and its basic
# filter (stretched when the grid grows). Unmasked, the answer also carries the theme, the
# default format and every protected range and conditional format of every sheet.
_SHEETS_MASK = ("sheets(properties(sheetId,title,gridProperties(rowCount,columnCount)),"
                "basicFilter)")
_NEW_GRID = (1000, 26)  # rows, columns: what the Sheets UI gives a new sheet
_MANAGER_FILL = {"red": 1.0, "green": 0.949, "blue": 0.8}  # FFF2CC, as in the XLSX tracker
_OVERDUE_FILL = {"red": 0.957, "green": 0.8, "blue": 0.8}  # F4CCCC, as in the XLSX tracker
_PROTECTED_NOTE = "Filled in by Nearmiss Loop: edits here are overwritten by the next run"
_URL_ID = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
# Google recommends request bodies under 2 MB: a first run over a long history (thousands
# of rows) is split into several values requests; an everyday run fits in one.
_MAX_REQUEST_BYTES = 2_000_000
_ROWS_PER_RANGE = 1000  # appended rows go in ranges of this size, so requests can be split



@dataclass
class _Sheet:
    """One sheet as spreadsheets.get describes it."""

    sheet_id: int
    title: str
    rows: int
    cols: int
    basic_filter: dict[str, Any] | None = None


class GoogleSheetsTracker:
    """The Tracker protocol on a Google spreadsheet, behaving like the XLSX tracker.

    `protection` guards the system-owned columns of new sheets: "warning" (Sheets asks
    before an edit), "strict" (only the service account, and the owner, may edit), "off".
    """

    def __init__(self, spreadsheet_id: str, clients: GoogleClients,
                 protection: str = "warning") -> None:
        if protection not in PROTECTION_MODES:
            raise ValueError(f"protection must be one of {', '.join(PROTECTION_MODES)}, "
                             f"not {protection!r}")
        match = _URL_ID.search(spreadsheet_id)  # the whole URL pasted from the browser
        self.spreadsheet_id = match.group(1) if match else spreadsheet_id.strip()
        self.clients = clients
        self.protection = protection
        # gspread's plain client: retries, pacing and error messages are clients.call's job
        # (gspread's BackOffHTTPClient would retry a second time underneath it).
        self._http = HTTPClient(None, session=clients.session("sheets"))  # type: ignore[arg-type]
        self._http.set_timeout(clients.timeout)
        self._sheets: dict[str, _Sheet] | None = None  # as last seen; kept for the write
        self._last_row: dict[int, int] = {}  # sheetId -> last row holding a value (>= 1)
        self._headers: dict[int, list[str]] = {}  # sheetId -> row 1 as text

    # -- Tracker ---------------------------------------------------------------------------

    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        """Every row (header first) of each spec's sheet that exists, and of the archive
        sheets of specs that have them (under their own titles), in two requests."""
        what = "reading the tracker spreadsheet"
        sheets = self._call(what, self._fetch_sheets)
        found = [(spec, sheet) for spec in specs if (sheet := _find(sheets, spec.title))]
        named = {sheet.sheet_id for _, sheet in found}
        found += [(archive, sheet) for sheet in sheets.values() if sheet.sheet_id not in named
                  for archive in [archive_spec(specs, sheet.title)] if archive is not None]
        if not found:
            return {}
        body = self._call(what, lambda: self._http.values_batch_get(
            self.spreadsheet_id, [_quote(sheet.title) for _, sheet in found],
            params={"valueRenderOption": "FORMATTED_VALUE", "majorDimension": "ROWS"}))
        out: dict[str, list[list[Cell]]] = {}
        for (spec, sheet), value_range in zip(found, body.get("valueRanges") or [],
                                              strict=True):
            rows = value_range.get("values") or []  # absent for an empty sheet
            self._last_row[sheet.sheet_id] = max(len(rows), 1)
            self._headers[sheet.sheet_id] = [str(v) for v in rows[0]] if rows else []
            out[spec.title] = rectangle(rows)
        return out

    def version(self) -> None:
        """Sheets has no cheap change token under the spreadsheets scope (Drive's file
        `version` needs a Drive scope): every run reads the values."""
        return None

    def write(self, writes: Sequence[SheetWrite]) -> None:
        """Apply all changes: at most one structural and one values request (plus a read
        when this instance has not read the sheets it writes to)."""
        writes = merge_writes(*writes)
        if not writes:
            return
        if self._sheets is None or any(
            (sheet := _find(self._sheets, w.spec.title)) is not None
            and sheet.sheet_id not in self._last_row for w in writes
        ):
            # Rows are appended after the last row the read saw. The pipeline reads first;
            # an instance that has not read a sheet it writes to reads it now.
            self.read([w.spec for w in writes])
        self._update_structure(writes)
        writes = [self._after_deletions(w) for w in writes]
        for data in _batches(self._value_ranges(writes)):
            body = {"valueInputOption": "RAW", "data": data}
            self._call("writing the tracker spreadsheet",
                       lambda body=body: self._http.values_batch_update(self.spreadsheet_id,
                                                                        body))
        self._remember(writes)

    # -- requests --------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self.clients.call(what, fn, explain=self._explain)

    def _explain(self, exc: ApiError) -> str | None:
        """The fix for the failures a deployment causes (a 403 or 404 is not retried)."""
        sid = self.spreadsheet_id
        reason = forbidden_reason(exc) if exc.status == 403 else None
        if reason == "disabled":
            return ("the Google Sheets API is not enabled in the Cloud project of the "
                    "credentials: enable it in the Cloud console, then run again")
        if reason == "scope":
            return ("the Google credentials lack the spreadsheets scope: run `nearmiss auth "
                    "google` again")
        if reason == "access":
            email = getattr(self.clients.credentials, "service_account_email", None)
            who = f"the service account {email}" if email else self.clients.account
            return (f"{who} cannot open spreadsheet {sid}: share it with "
                    f"{email or 'that account'} as an editor")
        if exc.status == 404:
            return f"spreadsheet {sid} not found: check tracker.spreadsheet_id"
        return None

    def _fetch_sheets(self) -> dict[str, _Sheet]:
        body = self._http.fetch_sheet_metadata(self.spreadsheet_id,
                                               params={"fields": _SHEETS_MASK})
        self._sheets = _parse_sheets(body)
        return self._sheets

    def _update_structure(self, writes: Sequence[SheetWrite]) -> None:
        """Send the structural batch, if one is needed.

        A batchUpdate is atomic, but its answer can be lost after Google applied it (a
        time-out, a dropped connection, a 5xx from a front end). Sending the same addSheet
        again would then fail ("already exists") and appendDimension would grow the grid
        twice, so a retry first re-reads the sheets and sends only what is still missing.
        (The re-read is a call of its own, with its own retries: inside the same attempt it
        would double the odds of an attempt failing.)
        """
        if not self._structure_requests(writes):
            return
        attempts = 0
        what = "updating the tracker spreadsheet's layout"
        # Deleting rows is not idempotent: sent again, it would delete other rows. The batch
        # changes the row count of every sheet it deletes from (see _structure_requests)
        # and is applied whole or not at all, so a count that moved says it was applied.
        assert self._sheets is not None
        counts = {sheet.sheet_id: sheet.rows for w in writes
                  if w.deleted() and (sheet := _find(self._sheets, w.spec.title))}

        def send() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                sheets = self._call(what, self._fetch_sheets)
                if any(s.sheet_id in counts and s.rows != counts[s.sheet_id]
                       for s in sheets.values()):
                    return
            requests = self._structure_requests(writes)
            if not requests:
                return
            # The answer carries the sheets as they now are (ids, grid sizes), masked to
            # what the rest of the run needs.
            response = self._http.request(
                "post", SPREADSHEET_BATCH_UPDATE_URL % self.spreadsheet_id,
                params={"fields": f"updatedSpreadsheet({_SHEETS_MASK})"},
                json={"requests": requests, "includeSpreadsheetInResponse": True})
            self._sheets = _parse_sheets(response.json().get("updatedSpreadsheet") or {})

        self._call(what, send)

    # -- planning --------------------------------------------------------------------------

    def _structure_requests(self, writes: Sequence[SheetWrite]) -> list[dict[str, Any]]:
        assert self._sheets is not None
        requests: list[dict[str, Any]] = []
        taken = {s.sheet_id for s in self._sheets.values()}
        for w in writes:
            sheet = _find(self._sheets, w.spec.title)
            last = self._last_row.get(sheet.sheet_id, 1) if sheet else 1
            gone = [r for r in w.deleted() if r <= last] if sheet else []
            # The grid the write needs once the rows are gone, plus those rows until then.
            rows, cols = _extent(shifted(w, gone), last - len(gone))
            if gone:
                # Sheets refuses to delete every row below a frozen header; and the count
                # must change for a retry to tell an applied batch (see _update_structure).
                rows = max(rows, 2)
                rows += len(gone) + (rows == sheet.rows)
            if sheet is None:
                sheet_id = _new_sheet_id(w.spec.title, taken)
                taken.add(sheet_id)
                grid: dict[str, int] = {"rowCount": max(rows, _NEW_GRID[0]),
                                        "columnCount": max(cols, _NEW_GRID[1])}
                if w.create:
                    grid["frozenRowCount"] = 1
                requests.append({"addSheet": {"properties": {
                    "sheetId": sheet_id, "title": w.spec.title, "gridProperties": grid}}})
                if w.create:
                    columns = {title: col for col, title in w.header.items()}
                    requests += self._layout(sheet_id, w.spec, columns)
                    requests += _columns_look(sheet_id, w)
                    requests += [_add_chart(sheet_id, chart) for chart in w.charts]
                requests += _date_formats(sheet_id, w, _append_start(w, 1))
                continue
            requests += self._grow(sheet, w, rows, cols)
            # Highest first, so each request's row numbers are still those of the read.
            requests += [{"deleteDimension": {"range": {
                "sheetId": sheet.sheet_id, "dimension": "ROWS", "startIndex": start - 1,
                "endIndex": end}}} for start, end in reversed(runs(gone))]
            # After the deletions: the rows as the values request will find them.
            after = shifted(w, gone)
            requests += _date_formats(sheet.sheet_id, after,
                                      _append_start(after, last - len(gone)))
            if w.create:
                continue  # it exists after all (a lost answer, a stale read): laid out already
            # New header cells on an existing sheet are bold, as the rest of the header.
            requests += [_repeat(sheet.sheet_id, 0, 1, start - 1, end, {"textFormat": {
                "bold": True}}, "userEnteredFormat.textFormat.bold")
                for start, end in runs(w.header)]
        return requests

    def _layout(self, sheet_id: int, spec: SheetSpec,
                columns: Mapping[str, int]) -> list[dict[str, Any]]:
        """Header, filter, dropdowns, protection and the overdue colour of a new sheet.

        Ranges without an end row run to the bottom of the grid, so they cover the rows
        appended later; data validation is the exception (it is stored per cell).
        """
        out = [_repeat(sheet_id, 0, 1, None, None, {"textFormat": {"bold": True}},
                       "userEnteredFormat.textFormat.bold")]
        managers = [c for t, c in columns.items() if t in spec.manager_columns]
        out += [_repeat(sheet_id, 0, 1, start - 1, end, {"backgroundColor": _MANAGER_FILL},
                        "userEnteredFormat.backgroundColor") for start, end in runs(managers)]
        out.append({"setBasicFilter": {"filter": {"range": {"sheetId": sheet_id}}}})
        out += [_dropdown(sheet_id, columns[title], choices, 1, None)
                for title, choices in spec.dropdowns.items() if title in columns]
        if self.protection != "off":
            system = [c for t, c in columns.items()
                      if t in spec.columns and t not in spec.manager_columns]
            out += [self._protect(sheet_id, start, end) for start, end in runs(system)]
        if spec.overdue_column in columns:
            col = columns[spec.overdue_column]
            out.append({"addConditionalFormatRule": {"index": 0, "rule": {
                "ranges": [{"sheetId": sheet_id, "startRowIndex": 1,
                            "startColumnIndex": col - 1, "endColumnIndex": col}],
                "booleanRule": {
                    "condition": {"type": "TEXT_EQ", "values": [{"userEnteredValue": "overdue"}]},
                    "format": {"backgroundColor": _OVERDUE_FILL}},
            }}})
        return out

    def _protect(self, sheet_id: int, start: int, end: int) -> dict[str, Any]:
        protected: dict[str, Any] = {
            "range": {"sheetId": sheet_id, "startColumnIndex": start - 1, "endColumnIndex": end},
            "description": _PROTECTED_NOTE,
        }
        if self.protection == "warning":
            protected["warningOnly"] = True  # the API rejects editors on a warning range
        else:
            # Without editors only the owner and the requesting account may edit.
            email = getattr(self.clients.credentials, "service_account_email", None)
            if email:
                protected["editors"] = {"users": [email]}
        return {"addProtectedRange": {"protectedRange": protected}}

    def _grow(self, sheet: _Sheet, w: SheetWrite, rows: int, cols: int) -> list[dict[str, Any]]:
        """Grid growth for an existing sheet: Sheets rejects writes beyond the grid."""
        out: list[dict[str, Any]] = []
        for dimension, size, needed in (("ROWS", sheet.rows, rows), ("COLUMNS", sheet.cols,
                                                                    cols)):
            if needed > size:
                out.append({"appendDimension": {"sheetId": sheet.sheet_id,
                                                "dimension": dimension, "length": needed - size}})
        if not out:
            return out
        if rows > sheet.rows:
            # Appended grid rows carry no validation: give the dropdowns to the new rows.
            columns = _columns(self._headers.get(sheet.sheet_id, []), w.header)
            out += [_dropdown(sheet.sheet_id, columns[_norm(title)], choices, sheet.rows, rows)
                    for title, choices in w.spec.dropdowns.items() if _norm(title) in columns]
        stretched = _stretch(sheet, rows, cols)
        if stretched is not None:
            # Sheets stores the filter bounded to the grid it was set on (recorded); set it
            # again with its own criteria and sort so managers keep their filtering.
            out.append({"setBasicFilter": {"filter": stretched}})
        return out

    def _after_deletions(self, w: SheetWrite) -> SheetWrite:
        """The write as the sheet stands once its rows were deleted (the structural request
        went first): cells and the last row moved up past them."""
        assert self._sheets is not None
        sheet = _find(self._sheets, w.spec.title)
        last = self._last_row.get(sheet.sheet_id, 1) if sheet else 1
        gone = [r for r in w.deleted() if r <= last]  # as _structure_requests deleted them
        if sheet is None or not gone:
            return w
        self._last_row[sheet.sheet_id] = last - len(gone)
        return shifted(w, gone)

    def _value_ranges(self, writes: Sequence[SheetWrite]) -> list[dict[str, Any]]:
        assert self._sheets is not None
        data: list[dict[str, Any]] = []
        for w in writes:
            sheet = _find(self._sheets, w.spec.title)
            title = _quote(sheet.title if sheet else w.spec.title)
            last = self._last_row.get(sheet.sheet_id, 1) if sheet else 1
            cells: dict[tuple[int, int], JsonValue] = {
                (1, col): text for col, text in w.header.items()}
            for key, value in w.cells.items():
                json_value = _json(value)
                cells[key] = "" if json_value is None else json_value  # null is skipped
            for row in sorted({r for r, _ in cells}):
                for start, end in runs(c for r, c in cells if r == row):
                    data.append({"range": f"{title}!{rowcol_to_a1(row, start)}:"
                                          f"{rowcol_to_a1(row, end)}",
                                 "majorDimension": "ROWS",
                                 "values": [[cells[(row, c)] for c in range(start, end + 1)]]})
            block = [_appended(line) for line in w.append]
            width = max((len(line) for line in block), default=0)
            first = _append_start(w, last)
            for i in range(0, len(block) if width else 0, _ROWS_PER_RANGE):
                part = block[i:i + _ROWS_PER_RANGE]
                data.append({"range": f"{title}!{rowcol_to_a1(first + i, 1)}:"
                                      f"{rowcol_to_a1(first + i + len(part) - 1, width)}",
                             "majorDimension": "ROWS", "values": part})
        return data

    def _remember(self, writes: Sequence[SheetWrite]) -> None:
        """Keep the last rows and headers current, so a second write appends after this one."""
        assert self._sheets is not None
        for w in writes:
            sheet = _find(self._sheets, w.spec.title)
            if sheet is None:
                continue
            start = _append_start(w, self._last_row.get(sheet.sheet_id, 1))
            self._last_row[sheet.sheet_id] = start - 1 + len(w.append)
            header = self._headers.setdefault(sheet.sheet_id, [])
            for col, text in w.header.items():
                header.extend([""] * (col - len(header)))
                header[col - 1] = text


# -- helpers -------------------------------------------------------------------------------


def _parse_sheets(body: Mapping[str, Any]) -> dict[str, _Sheet]:
    out: dict[str, _Sheet] = {}
    for entry in body.get("sheets") or []:
        props = entry.get("properties") or {}
        grid = props.get("gridProperties")
        if grid is None:  # a chart sheet (sheetType OBJECT) has no grid
            continue
        # proto3 JSON omits zeros: the first sheet's id 0 may be absent
        sheet = _Sheet(int(props.get("sheetId", 0)), str(props.get("title", "")),
                       int(grid.get("rowCount", 0)), int(grid.get("columnCount", 0)),
                       entry.get("basicFilter"))
        out[sheet.title] = sheet
    return out


def _find(sheets: Mapping[str, _Sheet], title: str) -> _Sheet | None:
    """Sheet names are unique regardless of case in Sheets ("reports" blocks "Reports")."""
    if title in sheets:
        return sheets[title]
    folded = title.casefold()
    return next((s for t, s in sheets.items() if t.casefold() == folded), None)


def _quote(title: str) -> str:
    """A sheet name in A1 notation: always quoted, quotes doubled ('Data quality'!A1)."""
    return "'" + title.replace("'", "''") + "'"


def _new_sheet_id(title: str, taken: set[int]) -> int:
    """An id chosen here rather than by Sheets, so the requests after addSheet in the same
    batch can name the new sheet; derived from the title so every attempt asks the same."""
    sheet_id = zlib.crc32(title.encode()) & 0x7FFFFFFF or 1
    while sheet_id in taken:
        sheet_id = sheet_id % 0x7FFFFFFF + 1
    return sheet_id


def _json(value: Cell) -> JsonValue:
    """A cell as the values request takes it: a date as its serial number (its cell is
    given a date format by `_date_formats`), anything else as `json_cell` says."""
    when = date_value(value)
    return serial(when) if when is not None else json_cell(value)


def _appended(line: Sequence[Cell]) -> list[JsonValue]:
    """An appended row: None and "" are left empty (null cells are skipped by the API)."""
    out = [None if v == "" else v for v in map(_json, line)]
    while out and out[-1] is None:
        out.pop()
    return out


def _append_start(w: SheetWrite, last: int) -> int:
    """The first appended row: after the last row holding a value, counting the cells this
    write fills (as the XLSX tracker does); row 2 on an empty sheet."""
    filled = [r for (r, _), v in w.cells.items() if json_cell(v) not in (None, "")]
    return max([last, 1, *filled, *([1] if w.header else [])]) + 1


def _extent(w: SheetWrite, last: int) -> tuple[int, int]:
    """Rows and columns the grid needs for this write."""
    rows = _append_start(w, last) - 1 + len(w.append)
    rows = max([rows, *(r for r, _ in w.cells)])
    cols = max([0, *w.header, *(c for _, c in w.cells),
                *(len(_appended(line)) for line in w.append)])
    return rows, cols


def _date_formats(sheet_id: int, w: SheetWrite, first: int) -> list[dict[str, Any]]:
    """A date number format for each cell `w` writes a date to (its appended rows from row
    `first`), as one request per run of such cells down a column: empty appended cells
    between two dates join the run, so a date column of a long first run is one request."""
    formats: dict[int, dict[int, str]] = {}  # column -> row -> format
    for (row, col), value in w.cells.items():
        when = date_value(value)
        if when is not None:
            formats.setdefault(col, {})[row] = number_format(when)
    for i, line in enumerate(w.append):
        for col, value in enumerate(line, start=1):
            when = date_value(value)
            if when is not None:
                formats.setdefault(col, {})[first + i] = number_format(when)

    def blank(row: int, col: int) -> bool:  # an appended cell left empty
        i = row - first
        if not 0 <= i < len(w.append):
            return False
        line = w.append[i]
        return col > len(line) or line[col - 1] is None or line[col - 1] == ""

    out: list[dict[str, Any]] = []
    for col, rows in sorted(formats.items()):
        spans: list[list[Any]] = []  # [first row, last row, format]
        for row in sorted(rows):
            last = spans[-1] if spans else None
            if last is not None and last[2] == rows[row] and all(
                    blank(r, col) for r in range(last[1] + 1, row)):
                last[1] = row
            else:
                spans.append([row, row, rows[row]])
        out += [_repeat(sheet_id, start - 1, end, col - 1, col, {"numberFormat": {
            "type": "DATE_TIME" if fmt == DATE_TIME_FORMAT else "DATE", "pattern": fmt}},
            "userEnteredFormat.numberFormat") for start, end, fmt in spans]
    return out


def _columns_look(sheet_id: int, w: SheetWrite) -> list[dict[str, Any]]:
    """Widths from what a new sheet's first write holds, and long text wrapped (whole
    columns, so rows appended later wrap too)."""
    columns = layout(w)
    out: list[dict[str, Any]] = [{"updateDimensionProperties": {
        "range": {"sheetId": sheet_id, "dimension": "COLUMNS", "startIndex": start - 1,
                  "endIndex": end},
        "properties": {"pixelSize": pixels(columns[start].width)}, "fields": "pixelSize"}}
        for start, end in runs_of(columns, {c: col.width for c, col in columns.items()})]
    wrapped = [c for c, col in columns.items() if col.wrap]
    out += [{"repeatCell": {
        "range": {"sheetId": sheet_id, "startColumnIndex": start - 1, "endColumnIndex": end},
        "cell": {"userEnteredFormat": {"wrapStrategy": "WRAP", "verticalAlignment": "TOP"}},
        "fields": "userEnteredFormat.wrapStrategy,userEnteredFormat.verticalAlignment"}}
        for start, end in runs(wrapped)]
    return out


def _add_chart(sheet_id: int, chart: Chart) -> dict[str, Any]:
    """A basic chart over the block of cells the Chart names; header row = series names."""
    def block(col: int) -> dict[str, Any]:
        return {"sourceRange": {"sources": [{
            "sheetId": sheet_id, "startRowIndex": chart.header_row - 1,
            "endRowIndex": chart.last_row, "startColumnIndex": col - 1,
            "endColumnIndex": col}]}}

    return {"addChart": {"chart": {
        "spec": {"title": chart.title, "basicChart": {
            "chartType": "COLUMN" if chart.kind == "bar" else "LINE",
            "legendPosition": "BOTTOM_LEGEND", "headerCount": 1,
            "axis": [{"position": "BOTTOM_AXIS"},
                     {"position": "LEFT_AXIS", "title": chart.y_title}],
            "domains": [{"domain": block(chart.category_col)}],
            "series": [{"series": block(col), "targetAxis": "LEFT_AXIS"}
                       for col in chart.series_cols]}},
        "position": {"overlayPosition": {"anchorCell": {
            "sheetId": sheet_id, "rowIndex": chart.anchor[0] - 1,
            "columnIndex": chart.anchor[1] - 1}}}}}}


def _repeat(sheet_id: int, start_row: int, end_row: int, start_col: int | None,
            end_col: int | None, fmt: dict[str, Any], fields: str) -> dict[str, Any]:
    grid: dict[str, Any] = {"sheetId": sheet_id, "startRowIndex": start_row,
                            "endRowIndex": end_row}
    if start_col is not None:
        grid.update(startColumnIndex=start_col, endColumnIndex=end_col)
    return {"repeatCell": {"range": grid, "cell": {"userEnteredFormat": fmt}, "fields": fields}}


def _dropdown(sheet_id: int, col: int, choices: Sequence[str], start_row: int,
              end_row: int | None) -> dict[str, Any]:
    """A list of choices that only warns (strict=False): managers may type other text."""
    grid: dict[str, Any] = {"sheetId": sheet_id, "startRowIndex": start_row,
                            "startColumnIndex": col - 1, "endColumnIndex": col}
    if end_row is not None:
        grid["endRowIndex"] = end_row
    return {"setDataValidation": {"range": grid, "rule": {
        "condition": {"type": "ONE_OF_LIST",
                      "values": [{"userEnteredValue": c} for c in choices]},
        "inputMessage": "Choose one of: " + ", ".join(choices),
        "strict": False, "showCustomUi": True}}}


def _norm(title: Any) -> str:
    return " ".join(str(title).split()).casefold()


def _columns(header: Sequence[str], added: Mapping[int, str]) -> dict[str, int]:
    """Normalised header title -> 1-based column (first occurrence), with added cells."""
    out: dict[str, int] = {}
    for col, title in [*enumerate(header, start=1), *added.items()]:
        out.setdefault(_norm(title), col)
    return out


def _stretch(sheet: _Sheet, rows: int, cols: int) -> dict[str, Any] | None:
    """The sheet's basic filter reaching to the new grid edge, if it reached the old one."""
    if not sheet.basic_filter:
        return None
    grid = dict(sheet.basic_filter.get("range") or {})
    changed = False
    for key, old, new in (("endRowIndex", sheet.rows, rows), ("endColumnIndex", sheet.cols,
                                                                cols)):
        if new > old and grid.get(key) == old:
            grid[key] = new
            changed = True
    if not changed:
        return None
    grid["sheetId"] = sheet.sheet_id  # omitted from the answer when it is 0
    return {**sheet.basic_filter, "range": grid}


def _batches(data: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Value ranges grouped into requests of at most _MAX_REQUEST_BYTES of JSON each."""
    batch: list[dict[str, Any]] = []
    size = 0
    for value_range in data:
        length = len(json.dumps(value_range, default=str))
        if batch and size + length > _MAX_REQUEST_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(value_range)
        size += length
    if batch:
        yield batch
