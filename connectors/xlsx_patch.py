"""Changed cells and new rows written into an existing workbook's XML, without loading it.

openpyxl reads and writes a whole workbook: for a tracker of 100,000 reports that is minutes,
to change a dozen cells. An .xlsx is a zip of XML parts, and a sheet's rows are `<row r=N>`
elements in row order, so a change touches a few rows' XML: the rest of the part is copied
as bytes. Text goes in as inline strings (`t="inlineStr"`), which Excel, LibreOffice,
openpyxl and calamine all read, so the shared-string table of a file Excel saved is never
touched. A cell keeps its style (a new one takes its column's, as a cell typed into the
column in Excel does, so appended text in a wrapped column wraps); the sheet's dimension,
its filter range and the filter's defined name grow with appended rows, and a column too
narrow for what is written into it is widened (connectors/sheet_layout.py), in the sheet's
`<cols>`, never past the cap and never narrowed.

A date is a serial number of days in a cell whose number format is a date format: a cell
that has none gets the cell format it had with the tracker's date format, added to
styles.xml the first time it is needed (and found there afterwards), so a date keeps the
fast path and the styles part grows by a format or two, once.

What this does not know how to do it declines (`Declined`), and the caller writes with
openpyxl: a new sheet, deleted rows, a date in a workbook counting days from 1904, a sheet
or styles part whose XML uses a namespace prefix, a cell without its reference, a table
(whose range would not grow).
"""

from __future__ import annotations

import math
import numbers
import re
import zipfile
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from xml.sax.saxutils import escape

from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_REVERSE, is_date_format
from openpyxl.utils.datetime import from_excel, to_excel

from connectors.sheet_layout import date_value, number_format, widened
from connectors.sheet_writes import column_letter, column_number
from domain.records import Cell, SheetWrite
from domain.text import sheet_text

MAIN = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"

# OOXML decodes _xHHHH_ in text; text that merely looks like it is escaped (as openpyxl's
# writer in connectors/xlsx_tracker.py does).
_ESCAPE_LIKE = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")
_ROW = re.compile(rb"<row\b[^>]*?\br=\"(\d+)\"[^>]*?(/?)>")
_CELL = re.compile(rb"<c\b([^>]*?)(?:/>|>.*?</c>)", re.S)
_REF = re.compile(rb"\br=\"([A-Z]+)(\d+)\"")
_STYLE = re.compile(rb"\bs=\"(\d+)\"")
_SPANS = re.compile(rb"\s+spans=\"[^\"]*\"")
_DIMENSION = re.compile(rb"<dimension\b[^>]*?\bref=\"([^\"]*)\"[^>]*/>")
_FILTER = re.compile(rb"(<autoFilter\b[^>]*?\bref=\")([^\"]*)(\")")
_SHEET = re.compile(r"<sheet\b[^>]*?/>")
_ATTR = re.compile(r"([\w:]+)=\"([^\"]*)\"")
_BATTR = re.compile(rb"([\w:]+)=\"([^\"]*)\"")
_COLS = re.compile(rb"<cols\b[^>]*?(?:/>|>(.*?)</cols>)", re.S)
_COL = re.compile(rb"<col\b([^>]*?)/?>(?:\s*</col>)?")
_FORMAT_PR = re.compile(rb"<sheetFormatPr\b[^>]*>")
_DEFAULT_WIDTH = 8.43  # Excel's, for a sheet that does not say (baseColWidth 8)


class Declined(Exception):
    """These writes need the full workbook (openpyxl)."""


_TYPE = re.compile(rb"\bt=\"(\w+)\"")
_V = re.compile(rb"<v>([^<]*)</v>")
_T = re.compile(rb"<t\b[^>]*?(?:/>|>([^<]*)</t>)")
_RPH = re.compile(rb"<rPh\b.*?</rPh>", re.S)
_ENCODED = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _text(fragment: bytes) -> str:
    """The text of a string item or inline string, as a spreadsheet program shows it."""
    raw = b"".join(t or b"" for t in _T.findall(_RPH.sub(b"", fragment)))
    return _ENCODED.sub(lambda m: chr(int(m.group(1), 16)), _unescape(raw.decode("utf-8")))


class _Shared:
    """A file's shared strings, parsed on first need (files Excel saved use them)."""

    def __init__(self, book: zipfile.ZipFile) -> None:
        self.book = book
        self.items: list[str] | None = None

    def __getitem__(self, index: int) -> str:
        if self.items is None:
            try:
                xml = self.book.read("xl/sharedStrings.xml")
            except KeyError:
                xml = b""
            self.items = [_text(m.group(0)) for m in
                          re.finditer(rb"<si\b.*?</si>|<si\s*/>", xml, re.S)]
        return self.items[index]


class _Styles:
    """The workbook's cell formats (styles.xml), parsed on first need: which cells show a
    date, and the cell formats a date (or a plain number in a cell that showed a date)
    needs, added once each."""

    def __init__(self, book: zipfile.ZipFile, part: str | None, date1904: bool) -> None:
        self.book, self.part, self.date1904 = book, part, date1904
        self._xml: bytes | None = None
        self._formats: dict[int, str] = {}  # custom numFmtId -> format code
        self._xfs: list[tuple[dict[bytes, bytes], bytes]] = []  # cellXfs: attributes, body
        self._new_formats: list[tuple[int, str]] = []
        self._new_xfs = 0
        self._made: dict[tuple[bytes | None, str | None], bytes | None] = {}
        self._dates: dict[bytes, bool] = {}

    def _load(self) -> None:
        if self._xml is not None:
            return
        if self.part is None:
            raise Declined("a workbook without a styles part")
        xml = self.book.read(self.part)
        if b"<styleSheet" not in xml or b"<cellXfs" not in xml:
            raise Declined("a styles part this writer does not handle")
        for tag in re.findall(rb"<numFmt\b[^>]*>", xml):
            attrs = dict(_BATTR.findall(tag))
            if b"numFmtId" in attrs:
                self._formats[int(attrs[b"numFmtId"])] = _unescape(
                    attrs.get(b"formatCode", b"").decode("utf-8"))
        cell_xfs = re.search(rb"<cellXfs\b[^>]*?(?:/>|>(.*?)</cellXfs>)", xml, re.S)
        assert cell_xfs is not None
        for m in re.finditer(rb"<xf\b([^>]*?)(?:/>|>(.*?)</xf>)", cell_xfs.group(1) or b"",
                             re.S):
            self._xfs.append((dict(_BATTR.findall(m.group(1))), m.group(2) or b""))
        self._xml = xml

    def _code(self, index: bytes | None) -> str:
        """The number format code of cell format `index` ("General" for the default)."""
        self._load()
        i = int(index) if index else 0
        if i >= len(self._xfs):
            return "General"
        fmt = int(self._xfs[i][0].get(b"numFmtId", b"0"))
        return self._formats.get(fmt) or BUILTIN_FORMATS.get(fmt) or "General"

    def is_date(self, index: bytes | None) -> bool:
        """Whether a number in a cell of format `index` shows as a date."""
        if index is None:
            return False
        if index not in self._dates:
            self._dates[index] = is_date_format(self._code(index))
        return self._dates[index]

    def styled(self, base: bytes | None, code: str | None) -> bytes | None:
        """A cell format like `base` that shows a date as `code` (None: a plain number). A
        base that already shows a date keeps its own date format: one a manager chose for
        the column stays."""
        if (base, code) in self._made:
            return self._made[(base, code)]
        if self.date1904 and code is not None:
            # A serial counted from 1904 reads four years off in readers that miss the flag.
            raise Declined("a date in a workbook counting days from 1904")
        if (code is not None) == self.is_date(base):
            made = base
        else:
            self._load()
            i = int(base) if base else 0  # a cell without a style has the first one's
            attrs, body = self._xfs[i] if i < len(self._xfs) else (
                {b"numFmtId": b"0", b"fontId": b"0", b"fillId": b"0", b"borderId": b"0",
                 b"xfId": b"0"}, b"")
            attrs = {**attrs, b"numFmtId": str(self._format_id(code)).encode(),
                     b"applyNumberFormat": b"1"}
            made = str(self._xf_index(attrs, body)).encode()
        self._made[(base, code)] = made
        return made

    def _format_id(self, code: str | None) -> int:
        if code is None:
            return 0
        for fmt, known in [*self._formats.items(), *self._new_formats]:
            if known == code:
                return fmt
        if code in BUILTIN_FORMATS_REVERSE:
            return BUILTIN_FORMATS_REVERSE[code]
        fmt = max([163, *self._formats, *(f for f, _ in self._new_formats)]) + 1
        self._new_formats.append((fmt, code))
        return fmt

    def _xf_index(self, attrs: dict[bytes, bytes], body: bytes) -> int:
        """The index of a cell format with these attributes and body, added if missing
        (the apply* flags aside: openpyxl writes none, Excel writes them)."""
        def key(a: dict[bytes, bytes]) -> dict[bytes, bytes]:
            return {k: v for k, v in a.items() if not k.startswith(b"apply")}

        for i, (have, have_body) in enumerate(self._xfs):
            if key(have) == key(attrs) and have_body == body:
                return i
        self._xfs.append((attrs, body))
        self._new_xfs += 1
        return len(self._xfs) - 1

    def changed(self) -> bytes | None:
        """styles.xml with the formats added, or None when none was."""
        if self._xml is None or not (self._new_formats or self._new_xfs):
            return None
        xml = self._xml
        if self._new_formats:
            tags = b"".join(b'<numFmt numFmtId="%d" formatCode="%s"/>' % (
                fmt, escape(code, {'"': "&quot;"}).encode()) for fmt, code in self._new_formats)
            count = len(self._formats) + len(self._new_formats)
            found = re.search(rb"<numFmts\b[^>]*?(/?)>", xml)
            if found is None or found.group(1):  # none, or <numFmts/>: numFmts comes first
                start = found.start() if found else xml.index(b">", xml.index(
                    b"<styleSheet")) + 1
                end = found.end() if found else start
                xml = xml[:start] + b'<numFmts count="%d">' % count + tags + b"</numFmts>" + (
                    xml[end:])
            else:
                close = xml.index(b"</numFmts>")
                xml = xml[:close] + tags + xml[close:]
                xml = re.sub(rb'(<numFmts\b[^>]*?\bcount=")\d+', b"\\g<1>%d" % count, xml,
                             count=1)
        added = b"".join(
            b"<xf " + b" ".join(k + b'="' + v + b'"' for k, v in attrs.items())
            + (b">" + body + b"</xf>" if body else b"/>")
            for attrs, body in self._xfs[len(self._xfs) - self._new_xfs:])
        if b"</cellXfs>" in xml:
            close = xml.index(b"</cellXfs>")
            xml = xml[:close] + added + xml[close:]
        else:  # <cellXfs/>
            xml = re.sub(rb"<cellXfs\b([^>]*?)/>", lambda m: b"<cellXfs" + m.group(1) + b">"
                         + added + b"</cellXfs>", xml, count=1)
        return re.sub(rb'(<cellXfs\b[^>]*?\bcount=")\d+', b"\\g<1>%d" % len(self._xfs), xml,
                      count=1)


def _stored(cell: bytes | None, shared: _Shared, styles: _Styles) -> Cell:
    """What a cell holds, as the tracker's read gives it (None when empty)."""
    if cell is None:
        return None
    head = cell[:cell.find(b">") + 1]
    kind = _TYPE.search(head)
    kind = kind.group(1) if kind else b"n"
    if kind == b"inlineStr":
        return _text(cell) or None
    value = _V.search(cell)
    if value is None:
        return None
    v = value.group(1).decode()
    if kind == b"s":
        return shared[int(v)] or None
    if kind == b"b":
        return v == "1"
    if kind in (b"str", b"e"):
        return _unescape(v) or None
    number = float(v)
    style = _STYLE.search(head)
    if style and number >= 0 and styles.is_date(style.group(1)):
        return from_excel(number)
    return int(number) if re.fullmatch(r"-?\d+", v) else number


def _same(before: Cell, after: Cell) -> bool:
    when = date_value(after)
    if when is not None:
        # Equal to the second: a serial number of days holds no finer time exactly.
        return isinstance(before, datetime) and round(to_excel(before) * 86_400) == round(
            to_excel(when) * 86_400)
    if isinstance(after, str):
        after = sheet_text(after)
    if after == "":
        after = None
    return before == after and type(before) is type(after)


def _serial(value: datetime | date) -> bytes:
    number = to_excel(value)
    return str(int(number)).encode() if float(number).is_integer() else repr(
        float(number)).encode()


def _cell_xml(ref: str, value: Cell, style: bytes | None, styles: _Styles) -> bytes:
    when = date_value(value)
    if when is not None:
        style = styles.styled(style, number_format(when))
    elif (isinstance(value, numbers.Real) and style is not None
          and styles.is_date(style)):
        style = styles.styled(style, None)  # a number where a date was shows as a number
    s = b' s="' + style + b'"' if style else b""
    head = b'<c r="' + ref.encode() + b'"' + s
    if value is None or value == "":
        return head + b"/>"
    if when is not None:
        return head + b"><v>" + _serial(when) + b"</v></c>"
    if isinstance(value, bool):
        return head + b' t="b"><v>' + (b"1" if value else b"0") + b"</v></c>"
    if isinstance(value, numbers.Integral):
        return head + b"><v>" + str(int(value)).encode() + b"</v></c>"
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise Declined("a number a cell cannot hold")
        return head + b"><v>" + repr(float(value)).encode() + b"</v></c>"
    if isinstance(value, str):
        text = _ESCAPE_LIKE.sub("_x005F_", sheet_text(value))
        space = b' xml:space="preserve"' if text != text.strip() or "\n" in text else b""
        return (head + b' t="inlineStr"><is><t' + space + b">"
                + escape(text).encode() + b"</t></is></c>")
    raise Declined(f"a {type(value).__name__} value this writer does not know")


def _row_xml(row: int, cells: dict[int, bytes], attrs: bytes = b"") -> bytes:
    body = b"".join(cells[c] for c in sorted(cells))
    return b'<row r="' + str(row).encode() + b'"' + attrs + b">" + body + b"</row>"


def _patch_row(xml: bytes, row: int, wanted: dict[int, Cell], new_style: dict[int, bytes],
               shared: _Shared, styles: _Styles) -> bytes | None:
    """One `<row>` element with `wanted` (column -> value) set, other cells kept; None when
    every cell already holds its wanted value. A cell the row lacks takes `new_style` of its
    column (the header's in row 1, else the column's own)."""
    start = _ROW.match(xml)
    assert start is not None
    attrs = xml[len(b"<row"):start.end() - (2 if start.group(2) else 1)]
    attrs = _SPANS.sub(b"", re.sub(rb"\s*\br=\"\d+\"", b"", attrs, count=1))
    cells: dict[int, bytes] = {}
    cell_styles: dict[int, bytes | None] = {}
    for m in _CELL.finditer(xml, start.end()):
        ref = _REF.search(m.group(1))
        if ref is None:
            raise Declined("a cell without its reference")
        col = column_number(ref.group(1))
        cells[col] = m.group(0)
        style = _STYLE.search(m.group(1))
        cell_styles[col] = style.group(1) if style else None
    changed = False
    for col, value in wanted.items():
        if _same(_stored(cells.get(col), shared, styles), value):
            continue
        style = cell_styles[col] if col in cell_styles else new_style.get(col)
        cells[col] = _cell_xml(f"{column_letter(col)}{row}", value, style, styles)
        changed = True
    return _row_xml(row, cells, attrs) if changed else None


def _range_end(ref: bytes) -> tuple[int, int]:
    """The last column and row of a range like A1:AG95 (or a single cell)."""
    last = ref.split(b":")[-1]
    m = re.fullmatch(rb"\$?([A-Z]+)\$?(\d+)", last)
    return (column_number(m.group(1)), int(m.group(2))) if m else (1, 1)


class _Columns:
    """A sheet's `<cols>`: each column's width and default style, as (first, last,
    attributes) runs in column order, as the element holds them."""

    def __init__(self, head: bytes) -> None:
        found = _COLS.search(head)
        self.runs: list[tuple[int, int, dict[bytes, bytes]]] = []
        for m in _COL.finditer((found.group(1) or b"") if found else b""):
            attrs = dict(_BATTR.findall(m.group(1)))
            if b"min" in attrs and b"max" in attrs:
                self.runs.append((int(attrs[b"min"]), int(attrs[b"max"]), attrs))
        fmt = _FORMAT_PR.search(head)
        width = dict(_BATTR.findall(fmt.group(0))).get(b"defaultColWidth") if fmt else None
        self.default = float(width) if width else _DEFAULT_WIDTH

    def _run(self, col: int) -> dict[bytes, bytes] | None:
        return next((attrs for first, last, attrs in self.runs if first <= col <= last), None)

    def styles(self) -> dict[int, bytes]:
        """Column -> the style Excel gives a cell typed into it, for columns that have one."""
        return {col: attrs[b"style"] for first, last, attrs in self.runs if b"style" in attrs
                for col in range(first, min(last, 16_384) + 1)}

    def widen(self, needed: dict[int, int]) -> bool:
        """Make each column at least `needed[col]` characters wide; True when one changed.
        A hidden column stays hidden (and as wide as it was)."""
        changed = False
        for col, width in needed.items():
            attrs = self._run(col)
            if attrs is not None and attrs.get(b"hidden") in (b"1", b"true"):
                continue
            have = float(attrs[b"width"]) if attrs and b"width" in attrs else self.default
            if have >= width:
                continue
            own = {**(attrs or {}), b"min": str(col).encode(), b"max": str(col).encode(),
                   b"width": str(width).encode(), b"customWidth": b"1"}
            own.pop(b"bestFit", None)
            runs = []
            for first, last, run in self.runs:
                if first <= col <= last:  # split the run around the column
                    if first < col:
                        runs.append((first, col - 1, {**run, b"max": str(col - 1).encode()}))
                    if col < last:
                        runs.append((col + 1, last, {**run, b"min": str(col + 1).encode()}))
                else:
                    runs.append((first, last, run))
            self.runs = sorted([*runs, (col, col, own)], key=lambda r: r[0])
            changed = True
        return changed

    def xml(self) -> bytes:
        return b"<cols>" + b"".join(
            b"<col " + b" ".join(k + b'="' + v + b'"' for k, v in attrs.items()) + b"/>"
            for _, _, attrs in self.runs) + b"</cols>"


def patch_sheet(xml: bytes, write: SheetWrite, shared: _Shared, styles: _Styles
                ) -> tuple[bytes, int, int] | None:
    """The sheet part with `write` applied, with the last column and row it now spans; None
    when no value differs."""
    if write.create or write.delete_rows:
        raise Declined("a new sheet or deleted rows")
    root = xml[:xml.index(b">", xml.index(b"<worksheet")) + 1] if b"<worksheet" in xml else b""
    if b'xmlns="' + MAIN + b'"' not in root or b"<tableParts" in xml:
        raise Declined("a sheet layout this writer does not handle")
    data_start = xml.find(b"<sheetData")
    data_end = xml.find(b"</sheetData>")
    if data_start < 0:
        raise Declined("no sheet data")
    head_end = xml.index(b">", data_start) + 1
    if xml[head_end - 2:head_end] == b"/>":  # <sheetData/>: no rows at all
        xml = xml[:head_end - 2] + b"></sheetData>" + xml[head_end:]
        head_end -= 1
        data_end = head_end
    starts = {int(m.group(1)): m for m in _ROW.finditer(xml, head_end, data_end)}

    def span(row: int) -> tuple[int, int]:
        m = starts[row]
        end = m.end() if m.group(2) else xml.index(b"</row>", m.end()) + len(b"</row>")
        return m.start(), end

    # The last row holding a cell (as openpyxl counts rows): new rows go after it.
    last_row = next((r for r in sorted(starts, reverse=True)
                     if b"<c" in xml[slice(*span(r))]), 0)
    dimension = _DIMENSION.search(xml, 0, data_start)
    last_col = _range_end(dimension.group(1))[0] if dimension else 1

    wanted: dict[int, dict[int, Cell]] = {}
    for col, title in write.header.items():
        wanted.setdefault(1, {})[col] = title
    for (row, col), value in write.cells.items():
        wanted.setdefault(row, {})[col] = value
    # Appended rows follow every row holding a value, those the cells just set included.
    start = max([last_row, 1, *(r for (r, _), v in write.cells.items()
                                if v is not None and v != "")]) + 1
    for i, line in enumerate(write.append):
        filled = {c: v for c, v in enumerate(line, start=1) if v is not None and v != ""}
        wanted.setdefault(start + i, {}).update(filled)
    header_style = None
    if 1 in starts:
        first = _STYLE.search(xml, *span(1))
        header_style = first.group(1) if first else None
    columns = _Columns(xml[:data_start])
    column_styles = columns.styles()
    header_styles = dict.fromkeys(wanted.get(1, {}), header_style) if header_style else {}

    # Slices of the sheet as views, joined once: the sheet of a long history is over 100 MB
    # of XML, and each copy of it counts in the run's peak memory.
    view = memoryview(xml)
    pieces: list[bytes | memoryview] = []
    at = head_end
    inserted: list[tuple[int, bytes]] = []  # rows the sheet did not have, in order
    for row in sorted(wanted):
        cells = wanted[row]
        if row in starts:
            s, e = span(row)
            patched = _patch_row(xml[s:e], row, cells,
                                 header_styles if row == 1 else column_styles, shared, styles)
            if patched is not None:
                pieces += [view[at:s], patched]
                at = e
        else:
            patched = _patch_row(b'<row r="%d">' % row + b"</row>", row, cells,
                                 header_styles if row == 1 else column_styles, shared, styles)
            if patched is not None:
                inserted.append((row, patched))
        if patched is not None:
            last_col = max([last_col, *cells])
            if any(v is not None and v != "" for v in cells.values()):
                last_row = max(last_row, row)
    if not pieces and not inserted:
        return None
    pieces.append(view[at:data_end])
    present = max(starts, default=0)
    # Rows past every row element go at the end; rows in a gap of a sparse sheet in place.
    middle = [r for r in inserted if r[0] < present]
    if middle:
        pieces = [_insert_rows(b"".join(pieces), middle)]
    pieces += [xml for row, xml in inserted if row > present]
    # The dimension and the column widths come before the rows, the filter after them.
    head, tail = xml[:head_end], xml[data_end:]
    ref = f"A1:{column_letter(last_col)}{max(last_row, 1)}".encode()
    head = _DIMENSION.sub(lambda m: m.group(0).replace(m.group(1), ref), head, count=1)
    tail = _FILTER.sub(lambda m: m.group(1) + ref + m.group(3), tail, count=1)
    if columns.widen(widened(write)):
        rows_at = head.index(b"<sheetData")  # moved if the dimension's text grew
        found = _COLS.search(head, 0, rows_at)
        at, end = (found.start(), found.end()) if found else (rows_at,) * 2
        head = head[:at] + columns.xml() + head[end:]
    return b"".join([head, *pieces, tail]), last_col, last_row


def _insert_rows(body: bytes, inserted: list[tuple[int, bytes]]) -> bytes:
    """Rows placed before the first existing row numbered after them."""
    if not inserted:
        return body
    existing = [(int(m.group(1)), m.start()) for m in _ROW.finditer(body)]
    pieces, at = [], 0
    pending = list(inserted)
    for number, pos in existing:
        while pending and pending[0][0] < number:
            pieces += [body[at:pos], pending.pop(0)[1]]
            at = pos
    pieces.append(body[at:])
    pieces += [xml for _, xml in pending]
    return b"".join(pieces)


def _targets(book: zipfile.ZipFile) -> dict[str | None, tuple[str, str]]:
    """The workbook's relationships: id -> (type, part name in the zip)."""
    rels = book.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    targets = {}
    for rel in re.findall(r"<Relationship\b[^>]*?/>", rels):
        attrs = dict(_ATTR.findall(rel))
        target = attrs.get("Target", "")
        part = target.lstrip("/") if target.startswith("/") else str(
            PurePosixPath("xl") / target)
        targets[attrs.get("Id")] = (attrs.get("Type", ""), part)
    return targets


def _sheet_parts(book: zipfile.ZipFile) -> dict[str, tuple[str, int]]:
    """Sheet title -> (part name in the zip, its position among the sheets)."""
    workbook = book.read("xl/workbook.xml").decode("utf-8")
    targets = {rid: part for rid, (_, part) in _targets(book).items()}
    sheets = {}
    for i, tag in enumerate(_SHEET.findall(workbook)):
        attrs = dict(_ATTR.findall(tag))
        rid = next((v for k, v in attrs.items() if k.endswith(":id")), None)
        name = _unescape(attrs.get("name", ""))
        if rid in targets:
            sheets[name] = (targets[rid], i)
    return sheets


def _unescape(text: str) -> str:
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


def _filter_names(workbook: bytes, spans: dict[int, tuple[str, int, int]]) -> bytes:
    """The workbook's `_xlnm._FilterDatabase` names, each covering its sheet's new range."""
    def grow(m: re.Match[bytes]) -> bytes:
        sheet = int(m.group(2))
        if sheet not in spans:
            return m.group(0)
        title, col, row = spans[sheet]
        quoted = escape("'" + title.replace("'", "''") + "'").encode()
        return (m.group(1) + quoted + f"!$A$1:${column_letter(col)}${row}".encode()
                + m.group(4))
    return re.sub(rb"(<definedName\b[^>]*?name=\"_xlnm._FilterDatabase\"[^>]*?"
                  rb"localSheetId=\"(\d+)\"[^>]*>)([^<]*)(</definedName>)", grow, workbook)


def sheet_xml(source: str | Path, titles: Sequence[str]) -> dict[str, bytes]:
    """The XML of each sheet titled in `titles` that the workbook at `source` has, by part
    name: read with the values, it spares `patch_workbook` inflating it again."""
    with zipfile.ZipFile(source) as book:
        sheets = _sheet_parts(book)
        return {sheets[t][0]: book.read(sheets[t][0]) for t in titles if t in sheets}


def patch_workbook(source: str | Path, writes: Sequence[SheetWrite],
                   xml: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """The parts of the workbook at `source` that `writes` change, as they become (empty
    when no value differs). `xml`: sheet parts already read from that same file
    (`sheet_xml`). Raises Declined when openpyxl must write instead (a part this writer
    cannot read too: openpyxl then says what is wrong with the file)."""
    xml = xml or {}
    try:
        with zipfile.ZipFile(source) as book:
            sheets = _sheet_parts(book)
            shared = _Shared(book)
            workbook = book.read("xl/workbook.xml")
            styles = _Styles(book, next((part for kind, part in _targets(book).values()
                                         if kind.endswith("/styles")), None),
                             re.search(rb"<workbookPr\b[^>]*\bdate1904=\"(?:1|true)\"",
                                       workbook) is not None)
            parts: dict[str, bytes] = {}
            spans: dict[int, tuple[str, int, int]] = {}
            for w in writes:
                if w.spec.title not in sheets:
                    raise Declined("a new sheet")
                part, position = sheets[w.spec.title]
                patched = patch_sheet(parts.get(part) or xml.get(part) or book.read(part), w,
                                      shared, styles)
                if patched is not None:
                    parts[part], col, row = patched
                    spans[position] = (w.spec.title, col, row)
            if parts:
                parts["xl/workbook.xml"] = _filter_names(workbook, spans)
                formats = styles.changed()
                if formats is not None:
                    assert styles.part is not None
                    parts[styles.part] = formats
            return parts
    except (OSError, KeyError, ValueError, IndexError, AssertionError,
            zipfile.BadZipFile) as exc:
        raise Declined(f"cannot patch this workbook ({type(exc).__name__})") from None

