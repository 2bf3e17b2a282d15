"""Form sources read from files: a Google Forms CSV export and a Microsoft Forms Excel export.

Both give one row per response and one column per question title; the metadata columns
(timestamps, respondent) are taken here and everything else is handed on as answers,
uninterpreted, so the mapping to report fields stays in one place (transforms/normalize).

A value marks its own row, never the file: an unreadable time is noted on its response, a
broken line is kept as it was (quarantined) and the rest is read. Only a file that cannot be
read at all (missing, no permission, not a responses export) raises.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from python_calamine import CalamineWorkbook

from connectors.base import Answer, Pull, RawResponse
from connectors.calamine_rows import openpyxl_row
from connectors.errors import SourceError
from domain.times import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    NO_PROOF,
    Order,
    Proofs,
    Read,
    decide_order,
    localise,
    order_proofs,
    read_column,
    read_datetime,
)

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# Windows-1252 leaves five bytes undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D): each is kept as
# the control character of the same number, as browsers do, rather than failing the file.
_CP1252 = {b: bytes([b]).decode("cp1252", errors="replace").replace("\ufffd", chr(b))
           for b in range(0x80, 0xA0)}


def parse_google_timestamp(value: str, tz: ZoneInfo, dayfirst: bool) -> pd.Timestamp | None:
    """One Google Forms timestamp as an aware UTC time, or None when it cannot be read.

    The source reads whole columns (`domain.times.read_column`), so the day order of a
    sheet-locale value (`03/07/2026 10:00:00`) comes from its column; alone, the value
    decides and `dayfirst` breaks a tie. Never raises.
    """
    return read_column([value], tz, dayfirst).values[0].value


def _cell_text(value: object) -> str | None:
    """A spreadsheet cell as the text a respondent typed; dates/times in ISO form."""
    if type(value) is str:  # most cells, and an export has millions: first
        return value.strip() or None
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _read_error(name: str, path: Path, exc: Exception) -> SourceError:
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{name}: export file not found: {path}")
    if isinstance(exc, PermissionError):
        return SourceError(f"{name}: no permission to read {path}")
    return SourceError(f"{name}: cannot read {path}: {exc}")


def _read_bytes(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _read_error(name, path, exc) from None


def _digest(raw: bytes) -> str:
    """An export's fingerprint (hashing costs a fraction of parsing it)."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _key(title: str) -> str:
    """A header title compared as a person reads it: no case, spaces or byte-order mark."""
    return "".join(title.replace("\ufeff", "").split()).casefold()


def _column_names(header: Sequence[object]) -> list[str]:
    """Header cells named as pandas named them when it read these exports, so stored answers
    keep their question keys: an empty title is `Unnamed: <i>`, a repeated one gets `.1`,
    `.2`, ... (skipping a name already in the header), named columns first."""
    names = ["" if c is None else str(c) for c in header]
    unnamed = [i for i, n in enumerate(names) if n == ""]
    for i in unnamed:
        names[i] = f"Unnamed: {i}"
    skip = set(unnamed)
    counts: dict[str, int] = {}
    for i in [i for i in range(len(names)) if i not in skip] + unnamed:
        col = old = names[i]
        cur = counts.get(col, 0)
        while cur > 0:
            counts[old] = cur + 1
            col = f"{old}.{cur}"
            cur = cur + 1 if col in names else counts.get(col, 0)
        names[i] = col
        counts[col] = cur + 1
    return names


def _time_notes(read: Read) -> tuple[str, ...]:
    """The notes a submission time read gives its response."""
    if read.value is None:
        return (f"invalid: Submitted: {read.problem}; dated by when it was first received",)
    if read.note:
        return (f"note: Submitted: {read.note}",)
    return ()


def _response_id(stamp: str, email: str | None, seen: dict[str, int]) -> str:
    """A Google CSV response's id: its timestamp text, respondent and position among
    identical ones. Changing this re-files every stored response as new."""
    base = f"{stamp}|{email or ''}"
    seen[base] = seen.get(base, 0) + 1
    return "g-" + hashlib.sha256(f"{base}|{seen[base]}".encode()).hexdigest()[:20]


# -- reading CSV text -------------------------------------------------------------------------


def _decode(raw: bytes) -> tuple[str, str | None]:
    """The text of an export and, when it is not plain UTF-8, what it was read as.

    Google writes UTF-8; a file re-saved by a spreadsheet may be UTF-16 ("Unicode text",
    sometimes without a byte-order mark) or the Windows code page.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        le = raw.startswith(codecs.BOM_UTF16_LE)
        return _utf16(raw[2:], "utf-16-le" if le else "utf-16-be")
    elif order := _utf16_without_bom(raw):
        return _utf16(raw, order)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("latin-1").translate(_CP1252), "Windows-1252"


def _utf16(raw: bytes, codec: str) -> tuple[str, str]:
    try:
        return raw.decode(codec), "UTF-16"
    except UnicodeDecodeError:  # an odd byte count or a broken pair: mark, don't refuse
        return raw.decode(codec, errors="replace"), "damaged UTF-16"


def _utf16_without_bom(raw: bytes) -> str | None:
    """"utf-16-le"/"utf-16-be" when the first bytes alternate text and NUL as UTF-16 does
    for the ASCII of a header line; None otherwise."""
    head = raw[:200]
    head = head[: len(head) // 2 * 2]
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


@dataclass(frozen=True)
class _Record:
    """One CSV record: the physical line it starts on (1-based), its cells, its text."""

    line: int
    fields: list[str]
    raw: str
    problem: str | None = None  # why its cells cannot be told apart, beyond their count


def _records(lines: list[str], delimiter: str, width: int | None = None,
             whole: Callable[[list[str]], bool] | None = None,
             before: int = 0) -> Iterator[_Record]:
    """The non-blank records of CSV text (lines with their endings), header first; `before`
    lines of the file precede `lines` (they number the records).

    The csv module keeps line breaks and NULs inside quoted cells. A quote mark that is
    never closed makes it read the next line into the same record. So when a record of the
    wrong `width` spans lines and a `whole` record starts on its second line, only its first
    line is set aside and reading resumes there: a stray quote costs one line, not the
    report after it too.
    """
    pos = 0

    def feed() -> Iterator[str]:
        nonlocal pos
        while pos < len(lines):
            pos += 1
            yield lines[pos - 1]

    reader = csv.reader(feed(), delimiter=delimiter)
    while True:
        start = pos
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # not expected with these settings; kept, not fatal
            yield _Record(before + start + 1, [], _joined(lines[start:pos]),
                          f"cannot be read as CSV ({exc})")
            continue
        if not any(f.strip() for f in fields):
            continue  # a blank line
        if whole is not None and pos - start > 1 and len(fields) != width:
            after = next(csv.reader(iter(lines[start + 1:]), delimiter=delimiter), None)
            if after is not None and whole(after):
                first = lines[start]
                yield _Record(before + start + 1,
                              next(csv.reader([first], delimiter=delimiter)),
                              _joined([first]), "has a quote mark that is not closed")
                pos = start + 1
                reader = csv.reader(feed(), delimiter=delimiter)
                continue
        yield _Record(before + start + 1, fields, _joined(lines[start:pos]))


def _listed(lines: list[str], more: str, limit: int = 10, total: int | None = None
            ) -> list[str]:
    """Warnings one a line, the first `limit` of them, then how many `more` (of `total`,
    when `lines` holds only the first of them)."""
    total = len(lines) if total is None else total
    return lines[:limit] + ([f"{total - limit} {more}"] if total > limit else [])


def _joined(lines: list[str]) -> str:
    return "".join(lines).rstrip("\r\n")


def _misquoted(raw: str, delimiter: str) -> bool:
    """Whether a record has a quote mark where CSV allows none (`"a"b`): the csv module
    reads it anyway, dropping that mark, so the cells may not be exactly as written."""
    try:
        for _ in csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error:
        return True
    return False


# An export is downloaded whole each time, but between two downloads it mostly grows. Its
# watermark keeps, with the file's digest, what the parse of that version leaves for reading
# only what is appended after it: where the parsed part ends and the column-wide findings
# (day-order proofs, the columns answered, what was said of it). A new version that begins
# with the old one is read from there; anything else (a changed or removed response, a new
# column, new values that change how a column reads, the daily full read) is parsed whole.
Resume = dict[str, Any]


def _mark(watermark: str | None) -> tuple[str | None, Resume | None]:
    """The file digest and resume point a watermark holds. A watermark from before resume
    points is the digest alone; one that is not ours (a store edited by hand) holds none."""
    if not watermark or not watermark.startswith("{"):
        return watermark, None
    try:
        mark = json.loads(watermark)
        return mark["digest"], mark.get("resume")
    except (ValueError, TypeError, KeyError):
        return None, None


class _ExportFile:
    """A responses export file, parsed again only when its bytes changed, and then only
    from where the last parse ended if the file still begins with what it read (the daily
    full read passes no watermark, so the whole file is parsed once a day anyway)."""

    name: str
    path: Path

    def pull(self, watermark: str | None = None) -> Pull:
        raw = _read_bytes(self.name, self.path)
        digest, resume = _mark(watermark)
        now = _digest(raw)
        if now == digest:
            return Pull(responses=[], watermark=watermark, unchanged=True)
        try:
            pulled, resume = self._read(raw, digest, resume)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if resume is None or isinstance(exc, SourceError):
                raise
            pulled, resume = self._read(raw, None, None)  # a damaged resume point: whole
        mark = json.dumps({"digest": now, "resume": resume}) if resume else now
        return Pull(pulled.responses, pulled.questions, mark, pulled.warnings)

    def _read(self, raw: bytes, digest: str | None, resume: Resume | None
              ) -> tuple[Pull, Resume | None]:
        """The responses of `raw` (only those after `resume`, when `raw` begins with the
        version of digest `digest` it was taken from) and where the next read resumes."""
        raise NotImplementedError


@dataclass
class _CsvSoFar:
    """What the parse of a CSV export leaves for reading the lines appended to it."""

    end: int = 0  # bytes parsed: the whole file, which ended a record
    lines: int = 0  # physical lines in those bytes
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    proofs: Proofs = NO_PROOF  # of the Timestamp column
    latest: str | None = None  # its latest time read (ISO): a later one is a new stamp
    answered: list[int] = field(default_factory=list)  # columns with an answer
    broken: list[str] = field(default_factory=list)  # the first broken lines, why
    broken_count: int = 0


class _CsvLayout:
    """Where a CSV export's columns are, from its header."""

    def __init__(self, delimiter: str, fields: list[str]) -> None:
        keys = [_key(f) for f in fields]
        meta = {k: keys.index(k) for k in map(_key, GoogleFormsCsvSource.META) if k in keys}
        self.delimiter, self.fields, self.width = delimiter, fields, len(fields)
        self.at, self.email_at = meta["timestamp"], meta.get("emailaddress")
        self.columns = [(i, n) for i, n in enumerate(_column_names(fields))
                        if i not in meta.values()]


def _resume_at(raw: bytes, body: list[_Record], layout: _CsvLayout, so_far: _CsvSoFar
               ) -> Resume | None:
    """Where the next read of an export (UTF-8) may resume: at its end, only when that
    ends a record read whole (a line cut short, or a quote left open, may go on)."""
    whole = not body or (body[-1].problem is None and len(body[-1].fields) == layout.width
                         and not _open_at_end(body[-1].raw, layout.delimiter))
    if not (whole and raw.endswith((b"\n", b"\r"))):
        return None
    return asdict(replace(so_far, end=len(raw)))


_NEXT = "nearmiss: the next line"


def _open_at_end(raw: str, delimiter: str) -> bool:
    """Whether a record's text ends inside a quoted cell. The csv module closes the cell at
    the end of the file, so the record can have the right number of cells; but a line
    appended later goes on in that cell, which a read of the appended lines alone would
    not see."""
    rows = list(csv.reader(io.StringIO(f"{raw}\n{_NEXT}\n", newline=""), delimiter=delimiter))
    return rows[-1:] != [[_NEXT]]


class GoogleFormsCsvSource(_ExportFile):
    """A "Download responses (.csv)" export: Timestamp, optional Email Address, questions.

    The export has no response id. A response is identified by its timestamp and respondent
    (plus its position among identical ones), so a re-download adds nothing new; a reporter
    who adds to an earlier report does so by quoting its reference in the form. Answers are
    kept as typed: `N/A`, `None` and `null` are answers, only empty cells are blank.
    """

    META = ("Timestamp", "Email Address", "Score")

    def __init__(self, name: str, path: Path, tz: ZoneInfo, dayfirst: bool = True) -> None:
        self.name, self.path, self.tz, self.dayfirst = name, Path(path), tz, dayfirst

    def _read(self, raw: bytes, digest: str | None, resume: Resume | None
              ) -> tuple[Pull, Resume | None]:
        # csv's default cap (128 KiB a cell) would stop the file on one long answer.
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        if resume is not None and (appended := self._appended(raw, digest, _CsvSoFar(
                **{**resume, "proofs": tuple(resume["proofs"])}))) is not None:
            return appended
        text, encoding = _decode(raw)
        warnings: list[str] = []
        if encoding:
            warnings.append(f"read as {encoding} text, not UTF-8 ({self.path.name})" + {
                "Windows-1252": ": accented letters and symbols may be wrong; the form's own "
                                "download is UTF-8",
                "damaged UTF-16": ": bytes that could not be read are shown as �"}.get(
                    encoding, ""))
        text = text.removeprefix("\ufeff")
        if not text.strip():
            return Pull(responses=[], questions={},
                        warnings=[*warnings, f"{self.path.name} is empty: no responses"]), None
        lines = io.StringIO(text, newline="").readlines()
        delimiter, header = self._header(raw, lines)
        layout = _CsvLayout(delimiter, header.fields)
        body = list(_records(lines, delimiter, layout.width, self._whole(layout)))[1:]
        pulled, so_far = self._body(layout, body, _CsvSoFar(), appended=False)
        pulled.warnings[:0] = warnings
        return pulled, _resume_at(raw, body, layout, replace(so_far, lines=len(lines))
                                  ) if not encoding else None

    def _appended(self, raw: bytes, digest: str | None, prior: _CsvSoFar
                  ) -> tuple[Pull, Resume | None] | None:
        """The responses of the lines appended to the version read last, or None when
        `raw` does not begin with it or the new lines must be read with the rest."""
        end = prior.end
        if (len(raw) <= end or _digest(memoryview(raw)[:end]) != digest
                or raw[end - 1:end + 1] == b"\r\n"):  # one line ending, cut in two
            return None
        try:
            text = raw[end:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = io.StringIO(text, newline="").readlines()
        layout = _CsvLayout(prior.delimiter, prior.header)
        body = list(_records(lines, layout.delimiter, layout.width, self._whole(layout),
                             before=prior.lines))
        read = self._body(layout, body, prior, appended=True)
        if read is None:
            return None
        pulled, so_far = read
        return pulled, _resume_at(raw, body, layout,
                                  replace(so_far, lines=prior.lines + len(lines)))

    def _whole(self, layout: _CsvLayout) -> Callable[[list[str]], bool]:
        def whole(fields: list[str]) -> bool:
            """A response's line: as many cells as the header and a time where it belongs."""
            return (len(fields) == layout.width
                    and read_datetime(fields[layout.at], self.tz).value is not None)
        return whole

    def _body(self, layout: _CsvLayout, body: list[_Record], prior: _CsvSoFar,
              appended: bool) -> tuple[Pull, _CsvSoFar] | None:
        """The responses of `body`, the records after those `prior` describes, and what
        all of them leave for the next read. `appended`: None when the new records change
        what the earlier ones read as."""
        def cell(record: _Record, i: int | None) -> str:
            return record.fields[i].strip() if i is not None and i < len(record.fields) else ""

        stamps = [cell(r, layout.at) for r in body]
        times = read_column(stamps, self.tz, self.dayfirst, prior.proofs)
        latest = pd.Timestamp(prior.latest) if prior.latest else None
        if appended and (
                (times.order, times.contradiction) != decide_order(prior.proofs, self.dayfirst)
                # A response's id counts the identical stamps above it: a new line's stamp
                # must be one the earlier lines cannot hold, later than all they read.
                or any(t.value is None or (latest is not None and t.value <= latest)
                       for t in times.values)):
            return None
        warnings: list[str] = []
        if layout.delimiter != ",":
            warnings.append(f"{self.path.name} is {DELIMITERS[layout.delimiter]}-separated, "
                            "not comma-separated as Google Forms writes it (re-saved by a "
                            "spreadsheet?)")
        if times.contradiction:
            warnings.append(f"the Timestamp column has dates in both day orders "
                            f"({times.contradiction}); the ambiguous ones are marked unreadable")

        responses: list[RawResponse] = []
        seen: dict[str, int] = {}
        answered: set[int] = set(prior.answered)
        broken: list[str] = []
        for record, stamp, when in zip(body, stamps, times.values, strict=True):
            email = cell(record, layout.email_at) or None
            rid = _response_id(stamp, email, seen)
            notes = _time_notes(when)
            why = (f"line {record.line} {record.problem}" if record.problem else
                   f"line {record.line} has {len(record.fields)} fields where the header "
                   f"has {layout.width}" if len(record.fields) != layout.width else None)
            answers: dict[str, Answer] = {}
            if why:
                broken.append(why)
            else:
                for i, name in layout.columns:
                    if value := record.fields[i].strip():
                        answers[name] = value
                        answered.add(i)
                if '"' in record.raw and _misquoted(record.raw, layout.delimiter):
                    notes += (f"note: Row: line {record.line} has a quote mark out of place; "
                              "its cells were read as well as they could be: check them "
                              "against the export",)
            responses.append(RawResponse(
                source=self.name, response_id=rid, submitted_at=when.value, answers=answers,
                respondent_email=email,
                unreadable_timestamp=None if when.value is not None else stamp, notes=notes,
                quarantined=why, raw_text=record.raw if why else None))
            if when.value is not None and (latest is None or when.value > latest):
                latest = when.value
        broken_count = prior.broken_count + len(broken)
        broken = (prior.broken + broken)[:10]
        warnings += _listed([f"{why}: kept as written, its report held until the export is "
                             "corrected" for why in broken],
                            "more lines could not be read: their reports are held",
                            total=broken_count)
        # A column without a title is a question only when something was written in it.
        questions = {n: n for i, n in layout.columns
                     if layout.fields[i] != "" or i in answered}
        so_far = _CsvSoFar(delimiter=layout.delimiter, header=layout.fields,
                           proofs=times.proofs, latest=latest.isoformat() if latest else None,
                           answered=sorted(answered), broken=broken, broken_count=broken_count)
        return Pull(responses=responses, questions=questions, warnings=warnings), so_far

    def _header(self, raw: bytes, lines: list[str]) -> tuple[str, _Record]:
        """The delimiter whose split of the first line has a Timestamp column (the widest
        when several do), and that header record."""
        best: tuple[str, _Record] | None = None
        for delimiter in DELIMITERS:
            first = next(_records(lines, delimiter), None)
            if first is None or "timestamp" not in map(_key, first.fields):
                continue
            if best is None or len(first.fields) > len(best[1].fields):
                best = (delimiter, first)
        if best is not None:
            return best
        if raw.startswith(b"PK\x03\x04"):
            raise SourceError(f"{self.name}: {self.path} is a zip file (an Excel workbook?), "
                              "not CSV text: download the responses as .csv")
        head = next((line for line in lines if line.strip()), "")[:80].rstrip()
        if "\x00" in head:
            raise SourceError(f"{self.name}: {self.path} is not a text file: download the "
                              "responses as .csv from the form's Responses tab")
        raise SourceError(f"{self.name}: {self.path} has no 'Timestamp' column: its first line "
                          f"{head!r} has none when split at commas, semicolons or tabs; is it "
                          "a Google Forms responses export?")


# -- Microsoft Forms workbook -----------------------------------------------------------------


def _top(rows: Sequence[Sequence[object]]) -> int:
    """The header's row: rows above the table are skipped, as pandas did, so it is the
    first with text (the same whether calamine's cells or openpyxl's are given)."""
    return next((i for i, r in enumerate(rows) if any(_cell_text(v) for v in r)), len(rows))


class MicrosoftFormsXlsxSource(_ExportFile):
    """The Excel workbook of a Microsoft Form: ID, Start time, Completion time, Email, Name,
    optional Last modified time, then one column per question. Times are local (naive).

    Read cell by cell, not with pandas, so an answer of `N/A`, `None` or `null` stays an
    answer.
    """

    META = ("ID", "Start time", "Completion time", "Email", "Name", "Last modified time")

    def __init__(self, name: str, path: Path, tz: ZoneInfo, sheet: str | None = None,
                 *, dayfirst: bool = False) -> None:
        self.name, self.path, self.tz, self.sheet = name, Path(path), tz, sheet
        # Microsoft writes M/D/YYYY text in some locales; the values decide, this breaks ties
        self.dayfirst = dayfirst

    def _table(self, raw: bytes) -> list[list[Any]]:
        """The sheet's rows as calamine reads them (see `openpyxl_row`)."""
        # calamine, not openpyxl: a fraction of the time, which a workbook of years of
        # responses needs (its rows become openpyxl's values where they are parsed).
        try:
            book = CalamineWorkbook.from_filelike(io.BytesIO(raw))
            if self.sheet and self.sheet not in book.sheet_names:
                raise SourceError(f"{self.name}: {self.path} has no sheet {self.sheet!r}")
            sheet = (book.get_sheet_by_name(self.sheet) if self.sheet
                     else book.get_sheet_by_index(0))
            return sheet.to_python(skip_empty_area=False)
        except SourceError:
            raise
        except Exception as exc:  # calamine raises several types for a damaged file
            raise SourceError(f"{self.name}: {self.path} is not a readable Excel workbook "
                              f"({type(exc).__name__})") from None

    def _read(self, raw: bytes, digest: str | None, resume: Resume | None
              ) -> tuple[Pull, Resume | None]:
        table = self._table(raw)
        # The rows read last are recognised by a digest of their cells: a re-saved workbook
        # differs in its bytes even where no cell does.
        before = resume["rows"] if resume else None
        rows_digest, head = hashlib.sha256(), None
        for i, row in enumerate(table):
            if i == before:
                head = rows_digest.hexdigest()
            rows_digest.update(repr(row).encode())
        if before == len(table):  # no row added: the digest of them all
            head = rows_digest.hexdigest()
        read = None
        top = _top(table)
        if resume and head == resume["digest"] and top < before:
            read = self._part([*map(openpyxl_row, table[:top + 1]),
                               *map(openpyxl_row, table[before:])], str(self.path), resume,
                              earlier=table[top + 1:before])
        if read is None:
            read = self._part([openpyxl_row(r) for r in table], str(self.path))
            assert read is not None  # a whole read always reads
        pulled, found = read
        return pulled, {**found, "rows": len(table), "digest": rows_digest.hexdigest()}

    def _parse(self, rows: list[Sequence[object]], where: str) -> Pull:
        """The responses in a sheet's rows (cells as openpyxl gives them); `where` names
        the workbook in messages."""
        read = self._part(rows, where)
        assert read is not None  # a whole read always reads
        return read[0]

    def _part(self, rows: list[Sequence[object]], where: str, prior: Resume | None = None,
              earlier: Sequence[Sequence[object]] = ()) -> tuple[Pull, Resume] | None:
        """`_parse`, and what it leaves for reading rows added later. With `prior` (what the
        read of the rows `earlier` left), `rows` are the header's and the rows added since:
        None when those must be read with the earlier ones (they repeat a response ID, are
        wider, or change the time columns' day order)."""
        top = _top(rows)
        width = max((len(r) for r in rows[top:]), default=0)
        if prior is not None and width != prior["width"]:
            return None
        header = list(rows[top]) + [None] * (width - len(rows[top])) if top < len(rows) else []
        names = _column_names(header)
        keys = [_key(n) for n in names]
        meta = {k: keys.index(k) for k in map(_key, self.META) if k in keys}
        missing = [c for c in ("ID", "Completion time") if _key(c) not in meta]
        if missing:
            raise SourceError(f"{self.name}: {where} has no {', '.join(map(repr, missing))} "
                              "column: is it a Microsoft Forms responses workbook?")
        columns = [(i, n) for i, n in enumerate(names) if i not in meta.values()]

        def cell(row: Sequence[object], key: str) -> object:
            i = meta.get(key)
            return row[i] if i is not None and i < len(row) else None

        data = [(rid, row) for row in rows[top + 1:]
                if (rid := _cell_text(cell(row, "id"))) is not None]  # blank lines: skipped
        proofs = NO_PROOF if prior is None else tuple(prior["proofs"])
        if prior is not None:
            # An ID seen before makes `_separate` weigh the rows together.
            ids = [rid for rid, _ in data]
            if len(set(ids)) < len(ids) or any(_cell_text(cell(row, "id")) in ids
                                               for row in earlier):
                return None
        warnings: list[str] = [] if prior is None else list(prior["warnings"])
        # One exporter wrote all the time columns: their text cells decide one day order.
        stamps = {key: [cell(r, key) for _, r in data]
                  for key in ("lastmodifiedtime", "completiontime", "starttime")}
        found = order_proofs([t for cells in stamps.values() for v in cells
                              if not isinstance(v, date | time)
                              and (t := _cell_text(v)) is not None], proofs)
        order, contradiction = decide_order(found, self.dayfirst)
        if prior is not None and (order, contradiction) != decide_order(proofs, self.dayfirst):
            return None
        if contradiction and prior is None:
            warnings.append(f"the time columns have dates in both day orders "
                            f"({contradiction}); the ambiguous ones are marked unreadable")

        def when(value: object) -> tuple[Read, str]:
            return self._time(value, order, strict=contradiction is not None)

        # The last edit when there is one (as the Graph workbook shows it), else completion.
        submitted = [when(m if _cell_text(m) is not None else c)
                     for m, c in zip(stamps["lastmodifiedtime"], stamps["completiontime"],
                                     strict=True)]
        ids, extra, kept = self._separate([rid for rid, _ in data], stamps["starttime"], when,
                                          [read.value for read, _ in submitted], warnings)

        responses: list[RawResponse] = []
        answered: set[int] = set(prior["answered"]) if prior else set()
        for k, (_, row) in enumerate(data):
            if k not in kept:
                continue
            answers = {}
            for i, name in columns:
                if i < len(row) and row[i] is not None and (
                        text := _cell_text(row[i])) is not None:
                    answers[name] = text
                    answered.add(i)
            email = _cell_text(cell(row, "email"))
            read, shown = submitted[k]
            responses.append(RawResponse(
                source=self.name, response_id=ids[k], submitted_at=read.value, answers=answers,
                # Anonymous Microsoft Forms write the word "anonymous" in place of an address.
                respondent_email=None if (email or "").lower() == "anonymous" else email,
                respondent_name=_cell_text(cell(row, "name")),
                unreadable_timestamp=None if read.value is not None else shown,
                notes=(*_time_notes(read), *extra.get(k, ()))))
        questions = {n: n for i, n in columns if header[i] is not None or i in answered}
        return (Pull(responses=responses, questions=questions, warnings=warnings),
                {"width": width, "proofs": list(found), "answered": sorted(answered),
                 "warnings": warnings})

    def _time(self, value: object, order: Order, strict: bool) -> tuple[Read, str]:
        """A time cell read, with its text as shown. A date cell holds the local wall clock;
        text is read in the export's day order."""
        shown = _cell_text(value) or ""
        if isinstance(value, datetime | date):
            return self._wall_clock(value, shown), shown
        if isinstance(value, time):
            return Read(None, f"{shown!r} is a time without a date"), shown
        return read_datetime(shown, self.tz, order, strict=strict), shown

    def _wall_clock(self, value: date, shown: str) -> Read:
        when = value if isinstance(value, datetime) else datetime.combine(value, time())
        if not EARLIEST_YEAR <= when.year <= LATEST_YEAR:
            return Read(None, f"{shown!r}: the year {when.year} is out of range")
        if when.tzinfo is not None:
            return Read(pd.Timestamp(when).tz_convert("UTC"))
        return localise(when, self.tz)

    def _separate(self, rids: list[str], starts: list[object],
                  when: Callable[[object], tuple[Read, str]],
                  submitted: list[pd.Timestamp | None], warnings: list[str]
                  ) -> tuple[list[str], dict[int, list[str]], set[int]]:
        """The id of each row, the notes each gets, and the rows to keep.

        Rows sharing an ID with different start times are different responses (exports
        merged by hand, a form copied): the earliest start keeps the ID, the others get
        `ID@<start, local>`, whatever the row order. Rows sharing an ID and a start time are
        one response; the last submitted (then the lower row) is kept as its latest edit.
        """
        ids = list(rids)
        extra: dict[int, list[str]] = defaultdict(list)
        groups: dict[str, list[int]] = defaultdict(list)
        for k, rid in enumerate(rids):
            groups[rid].append(k)
        repeated = {rid: rows for rid, rows in groups.items() if len(rows) > 1}
        kept = set(range(len(rids))) - {k for rows in repeated.values() for k in rows}
        if not repeated:
            return ids, extra, kept
        reads = {k: when(starts[k]) for rows in repeated.values() for k in rows}
        said: list[str] = []
        for rid, rows in repeated.items():
            by_start: dict[str, list[int]] = defaultdict(list)
            rank: dict[str, tuple[int, float, str]] = {}
            for k in rows:
                read, shown = reads[k]
                if read.value is not None:
                    key = f"{read.value.tz_convert(self.tz):%Y%m%dT%H%M%S}"
                    this = (0, read.value.timestamp(), key)
                else:  # no readable start: told apart by its text
                    key = "start-" + hashlib.sha256(shown.encode()).hexdigest()[:8]
                    this = (1, 0.0, shown)
                by_start[key].append(k)
                rank[key] = min(rank.get(key, this), this)
            in_order = sorted(by_start, key=rank.__getitem__)
            split = None
            if len(in_order) > 1:
                split = (f"response ID {rid} is on {len(rows)} rows with different start "
                         "times; each is kept as a separate report"
                         if len(in_order) == len(rows) else
                         f"response ID {rid} is on {len(rows)} rows with {len(in_order)} "
                         "different start times; each start time is kept as a separate report")
                said.append(split)
            for n, key in enumerate(in_order):
                same = by_start[key]
                winner = max(same, key=lambda k: (submitted[k] is not None,
                                                  submitted[k] or pd.Timestamp(0, tz="UTC"), k))
                kept.add(winner)
                ids[winner] = rid if n == 0 else f"{rid}@{key}"
                notes = [split] if split else []
                if len(same) > 1:
                    notes.append(f"response ID {rid} is on {len(same)} rows with the same start "
                                 "time; they are read as one response, the last submitted row "
                                 "as its latest edit")
                    if not split:
                        said.append(notes[-1])
                extra[winner] += [f"note: ID: {note}" for note in notes]
        warnings += _listed(said, "more response IDs are on more than one row: see the notes "
                                  "on their reports")
        return ids, extra, kept
