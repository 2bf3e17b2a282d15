"""Changed cells and new rows written into an existing workbook's XML, without loading it.

openpyxl reads and writes a whole workbook: for a tracker of 100,000 reports that is minutes,
to change a dozen cells. An .xlsx is a zip of XML parts, and a sheet's rows are `<row r=N>`
elements in row order, so a change touches a few rows' XML: the rest of the part is copied
as bytes. Text goes in as inline strings (`t="inlineStr"`), which Excel, LibreOffice,
openpyxl and calamine all read, so the shared-string table of a file Excel saved is never
touched. A cell keeps its style; the sheet's dimension, its filter range and the filter's
defined name grow with appended rows.

What this does not know how to do it declines (`Declined`), and the caller writes with
openpyxl: a new sheet, deleted rows, a date value (it needs a number format), a sheet whose
XML uses a namespace prefix, a cell without its reference, a table (whose range would not
grow).
"""

from __future__ import annotations

import math
import numbers
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from xml.sax.saxutils import escape

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


def _stored(cell: bytes | None, shared: _Shared) -> Cell:
    """What a cell holds, as the tracker's read gives it (None when empty)."""
    if cell is None:
        return None
    kind = _TYPE.search(cell[:cell.find(b">") + 1])
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
    return int(number) if re.fullmatch(r"-?\d+", v) else number


def _same(before: Cell, after: Cell) -> bool:
    if isinstance(after, str):
        after = sheet_text(after)
    if after == "":
        after = None
    return before == after and type(before) is type(after)


def _cell_xml(ref: str, value: Cell, style: bytes | None) -> bytes:
    s = b' s="' + style + b'"' if style else b""
    head = b'<c r="' + ref.encode() + b'"' + s
    if value is None or value == "":
        return head + b"/>"
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
    raise Declined(f"a {type(value).__name__} value needs a number format")


def _row_xml(row: int, cells: dict[int, bytes], attrs: bytes = b"") -> bytes:
    body = b"".join(cells[c] for c in sorted(cells))
    return b'<row r="' + str(row).encode() + b'"' + attrs + b">" + body + b"</row>"


def _patch_row(xml: bytes, row: int, wanted: dict[int, Cell], header_style: bytes | None,
               shared: _Shared) -> bytes | None:
    """One `<row>` element with `wanted` (column -> value) set, other cells kept; None when
    every cell already holds its wanted value."""
    start = _ROW.match(xml)
    assert start is not None
    attrs = xml[len(b"<row"):start.end() - (2 if start.group(2) else 1)]
    attrs = _SPANS.sub(b"", re.sub(rb"\s*\br=\"\d+\"", b"", attrs, count=1))
    cells: dict[int, bytes] = {}
    styles: dict[int, bytes | None] = {}
    for m in _CELL.finditer(xml, start.end()):
        ref = _REF.search(m.group(1))
        if ref is None:
            raise Declined("a cell without its reference")
        col = column_number(ref.group(1))
        cells[col] = m.group(0)
        style = _STYLE.search(m.group(1))
        styles[col] = style.group(1) if style else None
    changed = False
    for col, value in wanted.items():
        if _same(_stored(cells.get(col), shared), value):
            continue
        style = styles.get(col, header_style if row == 1 else None)
        cells[col] = _cell_xml(f"{column_letter(col)}{row}", value, style)
        changed = True
    return _row_xml(row, cells, attrs) if changed else None


def _range_end(ref: bytes) -> tuple[int, int]:
    """The last column and row of a range like A1:AG95 (or a single cell)."""
    last = ref.split(b":")[-1]
    m = re.fullmatch(rb"\$?([A-Z]+)\$?(\d+)", last)
    return (column_number(m.group(1)), int(m.group(2))) if m else (1, 1)


def patch_sheet(xml: bytes, write: SheetWrite, shared: _Shared
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

    pieces: list[bytes] = []
    at = head_end
    inserted: list[tuple[int, bytes]] = []  # rows the sheet did not have, in order
    for row in sorted(wanted):
        cells = wanted[row]
        if row in starts:
            s, e = span(row)
            patched = _patch_row(xml[s:e], row, cells, header_style, shared)
            if patched is not None:
                pieces += [xml[at:s], patched]
                at = e
        else:
            patched = _patch_row(b'<row r="%d">' % row + b"</row>", row, cells, header_style,
                                 shared)
            if patched is not None:
                inserted.append((row, patched))
        if patched is not None:
            last_col = max([last_col, *cells])
            if any(v is not None and v != "" for v in cells.values()):
                last_row = max(last_row, row)
    if not pieces and not inserted:
        return None
    pieces.append(xml[at:data_end])
    body = b"".join(pieces)
    present = max(starts, default=0)
    # Rows past every row element go at the end; rows in a gap of a sparse sheet in place.
    body = _insert_rows(body, [r for r in inserted if r[0] < present]) + b"".join(
        xml for row, xml in inserted if row > present)
    out = xml[:head_end] + body + xml[data_end:]
    ref = f"A1:{column_letter(last_col)}{max(last_row, 1)}".encode()
    out = _DIMENSION.sub(lambda m: m.group(0).replace(m.group(1), ref), out, count=1)
    out = _FILTER.sub(lambda m: m.group(1) + ref + m.group(3), out, count=1)
    return out, last_col, last_row


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


def _sheet_parts(book: zipfile.ZipFile) -> dict[str, tuple[str, int]]:
    """Sheet title -> (part name in the zip, its position among the sheets)."""
    workbook = book.read("xl/workbook.xml").decode("utf-8")
    rels = book.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    targets = {}
    for rel in re.findall(r"<Relationship\b[^>]*?/>", rels):
        attrs = dict(_ATTR.findall(rel))
        target = attrs.get("Target", "")
        part = target.lstrip("/") if target.startswith("/") else str(
            PurePosixPath("xl") / target)
        targets[attrs.get("Id")] = part
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


def patch_workbook(source: str | Path, writes: Sequence[SheetWrite]) -> dict[str, bytes]:
    """The parts of the workbook at `source` that `writes` change, as they become (empty
    when no value differs). Raises Declined when openpyxl must write instead (a part this
    writer cannot read too: openpyxl then says what is wrong with the file)."""
    try:
        with zipfile.ZipFile(source) as book:
            sheets = _sheet_parts(book)
            shared = _Shared(book)
            parts: dict[str, bytes] = {}
            spans: dict[int, tuple[str, int, int]] = {}
            for w in writes:
                if w.spec.title not in sheets:
                    raise Declined("a new sheet")
                part, position = sheets[w.spec.title]
                patched = patch_sheet(parts.get(part) or book.read(part), w, shared)
                if patched is not None:
                    parts[part], col, row = patched
                    spans[position] = (w.spec.title, col, row)
            if parts:
                parts["xl/workbook.xml"] = _filter_names(book.read("xl/workbook.xml"), spans)
            return parts
    except (OSError, KeyError, ValueError, IndexError, AssertionError,
            zipfile.BadZipFile) as exc:
        raise Declined(f"cannot patch this workbook ({type(exc).__name__})") from None


def write_parts(source: str | Path, target: str | Path, parts: dict[str, bytes]) -> None:
    """Copy the workbook at `source` to `target` with `parts` replaced."""
    with zipfile.ZipFile(source) as book, zipfile.ZipFile(target, "w") as out:
        for info in book.infolist():
            data = parts.get(info.filename)
            out.writestr(info, book.read(info) if data is None else data,
                         compress_type=info.compress_type)
