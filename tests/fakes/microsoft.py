"""Fakes of Microsoft Graph v1.0 (sites, drives, Excel workbooks, ``$batch``, sendMail) and
of the Microsoft identity platform v2.0 endpoints, served by one local server.

One :class:`MicrosoftFakeServer` answers both, routed by path as the real hosts route them:
``/v1.0/...`` is Graph (``https://graph.microsoft.com``) and ``/{tenant}/...`` is the
identity platform (``https://login.microsoftonline.com``). Point the real libraries at it:

* requests / office365-rest-python-client 3.x: mount :func:`rewrite_adapter` on
  ``https://graph.microsoft.com`` (``GraphClient(...).with_transport(session=session)``);
* msal: it refuses an ``http://`` authority, so use ``authority=server.authority(tenant)``
  (``https://127.0.0.1:<port>/<tenant>``), ``instance_discovery=False`` and
  ``http_client=server.identity_session()`` (a session whose adapter sends that https
  origin to the plain-HTTP server). The discovery document names its endpoints after the
  request's Host header, so msal keeps talking to the same origin.

State lives in ``server.identity`` (app registrations, issued tokens, device codes) and
``server.graph`` (users, sites, drives, workbooks, sent mail); faults are injected with
``server.faults`` (method ids such as ``graph.workbook.range.update``, ``graph.batch``,
``identity.token``; random faults never hit ``identity.*`` unless targeted with
``only="identity"``). Requests the real service would reject are answered as it answers
them and recorded in ``server.violations`` (see :meth:`MicrosoftFakeServer.assert_no_violations`).

Typical use in a connector test::

    with MicrosoftFakeServer() as server:
        server.identity.register_app(CLIENT_ID, secret="s3cret",
                                     roles=("Sites.Selected", "Mail.Send"))
        site = server.graph.add_site("contoso.sharepoint.com", "/sites/ops")
        server.graph.grant_site(site, CLIENT_ID, roles=("write",))
        item = server.graph.forms_workbook(server.graph.drive_of_site(site),
                                           "Forms/Near miss.xlsx", header, rows)
        server.faults.fail_next(1, 429, retry_after=1, only="graph.workbook.range.update")
        ...  # run the connector
        server.assert_no_violations()
        assert server.graph.cells(item, "Sheet1")[1][0] == 1

Excel semantics follow Excel for the web in the en-US locale: strings that look like numbers,
booleans or US dates are converted as if typed, ``=`` starts a formula, a leading apostrophe
keeps text as text, dates are serial numbers in ``values`` and formatted in ``text``.

Simplified on purpose: formulas evaluate arithmetic over same-sheet cells only (functions
show ``#NAME?``); the downloaded .xlsx carries a formula's value, not the formula; tokens are
not signed; a ``$batch`` sub-request hit by a drop or lost-answer fault is answered 504 by
the front end (applied only for a lost answer). Unknown ``$`` query options are refused as
Graph refuses them; other unknown parameters are served but still recorded as violations.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import copy
import datetime as dt
import email
import email.policy
import hashlib
import io
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from tests.fakes.http import (
    Classification,
    FakeHTTPServer,
    FakeResponse,
    FaultDecision,
    RecordedRequest,
    column_index,
    column_letters,
)

__all__ = [
    "GRAPH_HOST",
    "GRAPH_SCOPE",
    "AppRegistration",
    "GraphError",
    "GraphFake",
    "IdentityFake",
    "IssuedToken",
    "MicrosoftFakeServer",
    "SentMail",
    "SheetFormats",
    "ViolationRecord",
    "a1_address",
    "column_index",
    "column_letters",
    "excel_serial",
    "quick_xor_hash",
    "rewrite_adapter",
    "sharing_token",
]

GRAPH_HOST = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ODATA_JSON = ("application/json;odata.metadata=minimal;odata.streaming=true;"
              "IEEE754Compatible=false;charset=utf-8")
ERROR_JSON = "application/json"
TOKEN_JSON = "application/json; charset=utf-8"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
METADATA = f"{GRAPH_HOST}/v1.0/$metadata"


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwt(header: Mapping[str, Any], payload: Mapping[str, Any], rng: random.Random) -> str:
    """An unsigned-looking JWT: clients may read its claims, nobody checks the signature."""
    parts = [_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in
             (header, payload)]
    return ".".join([*parts, _b64url(rng.randbytes(64))])


def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        header, payload = (json.loads(_b64url_decode(p)) for p in pieces[:2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _graph_time(moment: dt.datetime) -> str:
    """Graph's timestamps: milliseconds with trailing zeros dropped (``...13.51Z``)."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = f"{moment.microsecond // 1000:03d}".rstrip("0")
    return f"{text}.{millis}Z" if millis else f"{text}Z"


def _aad_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _odata_key(value: str) -> str:
    """A key inside ``@odata.id`` paths: ``items('ABC%21106')``."""
    return quote(value, safe="")


def sharing_token(url: str) -> str:
    """Encode a sharing URL for ``/shares/{token}`` (``u!`` + unpadded base64url)."""
    return "u!" + _b64url(url.encode("utf-8"))


def quick_xor_hash(data: bytes) -> str:
    """OneDrive's QuickXorHash (160-bit, shift 11), base64-encoded as drives report it."""
    width, shift, last_bits = 160, 11, 32
    cells = [0, 0, 0]
    mask = (1 << 64) - 1
    index, offset = 0, 0
    for i in range(min(len(data), width)):
        is_last = index == len(cells) - 1
        bits = last_bits if is_last else 64
        xored = 0
        for j in range(i, len(data), width):
            xored ^= data[j]
        if offset <= bits - 8:
            cells[index] ^= (xored << offset) & mask
        else:
            other = 0 if is_last else index + 1
            cells[index] ^= (xored << offset) & mask
            cells[other] ^= xored >> (bits - offset)
        offset += shift
        while offset >= bits:
            index = 0 if is_last else index + 1
            offset -= bits
            is_last = index == len(cells) - 1
            bits = last_bits if is_last else 64
    out = bytearray(cells[0].to_bytes(8, "little") + cells[1].to_bytes(8, "little")
                    + cells[2].to_bytes(8, "little")[:4])
    for i, byte in enumerate(len(data).to_bytes(8, "little")):
        out[width // 8 - 8 + i] ^= byte
    return base64.b64encode(bytes(out)).decode("ascii")


# ---------------------------------------------------------------------------------------
# A1 addresses
# ---------------------------------------------------------------------------------------

MAX_ROWS = 1_048_576
MAX_COLS = 16_384


def _quote_sheet(name: str) -> str:
    """Excel quotes a sheet name in an address unless it is a plain identifier."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) and not re.fullmatch(
            r"[A-Za-z]{1,3}\d+|[Rr]\d*[Cc]\d*", name):
        return name
    return "'" + name.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Box:
    """A rectangle of cells, 0-based and inclusive; ``whole`` is "rows"/"columns"/None."""

    r0: int
    c0: int
    r1: int
    c1: int
    whole: str | None = None

    @property
    def rows(self) -> int:
        return self.r1 - self.r0 + 1

    @property
    def cols(self) -> int:
        return self.c1 - self.c0 + 1

    def cells(self) -> Iterator[tuple[int, int]]:
        for r in range(self.r0, self.r1 + 1):
            for c in range(self.c0, self.c1 + 1):
                yield r, c

    def local(self) -> str:
        if self.whole == "rows":
            return f"{self.r0 + 1}:{self.r1 + 1}"
        if self.whole == "columns":
            return f"{column_letters(self.c0)}:{column_letters(self.c1)}"
        first = f"{column_letters(self.c0)}{self.r0 + 1}"
        if self.rows == 1 and self.cols == 1:
            return first
        return f"{first}:{column_letters(self.c1)}{self.r1 + 1}"


def a1_address(sheet: str, box: tuple[int, int, int, int]) -> str:
    """``("My sheet", (0, 0, 2, 1))`` -> ``'My sheet'!A1:B3`` (0-based inclusive box)."""
    return f"{_quote_sheet(sheet)}!{_Box(*box).local()}"


_CELL_RE = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d+)")


def _split_sheet(text: str) -> tuple[str | None, str]:
    if "!" not in text:
        return None, text
    sheet, _, rest = text.rpartition("!")
    if sheet.startswith("'") and sheet.endswith("'") and len(sheet) >= 2:
        sheet = sheet[1:-1].replace("''", "'")
    return sheet, rest


def _parse_box(text: str) -> _Box:
    """``A1``, ``A1:C3``, ``C3:A1``, ``5:7`` (rows), ``A:C`` (columns); ValueError else."""
    text = text.strip()
    m = re.fullmatch(r"\$?(\d+):\$?(\d+)", text)
    if m:
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        if a < 1 or b > MAX_ROWS:
            raise ValueError(text)
        return _Box(a - 1, 0, b - 1, MAX_COLS - 1, "rows")
    m = re.fullmatch(r"\$?([A-Za-z]{1,3}):\$?([A-Za-z]{1,3})", text)
    if m:
        a, b = sorted((column_index(m.group(1)), column_index(m.group(2))))
        if b >= MAX_COLS:
            raise ValueError(text)
        return _Box(0, a, MAX_ROWS - 1, b, "columns")
    ends = text.split(":")
    if len(ends) not in (1, 2):
        raise ValueError(text)
    points = []
    for end in ends:
        cm = _CELL_RE.fullmatch(end)
        if not cm:
            raise ValueError(text)
        row, col = int(cm.group(2)) - 1, column_index(cm.group(1))
        if not (0 <= row < MAX_ROWS and 0 <= col < MAX_COLS):
            raise ValueError(text)
        points.append((row, col))
    (ra, ca), (rb, cb) = points[0], points[-1]
    return _Box(min(ra, rb), min(ca, cb), max(ra, rb), max(ca, cb))


# ---------------------------------------------------------------------------------------
# Excel values, number formats and formulas
# ---------------------------------------------------------------------------------------

_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_DATE_FORMAT = "m/d/yyyy"
_DATETIME_FORMAT = "m/d/yyyy h:mm"
_TIME_FORMAT = "h:mm"
ERRORS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")


def excel_serial(value: dt.date | dt.datetime) -> float | int:
    """Days since 1899-12-30 (Excel's 1900 date system), with the time as a fraction."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        delta = value - _EXCEL_EPOCH
        return _number(delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400)
    return (value - _EXCEL_EPOCH.date()).days


def _from_serial(serial: float) -> dt.datetime:
    return _EXCEL_EPOCH + dt.timedelta(days=serial)


def _number(value: float | int) -> int | float:
    """Excel keeps doubles; Graph prints integral ones without a fraction (``200``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _general(value: float | int) -> str:
    """Excel's General format: at most 11 characters, scientific beyond that."""
    value = _number(value)
    if isinstance(value, int) and abs(value) < 10**11:
        return str(value)
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text.lstrip("-")) <= 11:
            break
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}E{exponent[0]}{int(exponent[1:]):02d}"
    return text


_DATE_TOKEN = re.compile(
    r'"[^"]*"|\\.|yyyy|yy|mmmmm|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|\.0+|.',
    re.IGNORECASE)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _is_date_format(fmt: str) -> bool:
    bare = re.sub(r'"[^"]*"|\\.|\[[^\]]*\]', "", fmt).lower()
    return bool(re.search(r"[ydhs]", bare) or ("m" in bare and "0" not in bare))


def _format_date(serial: float, fmt: str) -> str:
    tokens = _DATE_TOKEN.findall(fmt.split(";")[0])
    moment = _from_serial(serial)
    if not any(t.startswith(".0") for t in tokens):  # Excel rounds to the shown second
        moment = (moment + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
    lowered = [t.lower() for t in tokens]
    twelve = any(t in ("am/pm", "a/p") for t in lowered)
    out: list[str] = []
    for i, (token, low) in enumerate(zip(tokens, lowered, strict=True)):
        if low in ("mm", "m"):
            before = [t for t in lowered[:i] if t.isalpha() or t in ("am/pm", "a/p")]
            after = [t for t in lowered[i + 1:] if t.isalpha() or t in ("am/pm", "a/p")]
            minutes = (before and before[-1] in ("h", "hh")) or (after and after[0] in ("s", "ss"))
            number = moment.minute if minutes else moment.month
            out.append(f"{number:02d}" if low == "mm" else str(number))
        elif low == "yyyy":
            out.append(f"{moment.year:04d}")
        elif low == "yy":
            out.append(f"{moment.year % 100:02d}")
        elif low == "mmm":
            out.append(_MONTHS[moment.month - 1][:3])
        elif low in ("mmmm", "mmmmm"):
            name = _MONTHS[moment.month - 1]
            out.append(name if low == "mmmm" else name[0])
        elif low in ("d", "dd"):
            out.append(f"{moment.day:02d}" if low == "dd" else str(moment.day))
        elif low in ("ddd", "dddd"):
            name = _DAYS[moment.weekday()]
            out.append(name[:3] if low == "ddd" else name)
        elif low in ("h", "hh"):
            hour = moment.hour % 12 or 12 if twelve else moment.hour
            out.append(f"{hour:02d}" if low == "hh" else str(hour))
        elif low in ("s", "ss"):
            out.append(f"{moment.second:02d}" if low == "ss" else str(moment.second))
        elif low == "am/pm":
            out.append("AM" if moment.hour < 12 else "PM")
        elif low == "a/p":
            out.append("A" if moment.hour < 12 else "P")
        elif token.startswith('"'):
            out.append(token[1:-1])
        elif token.startswith("\\"):
            out.append(token[1:])
        elif token.startswith(".0"):
            out.append("." + f"{moment.microsecond:06d}"[:len(token) - 1])
        else:
            out.append(token)
    return "".join(out)


def _format_number(value: float | int, fmt: str) -> str:
    section = fmt.split(";")[0]
    percent = section.endswith("%")
    core = section.rstrip("%")
    m = re.fullmatch(r"(#,##)?0(?:\.(0+))?", core)
    if not m:
        return _general(value)
    shown = value * 100 if percent else value
    decimals = len(m.group(2) or "")
    text = f"{shown:,.{decimals}f}" if m.group(1) else f"{shown:.{decimals}f}"
    return text + ("%" if percent else "")


def _format_value(value: Any, fmt: str) -> str:
    """What Excel shows in a cell (``text``): numbers through the number format."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return value
    if fmt in ("General", "@", ""):
        return _general(value)
    if _is_date_format(fmt):
        if value < 0:
            return "#" * 11
        return _format_date(value, fmt)
    return _format_number(value, fmt)


def _value_type(value: Any) -> str:
    if value is None:
        return "Empty"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, str):
        return "Error" if value in ERRORS else "String"
    return "Double"


_NUMBER_TEXT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?%?")
_US_DATE = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_TIME_TEXT = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?")


def _typed_date(text: str) -> tuple[float | int, str] | None:
    """A US-locale date/time typed into a cell, as (serial, number format)."""
    m = _US_DATE.fullmatch(text)
    if m:
        month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if len(m.group(3)) == 2:
            year += 2000 if year < 30 else 1900
        time_parts = m.group(4, 5, 6, 7)
    else:
        m = _ISO_DATE.fullmatch(text)
        if not m:
            t = _TIME_TEXT.fullmatch(text)
            if not t:
                return None
            hour, minute, second = int(t.group(1)), int(t.group(2)), int(t.group(3) or 0)
            if t.group(4):
                hour = hour % 12 + (12 if t.group(4).lower() == "pm" else 0)
            if hour > 23 or minute > 59 or second > 59:
                return None
            return _number(round((hour * 3600 + minute * 60 + second) / 86400, 10)), _TIME_FORMAT
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        time_parts = (m.group(4), m.group(5), m.group(6), None)
    try:
        moment = dt.datetime(year, month, day)
    except ValueError:
        return None
    fmt = _DATE_FORMAT
    if time_parts[0] is not None:
        hour, minute, second = int(time_parts[0]), int(time_parts[1]), int(time_parts[2] or 0)
        if time_parts[3]:
            hour = hour % 12 + (12 if time_parts[3].lower() == "pm" else 0)
        if hour > 23 or minute > 59 or second > 59:
            return None
        moment = moment.replace(hour=hour, minute=minute, second=second)
        fmt = _DATETIME_FORMAT
    return excel_serial(moment), fmt


@dataclass
class _Cell:
    value: Any = None  # None (empty), str, int, float or bool; formulas keep theirs in formula
    formula: str | None = None
    fmt: str = "General"

    @property
    def empty(self) -> bool:
        return self.value is None and self.formula is None


def _enter(cell: _Cell, raw: Any) -> None:
    """Apply one value as if typed into Excel (the ``values`` of a range PATCH)."""
    if isinstance(raw, bool):
        cell.value, cell.formula = raw, None
        return
    if isinstance(raw, int | float):
        cell.value, cell.formula = _number(raw), None
        return
    assert isinstance(raw, str)
    cell.formula = None
    if raw == "":
        cell.value = None
    elif raw.startswith("'"):
        cell.value = raw[1:]
    elif raw.startswith("=") and len(raw) > 1:
        cell.value, cell.formula = None, raw
    elif cell.fmt == "@":
        cell.value = raw
    else:
        cell.value = _typed(cell, raw.strip()) if raw.strip() else raw


def _typed(cell: _Cell, text: str) -> Any:
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper() == "TRUE"
    if _NUMBER_TEXT.fullmatch(text) and any(ch.isdigit() for ch in text):
        percent = text.endswith("%")
        number = float(text.rstrip("%").replace(",", ""))
        if percent:
            number /= 100
            if cell.fmt == "General":
                cell.fmt = "0%" if number * 100 == int(number * 100) else "0.00%"
        return _number(number)
    date = _typed_date(text)
    if date is not None:
        serial, fmt = date
        if cell.fmt == "General":
            cell.fmt = fmt
        return serial
    return text


def _python_value(value: Any) -> tuple[Any, str | None]:
    """A Python value for the setup helpers: (stored value, number format or None)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, dt.datetime):
        return excel_serial(value), _DATETIME_FORMAT
    if isinstance(value, dt.date):
        return excel_serial(value), _DATE_FORMAT
    if isinstance(value, bool | str):
        return value, None
    if isinstance(value, int | float):
        return _number(value), None
    raise TypeError(f"unsupported cell value {value!r}")


_FORMULA_REF = re.compile(r"(?<![A-Za-z_\d.$!'])(\$?)([A-Za-z]{1,3})(\$?)(\d+)(?![\d(A-Za-z_])")


def _r1c1(formula: str, row: int, col: int) -> str:
    """``=B56*2`` at B57 -> ``=R[-1]C*2``; strings inside quotes are left alone."""
    def one(m: re.Match[str]) -> str:
        abs_col, letters, abs_row, digits = m.groups()
        r, c = int(digits) - 1, column_index(letters)
        if r >= MAX_ROWS or c >= MAX_COLS:
            return m.group(0)
        rpart = f"R{r + 1}" if abs_row else ("R" if r == row else f"R[{r - row}]")
        cpart = f"C{c + 1}" if abs_col else ("C" if c == col else f"C[{c - col}]")
        return rpart + cpart

    pieces = re.split(r'("[^"]*")', formula)
    return "".join(p if p.startswith('"') else _FORMULA_REF.sub(one, p) for p in pieces)


class _FormulaError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _evaluate(formula: str, lookup: Callable[[int, int], Any]) -> Any:
    """Arithmetic on numbers and same-sheet cell references; anything else (functions,
    names, text operators) evaluates to ``#NAME?``, which is what a workbook shows for a
    formula Excel cannot resolve. ``lookup`` returns a cell's value."""
    expression = formula[1:].strip()
    if re.search(r'[A-Za-z_][A-Za-z0-9_.]*\s*\(|"|!|&', expression):
        return "#NAME?"
    refs: dict[str, Any] = {}

    def ref(m: re.Match[str]) -> str:
        name = f"_r{len(refs)}"
        refs[name] = lookup(int(m.group(4)) - 1, column_index(m.group(2)))
        return name

    python = _FORMULA_REF.sub(ref, expression).replace("^", "**")
    try:
        tree = ast.parse(python, mode="eval")
    except SyntaxError:
        return "#NAME?"

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name) and node.id in refs:
            value = refs[node.id]
            if value is None:
                return 0
            if isinstance(value, str):
                raise _FormulaError(value if value in ERRORS else "#VALUE!")
            return float(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = walk(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                if right == 0:
                    raise _FormulaError("#DIV/0!")
                return left / right
            if isinstance(node.op, ast.Pow):
                try:
                    return float(left) ** float(right)
                except (OverflowError, ZeroDivisionError, ValueError):
                    raise _FormulaError("#NUM!") from None
        raise _FormulaError("#NAME?")

    try:
        result = walk(tree)
    except _FormulaError as err:
        return err.code
    if isinstance(result, complex) or not math.isfinite(result):
        return "#NUM!"
    return _number(round(result, 12) if isinstance(result, float) else result)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class GraphError(Exception):
    """An error answered in Graph's envelope ``{"error": {"code", "message", "innerError"}}``.

    ``inner_code``/``inner_message`` go into ``innerError`` next to ``date`` and
    ``request-id``: the Excel APIs put their second-level code there
    (``invalidSessionReCreatable``, ``accessConflict``, ...).
    """

    def __init__(self, status: int, code: str, message: str, *,
                 inner_code: str | None = None, inner_message: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.inner_message = inner_message
        self.headers = dict(headers or {})

    def body(self, request_id: str, client_request_id: str) -> dict[str, Any]:
        inner: dict[str, Any] = {}
        if self.inner_code is not None:
            inner["code"] = self.inner_code
        if self.inner_message is not None:
            inner["message"] = self.inner_message
        inner.update({"date": _utcnow().strftime("%Y-%m-%dT%H:%M:%S"),
                      "request-id": request_id, "client-request-id": client_request_id})
        return {"error": {"code": self.code, "message": self.message, "innerError": inner}}


def _bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _unknown_segment(segment: str) -> GraphError:
    return _bad_request(f"Resource not found for the segment '{segment}'.")


def _item_not_found(message: str = "The resource could not be found.") -> GraphError:
    return GraphError(404, "itemNotFound", message)


def _access_denied() -> GraphError:
    return GraphError(403, "accessDenied", "Access denied")


def _workbook_error(status: int, code: str, message: str) -> GraphError:
    """Excel API errors: the top-level code is the capitalised second-level one."""
    return GraphError(status, code[0].upper() + code[1:], message, inner_code=code,
                      inner_message=message)


def _invalid_argument(message: str = "The argument is invalid or missing or has an incorrect "
                                     "format.") -> GraphError:
    return _workbook_error(400, "invalidArgument", message)


def _sheet_not_found() -> GraphError:
    return _workbook_error(404, "itemNotFound", "The requested resource doesn't exist.")


_DIMENSION_MISMATCH = ("The number of rows or columns in the input array doesn't match the "
                       "size or dimensions of the range.")


class _Rejected(Exception):
    """A request the real service rejects: recorded as a violation, then answered."""

    def __init__(self, problem: str, error: GraphError) -> None:
        super().__init__(problem)
        self.problem = problem
        self.error = error


# ---------------------------------------------------------------------------------------
# Workbooks
# ---------------------------------------------------------------------------------------


@dataclass
class _Sheet:
    id: str
    name: str
    cells: dict[tuple[int, int], _Cell] = field(default_factory=dict)
    styles: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    column_widths: dict[int, float] = field(default_factory=dict)
    row_heights: dict[int, float] = field(default_factory=dict)
    autofit: list[str] = field(default_factory=list)
    visibility: str = "Visible"

    def cell(self, r: int, c: int) -> _Cell:
        return self.cells.setdefault((r, c), _Cell())

    def prune(self, key: tuple[int, int]) -> None:
        cell = self.cells.get(key)
        if cell is not None and cell.empty and cell.fmt == "General":
            del self.cells[key]

    def used_box(self, values_only: bool) -> _Box | None:
        keys = [k for k, cell in self.cells.items() if not cell.empty]
        if not values_only:
            keys += [k for k, cell in self.cells.items() if cell.fmt != "General"]
            keys += [k for k, style in self.styles.items() if style]
        if not keys:
            return None
        rows = [r for r, _ in keys]
        cols = [c for _, c in keys]
        return _Box(min(rows), min(cols), max(rows), max(cols))


@dataclass
class _Table:
    id: str
    name: str
    sheet: _Sheet
    box: _Box  # header row included
    legacy_id: str
    style: str = "TableStyleMedium2"
    show_headers: bool = True
    show_totals: bool = False

    @property
    def body(self) -> _Box | None:
        if self.box.r1 <= self.box.r0:
            return None
        return _Box(self.box.r0 + 1, self.box.c0, self.box.r1, self.box.c1)


@dataclass
class _Workbook:
    sheets: list[_Sheet] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)

    def sheet(self, key: str) -> _Sheet:
        """By id (``{GUID}``, braces optional) or name, both case-insensitive."""
        wanted = key.strip().lower()
        for sheet in self.sheets:
            if wanted in (sheet.id.lower(), sheet.id.strip("{}").lower(), sheet.name.lower()):
                return sheet
        raise _sheet_not_found()

    def table(self, key: str) -> _Table:
        wanted = key.strip().lower()
        for table in self.tables:
            if wanted in (table.id.lower(), table.id.strip("{}").lower(), table.name.lower()):
                return table
        raise _sheet_not_found()

    def clone(self) -> _Workbook:
        return copy.deepcopy(self)

    # -- computed values -----------------------------------------------------------------
    def value(self, sheet: _Sheet, r: int, c: int, _seen: frozenset[tuple[int, int]] = frozenset(),
              ) -> Any:
        cell = sheet.cells.get((r, c))
        if cell is None:
            return None
        if cell.formula is None:
            return cell.value
        if (r, c) in _seen:
            return 0  # a circular reference: Excel warns and shows 0
        seen = _seen | {(r, c)}
        return _evaluate(cell.formula, lambda rr, cc: self.value(sheet, rr, cc, seen))

    def grid(self, sheet: _Sheet, box: _Box) -> dict[str, list[list[Any]]]:
        """The per-cell arrays of a workbookRange."""
        keys = ("values", "text", "formulas", "formulasR1C1", "numberFormat", "valueTypes")
        out: dict[str, list[list[Any]]] = {k: [] for k in keys}
        for r in range(box.r0, box.r1 + 1):
            rows = {k: [] for k in keys}
            for c in range(box.c0, box.c1 + 1):
                cell = sheet.cells.get((r, c)) or _Cell()
                value = self.value(sheet, r, c)
                rows["values"].append("" if value is None else value)
                rows["text"].append(_format_value(value, cell.fmt))
                if cell.formula is not None:
                    rows["formulas"].append(cell.formula)
                    rows["formulasR1C1"].append(_r1c1(cell.formula, r, c))
                else:
                    shown = "" if cell.value is None else cell.value
                    rows["formulas"].append(shown)
                    rows["formulasR1C1"].append(shown)
                rows["numberFormat"].append(cell.fmt)
                rows["valueTypes"].append(_value_type(value))
            for k in keys:
                out[k].append(rows[k])
        return out

    def rows(self, sheet: _Sheet) -> list[list[Any]]:
        """Stored values (formulas as their text), trailing empty cells and rows trimmed."""
        by_row: dict[int, dict[int, Any]] = {}
        for (r, c), cell in sheet.cells.items():
            if not cell.empty:
                by_row.setdefault(r, {})[c] = (cell.formula if cell.formula is not None
                                               else cell.value)
        if not by_row:
            return []
        return [[by_row.get(r, {}).get(c) for c in range(max(by_row.get(r, {-1: None})) + 1)]
                for r in range(max(by_row) + 1)]

    # -- structural edits -------------------------------------------------------------
    def shift_rows(self, sheet: _Sheet, box: _Box, direction: str) -> None:
        """Delete ``box`` and move the cells below it up (or those to its right left)."""
        def move(store: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
            moved: dict[tuple[int, int], Any] = {}
            for (r, c), item in store.items():
                inside_cols = box.c0 <= c <= box.c1
                inside_rows = box.r0 <= r <= box.r1
                if inside_cols and inside_rows:
                    continue
                if direction == "up" and inside_cols and r > box.r1:
                    moved[(r - box.rows, c)] = item
                elif direction == "left" and inside_rows and c > box.c1:
                    moved[(r, c - box.cols)] = item
                else:
                    moved[(r, c)] = item
            return moved

        for table in [t for t in self.tables if t.sheet is sheet]:
            self._adjust_table(table, box, direction)
        sheet.cells = move(sheet.cells)
        sheet.styles = move(sheet.styles)

    def _adjust_table(self, table: _Table, box: _Box, direction: str) -> None:
        t = table.box
        overlaps = not (box.r1 < t.r0 or box.r0 > t.r1 or box.c1 < t.c0 or box.c0 > t.c1)
        if direction == "up":
            if not overlaps:
                if box.c0 <= t.c0 and box.c1 >= t.c1 and box.r1 < t.r0:
                    table.box = replace(t, r0=t.r0 - box.rows, r1=t.r1 - box.rows)
                elif box.r1 < t.r0 and not (box.c1 < t.c0 or box.c0 > t.c1):
                    raise _workbook_error(400, "insertDeleteConflict", "The insert or delete "
                                          "operation attempted resulted in a conflict.")
                return
            if box.c0 > t.c0 or box.c1 < t.c1 or box.r0 <= t.r0:
                raise _workbook_error(400, "insertDeleteConflict", "The insert or delete "
                                      "operation attempted resulted in a conflict.")
            gone = min(box.r1, t.r1) - box.r0 + 1
            table.box = replace(t, r1=t.r1 - gone)
        elif overlaps or (box.c1 < t.c0 and not (box.r1 < t.r0 or box.r0 > t.r1)):
            raise _workbook_error(400, "insertDeleteConflict", "The insert or delete "
                                  "operation attempted resulted in a conflict.")

    def insert_table_rows(self, table: _Table, count: int) -> int:
        """Make room for ``count`` rows under the table (cells below move down)."""
        sheet, t = table.sheet, table.box
        start = t.r1 + 1

        def move(store: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
            return {((r + count) if r >= start and t.c0 <= c <= t.c1 else r, c): item
                    for (r, c), item in store.items()}

        sheet.cells = move(sheet.cells)
        sheet.styles = move(sheet.styles)
        table.box = replace(t, r1=t.r1 + count)
        return start


# ---------------------------------------------------------------------------------------
# XLSX rendering (the bytes behind ``/content``)
# ---------------------------------------------------------------------------------------


def _xlsx_bytes(workbook: _Workbook) -> bytes:
    """The workbook as an .xlsx written by openpyxl: values (a formula's cached result, as
    readers of a real file see it), number formats, bold, fills, widths and tables."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font, PatternFill
    from openpyxl.worksheet.table import Table, TableStyleInfo

    book = Workbook()
    assert book.active is not None
    book.remove(book.active)
    for sheet in workbook.sheets:
        ws = book.create_sheet(sheet.name)
        for (r, c), cell in sorted(sheet.cells.items()):
            value = workbook.value(sheet, r, c)
            if isinstance(value, str):
                value = ILLEGAL_CHARACTERS_RE.sub("", value)
            target = ws.cell(row=r + 1, column=c + 1, value=value)
            if cell.fmt != "General":
                target.number_format = cell.fmt
        for (r, c), style in sheet.styles.items():
            target = ws.cell(row=r + 1, column=c + 1)
            if style.get("bold") or style.get("italic"):
                target.font = Font(bold=bool(style.get("bold")), italic=bool(style.get("italic")))
            if style.get("fill"):
                color = str(style["fill"]).lstrip("#")
                target.fill = PatternFill("solid", fgColor=color)
        for c, width in sheet.column_widths.items():
            ws.column_dimensions[column_letters(c)].width = round(width / 7, 2)
        for table in workbook.tables:
            if table.sheet is not sheet:
                continue
            header = [workbook.value(sheet, table.box.r0, c)
                      for c in range(table.box.c0, table.box.c1 + 1)]
            if all(isinstance(h, str) and h for h in header) and len(set(header)) == len(header):
                ref = _Box(table.box.r0, table.box.c0, max(table.box.r1, table.box.r0 + 1),
                           table.box.c1).local()
                item = Table(displayName=table.name, ref=ref)
                item.tableStyleInfo = TableStyleInfo(name=table.style, showRowStripes=True)
                ws.add_table(item)
    if not workbook.sheets:
        book.create_sheet("Sheet1")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# Identity platform (login.microsoftonline.com)
# ---------------------------------------------------------------------------------------

# Graph permission names the token endpoint knows (delegated scopes and app roles).
GRAPH_PERMISSIONS = frozenset({
    "Files.Read", "Files.ReadWrite", "Files.Read.All", "Files.ReadWrite.All",
    "Files.ReadWrite.AppFolder", "Files.SelectedOperations.Selected",
    "Sites.Read.All", "Sites.ReadWrite.All", "Sites.Manage.All", "Sites.FullControl.All",
    "Sites.Selected", "Mail.Send", "Mail.Send.Shared", "Mail.Read", "Mail.ReadWrite",
    "User.Read", "User.ReadBasic.All", "User.Read.All", "offline_access",
})
_OIDC_SCOPES = ("openid", "profile", "email", "offline_access")


@dataclass
class AppRegistration:
    """An app registration: credentials and the permissions an admin consented to."""

    client_id: str
    display_name: str
    secret: str | None = None
    thumbprints: frozenset[str] = frozenset()  # lower-case hex, SHA-1 or SHA-256
    roles: tuple[str, ...] = ()
    delegated_scopes: tuple[str, ...] = ()
    public: bool = False


@dataclass(frozen=True)
class IssuedToken:
    """An access token handed out by the fake token endpoint."""

    access_token: str
    grant_type: str
    client_id: str
    audience: str
    roles: frozenset[str]
    scopes: frozenset[str]
    user: str | None  # the signed-in user's UPN for delegated tokens
    expires_at: float
    claims: Mapping[str, Any] = field(default_factory=dict)
    refresh_token: str | None = None

    @property
    def app_only(self) -> bool:
        return self.user is None

    @property
    def permissions(self) -> frozenset[str]:
        return self.roles if self.app_only else self.scopes


@dataclass
class _DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    expires_at: float
    oidc: tuple[str, ...] = ()
    approved_by: str | None = None
    redeemed: bool = False


@dataclass
class _RefreshGrant:
    client_id: str
    tenant_id: str
    user: str
    scopes: tuple[str, ...]
    revoked: bool = False


class _TokenFailure(Exception):
    def __init__(self, status: int, error: str, code: int, description: str,
                 suberror: str | None = None) -> None:
        super().__init__(f"{error}: AADSTS{code}")
        self.status, self.error, self.code = status, error, code
        self.description, self.suberror = description, suberror


class IdentityFake:
    """The identity platform v2.0 endpoints (``server.identity``), enough for msal.

    ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``POST
    /{tenant}/oauth2/v2.0/token`` (client credentials with a secret or a certificate
    assertion, device code, refresh token) and ``POST /{tenant}/oauth2/v2.0/devicecode``.
    Tenants: the server's tenant id, its domain, ``organizations`` and ``common``. Tokens are
    JWT-shaped (unsigned) with the claims Graph tokens carry: ``roles`` for app-only tokens,
    ``scp`` for delegated ones. ``issued`` lists every token handed out.
    """

    def __init__(self, server: MicrosoftFakeServer, rng: random.Random, tenant_id: str,
                 tenant_domain: str) -> None:
        self._server = server
        self._rng = rng
        self.tenant_id = tenant_id
        self.tenant_domain = tenant_domain
        self.apps: dict[str, AppRegistration] = {}
        self.issued: list[IssuedToken] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.token_lifetime = 3599
        self.device_interval = 5  # seconds; keep >= 1, msal's polling loop spins on 0
        self.device_lifetime = 900
        self._expired: set[str] = set()
        self._device_codes: dict[str, _DeviceCode] = {}
        self._refresh: dict[str, _RefreshGrant] = {}
        self._failures: list[_TokenFailure] = []

    # -- setup -----------------------------------------------------------------------------
    def register_app(self, client_id: str, *, secret: str | None = None,
                     thumbprint: str | None = None, roles: Iterable[str] = (),
                     delegated_scopes: Iterable[str] = (), public: bool = False,
                     display_name: str | None = None) -> AppRegistration:
        """Register an app. ``roles`` are application permissions granted with admin
        consent (app-only tokens carry them); ``delegated_scopes`` are the delegated ones
        consented for users (device-code tokens carry the requested subset)."""
        with self._server.lock:
            thumbs = frozenset({thumbprint.replace(":", "").lower()}) if thumbprint else frozenset()
            app = AppRegistration(client_id, display_name or f"App {client_id[:8]}", secret,
                                  thumbs, tuple(roles), tuple(delegated_scopes), public)
            self.apps[client_id] = app
            return app

    def add_certificate(self, client_id: str, thumbprint: str) -> None:
        """Register one more certificate thumbprint (SHA-1 or SHA-256 hex) for an app."""
        with self._server.lock:
            app = self.apps[client_id]
            app.thumbprints = app.thumbprints | {thumbprint.replace(":", "").lower()}

    def approve(self, code: str, user: str = "manager@contoso.example") -> None:
        """The user signs in at the verification page and enters ``code`` (user or device
        code); the next poll of the token endpoint gets tokens for ``user``."""
        with self._server.lock:
            for pending in self._device_codes.values():
                if code in (pending.user_code, pending.device_code):
                    pending.approved_by = user
                    self._server.graph._ensure_user(user)
                    return
            raise KeyError(f"no pending device code {code!r}")

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on (Graph answers 401)."""
        with self._server.lock:
            self._expired.update(self.tokens)

    def revoke_refresh_tokens(self, user: str | None = None) -> None:
        with self._server.lock:
            for grant in self._refresh.values():
                if user is None or grant.user.lower() == user.lower():
                    grant.revoked = True

    def fail_next(self, n: int = 1, error: str = "invalid_grant", code: int = 50076,
                  description: str = "Due to a configuration change made by your "
                  "administrator, or because you moved to a new location, you must use "
                  "multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
                  status: int = 400, suberror: str | None = "basic_action") -> None:
        """The next ``n`` token requests fail with an AADSTS error (default: MFA required)."""
        with self._server.lock:
            self._failures.extend(
                [_TokenFailure(status, error, code, description, suberror)] * n)

    def add_token(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = (),
                  user: str | None = None, client_id: str = "seeded-client",
                  audience: str = GRAPH_HOST) -> str:
        """Mint an access token without a token request (for tests of Graph alone)."""
        with self._server.lock:
            tenant = self.tenant_id
            if user is None:
                token = self._mint("seeded", client_id, tenant, audience, roles=roles)
            else:
                self._server.graph._ensure_user(user)
                token = self._mint("seeded", client_id, tenant, audience, scopes=scopes,
                                   user=user)
            return token.access_token

    def lookup(self, access_token: str) -> IssuedToken | None:
        return self.tokens.get(access_token)

    def is_expired(self, token: IssuedToken) -> bool:
        return token.access_token in self._expired or token.expires_at <= time.time()

    # -- tenants ---------------------------------------------------------------------------
    def _tenant(self, segment: str) -> str | None:
        lowered = segment.lower()
        if lowered in (self.tenant_id.lower(), self.tenant_domain.lower()):
            return self.tenant_id
        if lowered in ("organizations", "common"):
            return self.tenant_id
        return None

    def _failure(self, status: int, error: str, code: int, description: str,
                 suberror: str | None = None) -> FakeResponse:
        now = _utcnow()
        trace, correlation = _guid(self._rng), _guid(self._rng)
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                                 f"Correlation ID: {correlation} Timestamp: {_aad_time(now)}",
            "error_codes": [code],
            "timestamp": _aad_time(now),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }
        if suberror:
            body["suberror"] = suberror
        return _json(status, body, TOKEN_JSON)

    def _tenant_not_found(self, segment: str, error: str = "invalid_request") -> FakeResponse:
        return self._failure(400, error, 90002, f"Tenant '{segment}' not found. Check to make "
                             "sure you have the correct tenant ID and are signing into the "
                             "correct cloud. Check with your subscription administrator, this "
                             "may happen if there are no active subscriptions for the tenant.")

    # -- endpoints -------------------------------------------------------------------------
    def _handle(self, request: RecordedRequest, method_id: str, segment: str) -> FakeResponse:
        tenant = self._tenant(segment)
        if method_id == "identity.openid":
            if tenant is None:
                return self._tenant_not_found(segment, "invalid_tenant")
            return _json(200, self._openid(request, segment), TOKEN_JSON)
        if method_id == "identity.keys":
            return _json(200, {"keys": []}, TOKEN_JSON)
        if tenant is None:
            return self._tenant_not_found(segment)
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace"),
                                                keep_blank_values=True).items()}
        try:
            if self._failures:
                raise self._failures.pop(0)
            if method_id == "identity.devicecode":
                return self._device_authorization(form, tenant)
            return self._token(request, form, tenant)
        except _TokenFailure as failure:
            return self._failure(failure.status, failure.error, failure.code,
                                 failure.description, failure.suberror)

    def _openid(self, request: RecordedRequest, segment: str) -> dict[str, Any]:
        """The discovery document; endpoints are named after the request's Host so msal,
        given ``https://127.0.0.1:<port>/<tenant>``, keeps using that origin."""
        host = request.header("Host") or "login.microsoftonline.com"
        tenant = segment if segment.lower() in ("organizations", "common") else self.tenant_id
        issuer_tenant = "{tenantid}" if tenant != self.tenant_id else tenant
        base = f"https://{host}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"https://{host}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                 "auth_time", "acr", "nonce", "preferred_username", "name",
                                 "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _app(self, client_id: str | None, tenant: str) -> AppRegistration:
        if not client_id:
            raise _TokenFailure(400, "invalid_request", 900144, "The request body must "
                                "contain the following parameter: 'client_id'.")
        app = self.apps.get(client_id)
        if app is None:
            raise _TokenFailure(400, "unauthorized_client", 700016, f"Application with "
                                f"identifier '{client_id}' was not found in the directory "
                                f"'{self.tenant_domain}'. This can happen if the application "
                                "has not been installed by the administrator of the tenant or "
                                "consented to by any user in the tenant. You may have sent "
                                "your authentication request to the wrong tenant.")
        return app

    def _authenticate_client(self, app: AppRegistration, form: Mapping[str, str],
                             request: RecordedRequest, *, required: bool) -> str | None:
        """Check a client secret (post or basic) or a certificate assertion; returns
        ``"1"``/``"2"`` as ``appidacr`` does (secret/certificate), None for a public client."""
        secret = form.get("client_secret")
        basic = request.header("Authorization") or ""
        if basic.lower().startswith("basic "):
            with contextlib.suppress(ValueError, binascii.Error):
                _, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        assertion = form.get("client_assertion")
        if assertion:
            if form.get("client_assertion_type") != (
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
                raise _TokenFailure(400, "invalid_request", 50027, "Invalid JWT token. The "
                                    "client_assertion_type is not supported.")
            parts = _jwt_parts(assertion)
            if parts is None:
                raise _TokenFailure(400, "invalid_request", 50027, "JWT token is invalid or "
                                    "malformed.")
            header, claims = parts
            if claims.get("sub") != app.client_id or claims.get("iss") != app.client_id:
                raise _TokenFailure(400, "invalid_request", 700021, "Client assertion "
                                    "application identifier doesn't match 'client_id' "
                                    "parameter.")
            thumbs = set()
            for key in ("x5t", "x5t#S256"):
                if isinstance(header.get(key), str):
                    with contextlib.suppress(ValueError, binascii.Error):
                        thumbs.add(_b64url_decode(header[key]).hex())
            if not thumbs & app.thumbprints:
                shown = ", ".join(sorted(t.upper() for t in thumbs)) or "none"
                raise _TokenFailure(401, "invalid_client", 700027, "The certificate with "
                                    "identifier used to sign the client assertion is not "
                                    "registered on application. [Reason - The key was not "
                                    f"found., Thumbprint of key used by client: '{shown}']")
            return "2"
        if secret is not None:
            if app.secret is None or secret != app.secret:
                raise _TokenFailure(401, "invalid_client", 7000215, "Invalid client secret "
                                    "provided. Ensure the secret being sent in the request is "
                                    "the client secret value, not the client secret ID, for a "
                                    f"secret added to app '{app.client_id}'.")
            return "1"
        if required or not app.public:
            raise _TokenFailure(401, "invalid_client", 7000218, "The request body must "
                                "contain the following parameter: 'client_assertion' or "
                                "'client_secret'.")
        return None

    def _token(self, request: RecordedRequest, form: Mapping[str, str],
               tenant: str) -> FakeResponse:
        grant = form.get("grant_type")
        app = self._app(form.get("client_id"), tenant)
        if grant == "client_credentials":
            acr = self._authenticate_client(app, form, request, required=True)
            audience = self._default_scope_audience(form.get("scope"), tenant)
            roles = app.roles if audience == GRAPH_HOST else ()
            token = self._mint(grant, app.client_id, tenant, audience, roles=roles,
                               acr=acr or "1", app=app)
            return _json(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                               "ext_expires_in": self.token_lifetime,
                               "access_token": token.access_token}, TOKEN_JSON)
        if grant in ("urn:ietf:params:oauth:grant-type:device_code", "device_code"):
            acr = self._authenticate_client(app, form, request, required=False)
            return self._device_token(app, form, tenant, acr)
        if grant == "refresh_token":
            acr = self._authenticate_client(app, form, request, required=False)
            return self._refresh_token(app, form, tenant, acr)
        raise _TokenFailure(400, "unsupported_grant_type", 70003, "The app requested an "
                            f"unsupported grant type '{grant}'.")

    def _default_scope_audience(self, scope: str | None, tenant: str) -> str:
        scopes = (scope or "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _TokenFailure(400, "invalid_scope", 1002012, f"The provided value for scope "
                                f"{scope or ''} is not valid. Client credential flows must "
                                "have a scope value with /.default suffixed to the resource "
                                "identifier (application ID URI).")
        resource = scopes[0][: -len("/.default")]
        if resource in (GRAPH_HOST, GRAPH_HOST + "/", GRAPH_APP_ID):
            return GRAPH_HOST
        if re.fullmatch(r"https://[a-z0-9-]+(-admin|-my)?\.sharepoint\.com", resource):
            return resource
        raise _TokenFailure(400, "invalid_resource", 500011, f"The resource principal named "
                            f"{resource} was not found in the tenant named "
                            f"{self.tenant_domain}. This can happen if the application has "
                            "not been installed by the administrator of the tenant or "
                            "consented to by any user in the tenant. You might have sent "
                            "your authentication request to the wrong tenant.")

    def _delegated_scopes(self, app: AppRegistration, scope: str | None) -> tuple[str, ...]:
        """Requested delegated Graph scopes (short names) after consent checks."""
        requested: list[str] = []
        for raw in (scope or "").split():
            name = raw
            for prefix in (GRAPH_HOST + "/", GRAPH_APP_ID + "/"):
                if raw.lower().startswith(prefix):
                    name = raw[len(prefix):]
            if name in _OIDC_SCOPES:
                continue
            if name == ".default":
                requested.extend(app.delegated_scopes)
                continue
            known = {p.lower(): p for p in GRAPH_PERMISSIONS}
            if name.lower() not in known:
                raise _TokenFailure(400, "invalid_scope", 70011, "The provided request must "
                                    "include a 'scope' input parameter. The provided value "
                                    "for the input parameter 'scope' is not valid. The scope "
                                    f"{raw} is not valid.")
            requested.append(known[name.lower()])
        missing = [s for s in requested if s not in app.delegated_scopes]
        if missing:
            raise _TokenFailure(400, "invalid_grant", 65001, "The user or administrator has "
                                "not consented to use the application with ID "
                                f"'{app.client_id}' named '{app.display_name}'. Send an "
                                "interactive authorization request for this user and "
                                "resource.", "consent_required")
        return tuple(dict.fromkeys(requested))

    def _device_authorization(self, form: Mapping[str, str], tenant: str) -> FakeResponse:
        app = self._app(form.get("client_id"), tenant)
        scopes = self._delegated_scopes(app, form.get("scope"))
        user_code = "".join(self._rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                            for _ in range(9))
        device_code = "DAQABAAEAAA" + _b64url(self._rng.randbytes(96))
        oidc = tuple(s for s in (form.get("scope") or "").split() if s in _OIDC_SCOPES)
        self._device_codes[device_code] = _DeviceCode(
            device_code, user_code, app.client_id, tenant, scopes,
            time.time() + self.device_lifetime, oidc)
        return _json(200, {
            "user_code": user_code, "device_code": device_code,
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": self.device_lifetime, "interval": self.device_interval,
            "message": "To sign in, use a web browser to open the page "
                       f"https://microsoft.com/devicelogin and enter the code {user_code} to "
                       "authenticate.",
        }, TOKEN_JSON)

    def _device_token(self, app: AppRegistration, form: Mapping[str, str], tenant: str,
                      acr: str | None) -> FakeResponse:
        pending = self._device_codes.get(form.get("device_code") or "")
        if pending is None or pending.client_id != app.client_id:
            raise _TokenFailure(400, "invalid_grant", 70000, "The provided value for the "
                                "input parameter 'device_code' is not valid.")
        if pending.expires_at <= time.time():
            raise _TokenFailure(400, "expired_token", 70020, "The provided value for the "
                                "input parameter 'device_code' is not valid. This device code "
                                "has expired.")
        if pending.redeemed:
            raise _TokenFailure(400, "invalid_grant", 54005, "OAuth2 Authorization code was "
                                "already redeemed, please retry with a new valid code or use "
                                "an existing refresh token.")
        if pending.approved_by is None:
            raise _TokenFailure(400, "authorization_pending", 70016, "OAuth 2.0 device flow "
                                "error. Authorization is pending. Continue polling.")
        pending.redeemed = True
        asked = [s for s in (form.get("scope") or "").split() if s in _OIDC_SCOPES]
        oidc = list(dict.fromkeys([*pending.oidc, *asked]))
        return self._user_tokens(app, tenant, pending.approved_by, pending.scopes, oidc,
                                 form.get("grant_type") or "device_code", acr)

    def _refresh_token(self, app: AppRegistration, form: Mapping[str, str], tenant: str,
                       acr: str | None) -> FakeResponse:
        grant = self._refresh.get(form.get("refresh_token") or "")
        if grant is None or grant.client_id != app.client_id:
            raise _TokenFailure(400, "invalid_grant", 9002313, "Invalid request. Request is "
                                "malformed or invalid.")
        if grant.revoked:
            raise _TokenFailure(400, "invalid_grant", 50173, "The provided grant has expired "
                                "due to it being revoked, a fresh auth token is needed. The "
                                "user might have changed or reset their password.")
        requested = self._delegated_scopes(app, form.get("scope")) or grant.scopes
        if set(requested) - set(grant.scopes):
            raise _TokenFailure(400, "invalid_grant", 65001, "The user or administrator has "
                                "not consented to use the application with ID "
                                f"'{app.client_id}' named '{app.display_name}'.",
                                "consent_required")
        grant.revoked = True  # refresh tokens rotate
        oidc = [s for s in (form.get("scope") or "").split() if s in _OIDC_SCOPES]
        return self._user_tokens(app, tenant, grant.user, requested, oidc, "refresh_token",
                                 acr)

    def _user_tokens(self, app: AppRegistration, tenant: str, user: str,
                     scopes: Sequence[str], oidc: Sequence[str], grant_type: str,
                     acr: str | None) -> FakeResponse:
        graph_user = self._server.graph._ensure_user(user)
        refresh = None
        if "offline_access" in oidc:
            refresh = "1.AQ" + _b64url(self._rng.randbytes(120))
            self._refresh[refresh] = _RefreshGrant(app.client_id, tenant, user, tuple(scopes))
        token = self._mint(grant_type, app.client_id, tenant, GRAPH_HOST, scopes=scopes,
                           user=user, acr=acr or "0", app=app, refresh=refresh)
        now = int(time.time())
        id_claims = {"aud": app.client_id, "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
                     "iat": now, "nbf": now, "exp": now + 3600, "name": graph_user.display_name,
                     "oid": graph_user.id, "preferred_username": user,
                     "sub": _b64url(hashlib.sha256((user + app.client_id).encode()).digest()),
                     "tid": tenant, "ver": "2.0"}
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join([*scopes, *[s for s in oidc if s != "offline_access"]]),
            "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime,
            "access_token": token.access_token,
        }
        if refresh:
            body["refresh_token"] = refresh
        if "openid" in oidc:
            body["id_token"] = _jwt({"typ": "JWT", "alg": "RS256", "kid": "fake"}, id_claims,
                                    self._rng)
        body["client_info"] = _b64url(json.dumps({"uid": graph_user.id, "utid": tenant}).encode())
        return _json(200, body, TOKEN_JSON)

    def _mint(self, grant_type: str, client_id: str, tenant: str, audience: str, *,
              roles: Iterable[str] = (), scopes: Iterable[str] = (), user: str | None = None,
              acr: str = "1", app: AppRegistration | None = None,
              refresh: str | None = None) -> IssuedToken:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now,
            "nbf": now, "exp": now + self.token_lifetime,
            "app_displayname": app.display_name if app else client_id, "appid": client_id,
            "appidacr": acr, "idp": f"https://sts.windows.net/{tenant}/",
            "idtyp": "app" if user is None else "user",
        }
        roles, scopes = tuple(roles), tuple(scopes)
        if user is None:
            claims["oid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}"))
            if roles:
                claims["roles"] = list(roles)
        else:
            graph_user = self._server.graph._ensure_user(user)
            claims.update({"name": graph_user.display_name, "oid": graph_user.id,
                           "scp": " ".join(scopes), "unique_name": user, "upn": user,
                           "preferred_username": user})
        claims.update({"sub": claims["oid"], "tid": tenant, "uti": _b64url(self._rng.randbytes(16)),
                       "ver": "1.0"})
        access = _jwt({"typ": "JWT", "nonce": _b64url(self._rng.randbytes(32)), "alg": "RS256",
                       "x5t": "fake", "kid": "fake"}, claims, self._rng)
        token = IssuedToken(access, grant_type, client_id, audience, frozenset(roles),
                            frozenset(scopes), user, time.time() + self.token_lifetime,
                            claims, refresh)
        self.tokens[access] = token
        self.issued.append(token)
        return token


# ---------------------------------------------------------------------------------------
# Routing: a request path -> method id and arguments (no state is read here)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    method_id: str
    args: Mapping[str, Any] = field(default_factory=dict)


_QUOTED = r"'((?:[^']|'')*)'"
_WS_CALL = re.compile(rf"worksheets\({_QUOTED}\)", re.IGNORECASE)
_TABLE_CALL = re.compile(rf"tables\({_QUOTED}\)", re.IGNORECASE)
_RANGE_CALL = re.compile(rf"range\(address={_QUOTED}\)", re.IGNORECASE)
_CELL_CALL = re.compile(r"cell\(row=(\d+),\s*column=(\d+)\)", re.IGNORECASE)
_USED_CALL = re.compile(r"usedrange(?:\(valuesonly=(true|false)\))?", re.IGNORECASE)
_ITEM_AT = re.compile(r"itemat\(index=(\d+)\)", re.IGNORECASE)
_IDENTITY = re.compile(
    r"/(?P<tenant>[^/]+)/(?:(?P<openid>v2\.0/\.well-known/openid-configuration)|"
    r"oauth2/v2\.0/(?P<op>token|devicecode)|(?P<keys>discovery/v2\.0/keys))", re.IGNORECASE)
DOWNLOAD_PATH = "/_layouts/15/download.aspx"


def _unquote_name(text: str) -> str:
    return text.replace("''", "'")


def _parse_path(method: str, raw_path: str) -> _Parsed:
    """Name the Graph or identity method a request is for (paths match case-insensitively,
    as Graph's do: office365 sends ``sendmail``)."""
    path = unquote(raw_path)
    m = _IDENTITY.fullmatch(path)
    if m:
        if m.group("openid"):
            return _Parsed("identity.openid" if method == "GET" else "identity.methodNotAllowed",
                           {"tenant": m.group("tenant")})
        if m.group("keys"):
            return _Parsed("identity.keys", {"tenant": m.group("tenant")})
        op = m.group("op").lower()
        if method != "POST":
            return _Parsed("identity.methodNotAllowed", {"tenant": m.group("tenant")})
        return _Parsed(f"identity.{op}", {"tenant": m.group("tenant")})
    if path.lower() == DOWNLOAD_PATH and method in ("GET", "HEAD"):
        return _Parsed("graph.driveItem.download")
    if not path.lower().startswith("/v1.0/"):
        segment = path.strip("/").split("/")[0] or "/"
        return _Parsed("graph.unknown", {"segment": segment})
    return _parse_graph(method, path[len("/v1.0"):])


def _want(method: str, allowed: str, method_id: str, args: dict[str, Any]) -> _Parsed:
    if method not in allowed.split("|"):
        return _Parsed("graph.methodNotAllowed", {**args, "for": method_id})
    return _Parsed(method_id, args)


def _parse_graph(method: str, path: str) -> _Parsed:
    low = path.lower()
    if low == "/$batch":
        return _want(method, "POST", "graph.batch", {})
    m = re.fullmatch(r"/(?:me|users/([^/]+))(/sendmail)?", path, re.IGNORECASE)
    if m:
        args = {"user": m.group(1)}
        if m.group(2):
            return _want(method, "POST", "graph.sendMail", args)
        return _want(method, "GET", "graph.user.get", args)
    m = re.fullmatch(r"/shares/([^/]+)/driveitem(/.*)?", path, re.IGNORECASE)
    if m:
        return _parse_item(method, {"share": m.group(1)}, m.group(2) or "")
    m = re.fullmatch(r"/sites/(?P<host>[^/:]+):(?P<path>/[^:]*?)(?::(?P<rest>.*))?", path)
    if m:
        site = {"site_host": m.group("host"), "site_path": m.group("path").rstrip("/")}
        rest = m.group("rest") or ""
        if rest == "":
            return _want(method, "GET", "graph.site.getByPath", site)
        return _parse_site_rest(method, site, rest)
    m = re.fullmatch(r"/sites/([^/]+)(/.*)?", path, re.IGNORECASE)
    if m:
        site = {"site_id": m.group(1)}
        if not m.group(2):
            return _want(method, "GET", "graph.site.get", site)
        return _parse_site_rest(method, site, m.group(2))
    m = re.fullmatch(r"/(?:me|users/([^/]+))/drive(/.*)?", path, re.IGNORECASE)
    if m:
        return _parse_drive(method, {"drive_user": m.group(1) or "me"}, m.group(2) or "")
    m = re.fullmatch(r"/drives/([^/]+)(/.*)?", path, re.IGNORECASE)
    if m:
        return _parse_drive(method, {"drive_id": m.group(1)}, m.group(2) or "")
    segment = path.strip("/").split("/")[0]
    return _Parsed("graph.unknown", {"segment": segment})


def _parse_site_rest(method: str, site: dict[str, Any], rest: str) -> _Parsed:
    m = re.fullmatch(r"/drive(/.*)?", rest, re.IGNORECASE)
    if m:
        return _parse_drive(method, {**site, "drive_site": True}, m.group(1) or "")
    m = re.fullmatch(r"/drives/([^/]+)(/.*)?", rest, re.IGNORECASE)
    if m:
        return _parse_drive(method, {**site, "drive_id": m.group(1)}, m.group(2) or "")
    return _Parsed("graph.unknown", {"segment": rest.strip("/").split("/")[0]})


def _parse_drive(method: str, drive: dict[str, Any], rest: str) -> _Parsed:
    if rest in ("", "/"):
        return _want(method, "GET", "graph.drive.get", drive)
    m = re.fullmatch(r"/items/([^/]+)(/.*)?", rest, re.IGNORECASE)
    if m:
        return _parse_item(method, {**drive, "item_id": m.group(1)}, m.group(2) or "")
    m = re.fullmatch(r"/root:(/[^:]*)(?::(.*))?", rest, re.IGNORECASE)
    if m:
        return _parse_item(method, {**drive, "item_path": m.group(1)}, m.group(2) or "")
    return _Parsed("graph.unknown", {"segment": rest.strip("/").split("/")[0].split(":")[0]})


def _parse_item(method: str, item: dict[str, Any], rest: str) -> _Parsed:
    if rest in ("", "/"):
        method_id = "graph.shares.driveItem" if "share" in item else "graph.driveItem.get"
        return _want(method, "GET", method_id, item)
    if rest.lower() == "/content":
        return _want(method, "GET|HEAD", "graph.driveItem.content", item)
    if rest.lower() == "/workbook" or rest.lower().startswith("/workbook/"):
        return _parse_workbook(method, item, [s for s in rest.split("/")[2:] if s != ""])
    return _Parsed("graph.unknown", {"segment": rest.strip("/").split("/")[0]})


def _parse_workbook(method: str, item: dict[str, Any], segs: list[str]) -> _Parsed:
    args: dict[str, Any] = dict(item)
    if not segs:
        return _Parsed("graph.unknown", {"segment": "workbook"})
    head = segs[0].lower()
    if len(segs) == 1 and head in ("createsession", "closesession", "refreshsession"):
        name = {"createsession": "createSession", "closesession": "closeSession",
                "refreshsession": "refreshSession"}[head]
        return _want(method, "POST", f"graph.workbook.{name}", args)
    if head == "worksheets" and len(segs) == 1:
        if method == "POST":
            return _Parsed("graph.workbook.worksheets.add", args)
        return _want(method, "GET", "graph.workbook.worksheets.list", args)
    if head == "worksheets" and len(segs) == 2 and segs[1].lower() == "add":
        return _want(method, "POST", "graph.workbook.worksheets.add", args)
    ws_call = _WS_CALL.fullmatch(segs[0])
    if ws_call or (head == "worksheets" and len(segs) >= 2):
        if ws_call:
            args["sheet"], rest = _unquote_name(ws_call.group(1)), segs[1:]
        else:
            args["sheet"], rest = segs[1], segs[2:]
        return _parse_worksheet(method, args, rest)
    table_call = _TABLE_CALL.fullmatch(segs[0])
    if head == "tables" and len(segs) == 1:
        return _want(method, "GET", "graph.workbook.tables.list", args)
    if table_call or (head == "tables" and len(segs) >= 2):
        if table_call:
            args["table"], rest = _unquote_name(table_call.group(1)), segs[1:]
        else:
            args["table"], rest = segs[1], segs[2:]
        return _parse_table(method, args, rest)
    return _Parsed("graph.unknown", {"segment": segs[0]})


def _parse_worksheet(method: str, args: dict[str, Any], rest: list[str]) -> _Parsed:
    if not rest:
        if method == "DELETE":
            return _Parsed("graph.workbook.worksheet.delete", args)
        return _want(method, "GET", "graph.workbook.worksheet.get", args)
    head = rest[0]
    used = _USED_CALL.fullmatch(head)
    if used and len(rest) == 1:
        args["values_only"] = (used.group(1) or "false").lower() == "true"
        return _want(method, "GET", "graph.workbook.usedRange", args)
    rng = _RANGE_CALL.fullmatch(head)
    cell = _CELL_CALL.fullmatch(head)
    if rng or cell:
        if rng:
            args["address"] = _unquote_name(rng.group(1))
        else:
            assert cell is not None
            args["cell"] = (int(cell.group(1)), int(cell.group(2)))
        return _parse_range(method, args, rest[1:])
    table_args = {k: v for k, v in args.items() if k != "sheet"}
    table_call = _TABLE_CALL.fullmatch(head)
    if table_call:
        return _parse_table(method, {**table_args, "table": _unquote_name(table_call.group(1))},
                            rest[1:])
    if head.lower() == "tables":
        if len(rest) == 1:
            return _want(method, "GET", "graph.workbook.tables.list", args)
        return _parse_table(method, {**table_args, "table": rest[1]}, rest[2:])
    if head.lower() == "freezepanes":
        # freezePanes is not part of Graph v1.0 (no worksheetfreezepanes-* page exists for
        # v1.0 nor beta; the worksheet resource lists no such relationship), so Graph answers
        # it as an unknown segment.
        return _Parsed("graph.workbook.freezePanes", {"segment": "freezePanes"})
    return _Parsed("graph.unknown", {"segment": head})


def _parse_range(method: str, args: dict[str, Any], rest: list[str]) -> _Parsed:
    key = "/".join(rest).lower()
    if key == "":
        if method == "PATCH":
            return _Parsed("graph.workbook.range.update", args)
        return _want(method, "GET", "graph.workbook.range.get", args)
    if key in ("delete", "clear", "insert"):
        return _want(method, "POST", f"graph.workbook.range.{key}", args)
    if key in ("format", "format/font", "format/fill"):
        part = {"format": "format", "format/font": "font", "format/fill": "fill"}[key]
        return _want(method, "PATCH|GET", "graph.workbook.range.format", {**args, "part": part})
    if key in ("format/autofitcolumns", "format/autofitrows"):
        what = "columns" if key.endswith("columns") else "rows"
        return _want(method, "POST", "graph.workbook.range.autofit", {**args, "what": what})
    return _Parsed("graph.unknown", {"segment": rest[0]})


def _parse_table(method: str, args: dict[str, Any], rest: list[str]) -> _Parsed:
    key = "/".join(rest).lower()
    if key == "":
        return _want(method, "GET", "graph.workbook.table.get", args)
    if key == "rows":
        if method == "POST":
            return _Parsed("graph.workbook.table.rows.add", args)
        return _want(method, "GET", "graph.workbook.table.rows.list", args)
    if key == "rows/add":
        return _want(method, "POST", "graph.workbook.table.rows.add", args)
    if len(rest) == 2 and rest[0].lower() == "rows":
        at = _ITEM_AT.fullmatch(rest[1])
        if at:
            return _want(method, "GET", "graph.workbook.table.row.get",
                         {**args, "index": int(at.group(1))})
    if key in ("headerrowrange", "range", "databodyrange", "totalrowrange"):
        return _want(method, "GET", "graph.workbook.table.range", {**args, "part": key})
    if key == "columns":
        return _want(method, "GET", "graph.workbook.table.columns.list", args)
    return _Parsed("graph.unknown", {"segment": rest[0]})


# ---------------------------------------------------------------------------------------
# Graph state
# ---------------------------------------------------------------------------------------


@dataclass
class _User:
    id: str
    upn: str
    display_name: str
    drive_id: str | None = None

    def json(self) -> dict[str, Any]:
        given, _, surname = self.display_name.partition(" ")
        return {"@odata.context": f"{METADATA}#users/$entity", "businessPhones": [],
                "displayName": self.display_name, "givenName": given or None,
                "jobTitle": None, "mail": self.upn, "mobilePhone": None,
                "officeLocation": None, "preferredLanguage": None, "surname": surname or None,
                "userPrincipalName": self.upn, "id": self.id}


@dataclass
class _Site:
    id: str
    hostname: str
    path: str
    display_name: str
    created: dt.datetime
    drive_id: str = ""
    denied: bool = False
    grants: dict[str, set[str]] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"https://{self.hostname}{quote(self.path)}"

    def json(self) -> dict[str, Any]:
        return {"@odata.context": f"{METADATA}#sites/$entity",
                "createdDateTime": _graph_time(self.created), "description": "",
                "id": self.id, "lastModifiedDateTime": _graph_time(self.created),
                "name": self.path.rsplit("/", 1)[-1] or self.hostname, "webUrl": self.web_url,
                "displayName": self.display_name, "root": {},
                "siteCollection": {"hostname": self.hostname}}


@dataclass
class _Drive:
    id: str
    drive_type: str  # "documentLibrary" (a site's) or "business" (a user's OneDrive)
    name: str
    web_url: str
    created: dt.datetime
    site_id: str | None = None
    owner: str | None = None  # UPN of a OneDrive's owner
    folder_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class _Item:
    id: str
    drive_id: str
    folder: str  # "" for the root, else "Forms/Sub" (no slashes at the ends)
    name: str
    uid: str  # the GUID inside eTag/cTag
    created: dt.datetime
    modified: dt.datetime
    workbook: _Workbook
    created_by: dict[str, Any]
    modified_by: dict[str, Any]
    e_version: int = 1
    c_version: int = 1
    lock: tuple[int, str] | None = None
    cached: bytes | None = None

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def etag(self) -> str:
        return f'"{{{self.uid}}},{self.e_version}"'

    @property
    def ctag(self) -> str:
        return f'"c:{{{self.uid}}},{self.c_version}"'

    def content(self) -> bytes:
        if self.cached is None:
            self.cached = _xlsx_bytes(self.workbook)
        return self.cached


@dataclass
class _Session:
    id: str
    item_id: str
    persist: bool
    workbook: _Workbook | None  # a private copy for a non-persistent session
    valid: bool = True


@dataclass(frozen=True)
class SentMail:
    """One message accepted by sendMail: ``message`` is the parsed MIME message, or the
    JSON ``message`` object as sent."""

    sender_id: str
    sender: str
    message: EmailMessage | dict[str, Any]
    mime: bool
    save_to_sent_items: bool
    client_id: str


@dataclass(frozen=True)
class SheetFormats:
    """Formatting set on a worksheet (A1 cell keys, column letters)."""

    bold: frozenset[str]
    italic: frozenset[str]
    fills: Mapping[str, str]
    font_colors: Mapping[str, str]
    wrap_text: frozenset[str]
    alignments: Mapping[str, str]
    number_formats: Mapping[str, str]
    column_widths: Mapping[str, float]
    row_heights: Mapping[int, float]
    autofit: tuple[str, ...]


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = ODATA_JSON


_READ_ALL = frozenset({"Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All",
                       "Sites.ReadWrite.All", "Sites.Manage.All", "Sites.FullControl.All"})
_WRITE_ALL = frozenset({"Files.ReadWrite.All", "Sites.ReadWrite.All", "Sites.Manage.All",
                        "Sites.FullControl.All"})
_GRANT_READ = frozenset({"read", "write", "owner", "fullcontrol"})
_GRANT_WRITE = frozenset({"write", "owner", "fullcontrol"})
_WRITES = frozenset({
    "graph.workbook.worksheets.add", "graph.workbook.worksheet.delete",
    "graph.workbook.range.update", "graph.workbook.range.delete", "graph.workbook.range.clear",
    "graph.workbook.range.insert", "graph.workbook.range.format",
    "graph.workbook.range.autofit", "graph.workbook.table.rows.add",
})
_SELECTABLE = {
    "driveItem": frozenset({
        "id", "name", "eTag", "cTag", "size", "createdDateTime", "lastModifiedDateTime",
        "webUrl", "file", "folder", "parentReference", "createdBy", "lastModifiedBy",
        "fileSystemInfo", "description", "webDavUrl", "shared", "sharepointIds",
        "@microsoft.graph.downloadUrl", "content.downloadUrl", "root", "package", "deleted"}),
    "site": frozenset({"id", "name", "displayName", "webUrl", "createdDateTime",
                       "lastModifiedDateTime", "description", "root", "siteCollection",
                       "sharepointIds", "isPersonalSite"}),
    "drive": frozenset({"id", "name", "driveType", "webUrl", "createdDateTime",
                        "lastModifiedDateTime", "description", "owner", "quota", "createdBy"}),
    "user": frozenset({"id", "displayName", "givenName", "surname", "mail", "jobTitle",
                       "userPrincipalName", "businessPhones", "mobilePhone", "officeLocation",
                       "preferredLanguage"}),
    "workbookRange": frozenset({
        "address", "addressLocal", "cellCount", "columnCount", "columnHidden", "columnIndex",
        "formulas", "formulasLocal", "formulasR1C1", "hidden", "numberFormat", "rowCount",
        "rowHidden", "rowIndex", "text", "valueTypes", "values"}),
}
_RANGE_PROPS = frozenset({"values", "formulas", "formulasLocal", "formulasR1C1",
                          "numberFormat", "rowHidden", "columnHidden"})
_FORMAT_PROPS = frozenset({"columnWidth", "rowHeight", "wrapText", "horizontalAlignment",
                           "verticalAlignment"})
_FONT_PROPS = frozenset({"bold", "italic", "color", "name", "size", "underline"})
_FILL_PROPS = frozenset({"color"})


def _selection(method_id: str) -> str | None:
    if method_id in ("graph.driveItem.get", "graph.shares.driveItem"):
        return "driveItem"
    if method_id in ("graph.site.get", "graph.site.getByPath"):
        return "site"
    if method_id == "graph.drive.get":
        return "drive"
    if method_id == "graph.user.get":
        return "user"
    if method_id in ("graph.workbook.range.get", "graph.workbook.usedRange",
                     "graph.workbook.table.range", "graph.workbook.range.update"):
        return "workbookRange"
    return None


_PARAMS: dict[str, frozenset[str]] = {
    "graph.driveItem.get": frozenset({"$select", "$expand"}),
    "graph.shares.driveItem": frozenset({"$select", "$expand"}),
    "graph.site.get": frozenset({"$select", "$expand"}),
    "graph.site.getByPath": frozenset({"$select", "$expand"}),
    "graph.drive.get": frozenset({"$select", "$expand"}),
    "graph.user.get": frozenset({"$select"}),
    "graph.workbook.worksheets.list": frozenset({"$select", "$top", "$skip"}),
    "graph.workbook.tables.list": frozenset({"$select", "$top", "$skip"}),
    "graph.workbook.table.rows.list": frozenset({"$select", "$top", "$skip"}),
    "graph.workbook.table.columns.list": frozenset({"$select", "$top", "$skip"}),
    "graph.workbook.range.get": frozenset({"$select"}),
    "graph.workbook.usedRange": frozenset({"$select"}),
    "graph.workbook.table.range": frozenset({"$select"}),
    "graph.driveItem.download": frozenset({"UniqueId", "tempauth", "ApiVersion"}),
}


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _grid_shape(name: str, grid: Any, box: _Box) -> list[list[Any]]:
    if not isinstance(grid, list) or not all(isinstance(row, list) for row in grid):
        raise _Rejected(f"{name} is not a 2-D array", _invalid_argument())
    if len(grid) != box.rows or any(len(row) != box.cols for row in grid):
        shape = f"{len(grid)}x{max((len(r) for r in grid), default=0)}"
        raise _Rejected(f"{name} is {shape} but the range {box.local()} is "
                        f"{box.rows}x{box.cols}",
                        _invalid_argument(_DIMENSION_MISMATCH))
    for row in grid:
        for value in row:
            if not _is_scalar(value):
                raise _Rejected(f"{name} holds a value that is not a JSON scalar: {value!r}",
                                _invalid_argument())
    return grid


class GraphFake:
    """State and handlers of the fake Graph (``server.graph``).

    Setup helpers take the server lock, so tests may call them while a client is talking to
    the server. Cell helpers use Excel's numbering: ``row`` 1 is the first row and ``col`` is
    1-based or a column letter.
    """

    def __init__(self, server: MicrosoftFakeServer, rng: random.Random) -> None:
        self._server = server
        self._rng = rng
        self.users: dict[str, _User] = {}
        self.sites: dict[str, _Site] = {}
        self.drives: dict[str, _Drive] = {}
        self.items: dict[str, _Item] = {}
        self.sent: list[SentMail] = []
        self._sessions: dict[str, _Session] = {}
        self._shares: dict[str, str] = {}
        self._downloads: dict[str, tuple[str, float]] = {}

    # -- ids ---------------------------------------------------------------------------------
    def _item_id(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        return "01" + "".join(self._rng.choice(alphabet) for _ in range(32))

    def _drive_id(self) -> str:
        return "b!" + _b64url(self._rng.randbytes(48))

    def _sheet_id(self) -> str:
        return "{" + _guid(self._rng).upper() + "}"

    # -- setup: directory, sites, drives ------------------------------------------------
    def add_user(self, upn: str, display_name: str | None = None) -> str:
        """A user in the tenant (for sendMail and OneDrive); returns the user's id."""
        with self._server.lock:
            return self._ensure_user(upn, display_name).id

    def _ensure_user(self, upn: str, display_name: str | None = None) -> _User:
        user = self.users.get(upn.lower())
        if user is None:
            local = upn.split("@")[0]
            name = display_name or " ".join(p.capitalize() for p in re.split(r"[._-]", local))
            user = _User(_guid(self._rng), upn, name)
            self.users[upn.lower()] = user
        return user

    def _user(self, key: str) -> _User | None:
        lowered = key.lower()
        for user in self.users.values():
            if lowered in (user.upn.lower(), user.id.lower()):
                return user
        return None

    def add_site(self, hostname: str, path: str, *, display_name: str | None = None) -> str:
        """A SharePoint site (``/sites/ops``) with its document library; returns the site
        id (``contoso.sharepoint.com,<site-collection guid>,<web guid>``)."""
        with self._server.lock:
            path = "/" + path.strip("/")
            site_id = f"{hostname},{_guid(self._rng)},{_guid(self._rng)}"
            now = _utcnow()
            site = _Site(site_id, hostname, path,
                         display_name or path.rsplit("/", 1)[-1].replace("-", " ").title(), now)
            drive = _Drive(self._drive_id(), "documentLibrary", "Documents",
                           f"{site.web_url}/Shared%20Documents", now, site_id=site_id)
            site.drive_id = drive.id
            self.sites[site_id] = site
            self.drives[drive.id] = drive
            return site_id

    def drive_of_site(self, site_id: str) -> str:
        with self._server.lock:
            return self.sites[site_id].drive_id

    def add_user_drive(self, upn: str) -> str:
        """The user's OneDrive (created with the user if needed); returns the drive id."""
        with self._server.lock:
            user = self._ensure_user(upn)
            if user.drive_id is None:
                tenant = self._server.identity.tenant_domain.split(".")[0]
                mangled = re.sub(r"[^A-Za-z0-9]", "_", upn)
                drive = _Drive(self._drive_id(), "business", "OneDrive",
                               f"https://{tenant}-my.sharepoint.com/personal/{mangled}/Documents",
                               _utcnow(), owner=user.upn)
                self.drives[drive.id] = drive
                user.drive_id = drive.id
            return user.drive_id

    def deny_site(self, site_id: str, denied: bool = True) -> None:
        """Requests reaching the site or its drive answer 403 accessDenied."""
        with self._server.lock:
            self.sites[site_id].denied = denied

    def grant_site(self, site_id: str, client_id: str, roles: Iterable[str] = ("write",)) -> None:
        """A Sites.Selected permission for an app on one site (``read``/``write``/...)."""
        with self._server.lock:
            self.sites[site_id].grants[client_id] = {r.lower() for r in roles}

    # -- setup: workbooks ------------------------------------------------------------------
    def add_workbook(self, drive_id: str, path: str, sheets: Mapping[str, Sequence[Sequence[Any]]],
                     *, tables: Mapping[str, tuple[str, int]] | None = None,
                     author: str = "manager@contoso.example") -> str:
        """Upload an .xlsx at ``path`` (``Forms/Near miss.xlsx``); cells are Python values
        (dates become serial numbers with a date format). ``tables`` maps a table name to
        (sheet name, header rows = 1) and covers that sheet's used range."""
        with self._server.lock:
            drive = self.drives[drive_id]
            folder, _, name = path.strip("/").rpartition("/")
            if any(i.drive_id == drive_id and i.path.lower() == path.strip("/").lower()
                   for i in self.items.values()):
                raise ValueError(f"{path} already exists")
            book = _Workbook()
            for sheet_name, rows in sheets.items():
                sheet = _Sheet(self._sheet_id(), sheet_name)
                for r, row in enumerate(rows):
                    for c, value in enumerate(row):
                        self._put(sheet, r, c, value)
                book.sheets.append(sheet)
            for table_name, (sheet_name, header_rows) in (tables or {}).items():
                if header_rows != 1:
                    raise ValueError("Excel tables have exactly one header row")
                sheet = book.sheet(sheet_name)
                box = sheet.used_box(values_only=True) or _Box(0, 0, 0, 0)
                book.tables.append(_Table(self._sheet_id(), table_name, sheet, box,
                                          str(len(book.tables) + 1)))
            user = self._ensure_user(author)
            who = {"user": {"email": user.upn, "id": user.id, "displayName": user.display_name}}
            now = _utcnow()
            item = _Item(self._item_id(), drive.id, folder, name, _guid(self._rng).upper(), now,
                         now, book, who, dict(who))
            self.items[item.id] = item
            return item.id

    def forms_workbook(self, drive_id: str, path: str, header: Sequence[str],
                       rows: Sequence[Sequence[Any]], *, sheet: str = "Sheet1",
                       table: str = "Table1") -> str:
        """The workbook Microsoft Forms keeps in sync with a form's responses: one sheet with
        one table over it, columns ``ID, Start time, Completion time, Email, Name`` and then
        one per question (pass them in ``header``)."""
        return self.add_workbook(drive_id, path, {sheet: [list(header), *map(list, rows)]},
                                 tables={table: (sheet, 1)})

    @staticmethod
    def _put(sheet: _Sheet, r: int, c: int, value: Any) -> None:
        stored, fmt = _python_value(value)
        if isinstance(stored, str) and stored.startswith("=") and len(stored) > 1:
            sheet.cell(r, c).formula, sheet.cell(r, c).value = stored, None
        elif stored is None:
            if (r, c) in sheet.cells:
                sheet.cells[(r, c)].value = sheet.cells[(r, c)].formula = None
                sheet.prune((r, c))
            return
        else:
            sheet.cell(r, c).value, sheet.cell(r, c).formula = stored, None
        if fmt is not None:
            sheet.cell(r, c).fmt = fmt

    def _edited(self, item_id: str, sheet_name: str) -> tuple[_Item, _Sheet]:
        item = self.items[item_id]
        return item, item.workbook.sheet(sheet_name)

    @staticmethod
    def _col(col: int | str) -> int:
        return column_index(col) if isinstance(col, str) else col - 1

    def set_cell(self, item_id: str, sheet: str, row: int, col: int | str, value: Any) -> None:
        """A manager types ``value`` into a cell in Excel (``None`` clears it)."""
        with self._server.lock:
            item, ws = self._edited(item_id, sheet)
            self._put(ws, row - 1, self._col(col), value)
            self._touch(item, content=True, by_outside=True)

    def append_rows(self, item_id: str, sheet: str, rows: Sequence[Sequence[Any]]) -> None:
        """Rows added under the last used row (by Forms, or typed); a table whose last row
        is right above them grows over them, as tables do when you type under them."""
        with self._server.lock:
            item, ws = self._edited(item_id, sheet)
            used = ws.used_box(values_only=True)
            start = 0 if used is None else used.r1 + 1
            for i, row in enumerate(rows):
                for c, value in enumerate(row):
                    self._put(ws, start + i, c, value)
            for table in item.workbook.tables:
                if table.sheet is ws and table.box.r1 == start - 1 and rows:
                    table.box = replace(table.box, r1=start + len(rows) - 1)
            self._touch(item, content=True, by_outside=True)

    def delete_row(self, item_id: str, sheet: str, row: int) -> None:
        """A manager deletes a whole sheet row (rows below move up)."""
        with self._server.lock:
            item, ws = self._edited(item_id, sheet)
            item.workbook.shift_rows(ws, _Box(row - 1, 0, row - 1, MAX_COLS - 1, "rows"), "up")
            self._touch(item, content=True, by_outside=True)

    def rename(self, item_id: str, name: str) -> None:
        """A metadata-only change: the eTag changes, the cTag does not."""
        with self._server.lock:
            item = self.items[item_id]
            item.name = name
            self._touch(item, content=False, by_outside=True)

    def cells(self, item_id: str, sheet: str) -> list[list[Any]]:
        """Values as stored (dates as serial numbers, formulas as their text, empty cells
        inside a row as None), trailing empty cells and rows trimmed."""
        with self._server.lock:
            item, ws = self._edited(item_id, sheet)
            return item.workbook.rows(ws)

    def text(self, item_id: str, sheet: str, a1: str) -> str:
        """What a cell shows (its ``text``), e.g. a formatted date."""
        with self._server.lock:
            item, ws = self._edited(item_id, sheet)
            box = _parse_box(a1)
            cell = ws.cells.get((box.r0, box.c0)) or _Cell()
            return _format_value(item.workbook.value(ws, box.r0, box.c0), cell.fmt)

    def formats(self, item_id: str, sheet: str) -> SheetFormats:
        with self._server.lock:
            _, ws = self._edited(item_id, sheet)

            def a1(key: tuple[int, int]) -> str:
                return f"{column_letters(key[1])}{key[0] + 1}"

            styles = ws.styles
            return SheetFormats(
                bold=frozenset(a1(k) for k, s in styles.items() if s.get("bold")),
                italic=frozenset(a1(k) for k, s in styles.items() if s.get("italic")),
                fills={a1(k): s["fill"] for k, s in styles.items() if s.get("fill")},
                font_colors={a1(k): s["color"] for k, s in styles.items() if s.get("color")},
                wrap_text=frozenset(a1(k) for k, s in styles.items() if s.get("wrapText")),
                alignments={a1(k): s["horizontalAlignment"] for k, s in styles.items()
                            if s.get("horizontalAlignment")},
                number_formats={a1(k): c.fmt for k, c in ws.cells.items() if c.fmt != "General"},
                column_widths={column_letters(c): w for c, w in sorted(ws.column_widths.items())},
                row_heights={r + 1: h for r, h in sorted(ws.row_heights.items())},
                autofit=tuple(ws.autofit),
            )

    def tables(self, item_id: str) -> dict[str, str]:
        """Each table's name and its current address (``Sheet1!A1:F12``)."""
        with self._server.lock:
            return {t.name: f"{_quote_sheet(t.sheet.name)}!{t.box.local()}"
                    for t in self.items[item_id].workbook.tables}

    def item_json(self, item_id: str) -> dict[str, Any]:
        """The driveItem as ``GET /drives/{d}/items/{i}`` shows it."""
        with self._server.lock:
            return self._item_json(self.items[item_id])

    def content(self, item_id: str) -> bytes:
        with self._server.lock:
            return self.items[item_id].content()

    # -- setup: faults -------------------------------------------------------------------------
    def lock(self, item_id: str, status: int = 423, by: str = "Manager") -> None:
        """Workbook requests fail as when the file is open (and locked) in desktop Excel:
        423 ``notAllowed``/``resourceLocked``, or 409 ``EditModeCannotAcquireLock`` with the
        documented second-level code ``accessConflict``."""
        if status not in (409, 423):
            raise ValueError("lock status is 409 or 423")
        with self._server.lock:
            self.items[item_id].lock = (status, by)

    def unlock(self, item_id: str) -> None:
        with self._server.lock:
            self.items[item_id].lock = None

    def expire_sessions(self, item_id: str | None = None) -> None:
        """Every workbook session times out: requests naming one answer 404 with the
        documented inner code ``invalidSessionReCreatable`` (non-persistent edits are lost)."""
        with self._server.lock:
            for session in self._sessions.values():
                if item_id is None or session.item_id == item_id:
                    session.valid = False

    def open_sessions(self, item_id: str | None = None) -> list[str]:
        with self._server.lock:
            return [s.id for s in self._sessions.values()
                    if s.valid and (item_id is None or s.item_id == item_id)]

    def share_link(self, item_id: str) -> str:
        """An organisation sharing link for the item, usable with ``/shares/{u!...}``."""
        with self._server.lock:
            item = self.items[item_id]
            drive = self.drives[item.drive_id]
            token = "E" + _b64url(self._rng.randbytes(30))[:40]
            if drive.site_id:
                site = self.sites[drive.site_id]
                url = f"https://{site.hostname}/:x:/s/{site.path.rsplit('/', 1)[-1]}/{token}"
            else:
                owner = re.sub(r"[^A-Za-z0-9]", "_", drive.owner or "user")
                host = urlsplit(drive.web_url).netloc
                url = f"https://{host}/:x:/g/personal/{owner}/{token}"
            url += "?e=" + _b64url(self._rng.randbytes(6))[:6]
            self._shares[url.split("?")[0]] = item_id
            return url

    # -- change tracking -----------------------------------------------------------------------
    def _touch(self, item: _Item, *, content: bool, by_outside: bool = False,
               token: IssuedToken | None = None) -> None:
        item.e_version += 1
        now = _utcnow()
        if now <= item.modified:
            now = item.modified + dt.timedelta(milliseconds=1)
        item.modified = now
        if content:
            item.c_version += 1
            item.cached = None
        if token is not None:
            if token.app_only:
                app = self._server.identity.apps.get(token.client_id)
                item.modified_by = {"application": {"id": token.client_id, "displayName":
                                                    app.display_name if app else "App"},
                                    "user": {"displayName": "SharePoint App"}}
            elif token.user:
                user = self._ensure_user(token.user)
                item.modified_by = {"user": {"email": user.upn, "id": user.id,
                                             "displayName": user.display_name}}
        elif by_outside:
            item.modified_by = dict(item.created_by)

    # -- JSON shapes ---------------------------------------------------------------------------
    def _folder_id(self, drive: _Drive, folder: str) -> str:
        key = folder.lower()
        if key not in drive.folder_ids:
            drive.folder_ids[key] = self._item_id()
        return drive.folder_ids[key]

    def _download_url(self, item: _Item) -> str:
        token = _b64url(self._rng.randbytes(48))
        self._downloads[token] = (item.id, time.time() + 3600)
        return (f"{self._server.url}{DOWNLOAD_PATH}?UniqueId={item.uid.lower()}"
                f"&ApiVersion=2.0&tempauth={token}")

    def _item_json(self, item: _Item) -> dict[str, Any]:
        drive = self.drives[item.drive_id]
        content = item.content()
        parent_name = item.folder.rsplit("/", 1)[-1] if item.folder else "root"
        parent: dict[str, Any] = {"driveType": drive.drive_type, "driveId": drive.id,
                                  "id": self._folder_id(drive, item.folder),
                                  "name": parent_name if item.folder else drive.name,
                                  "path": f"/drives/{drive.id}/root:"
                                          + (f"/{item.folder}" if item.folder else "")}
        if drive.site_id:
            parent["siteId"] = drive.site_id
        return {
            "@odata.context": f"{METADATA}#drives('{_odata_key(drive.id)}')/items/$entity",
            "@microsoft.graph.downloadUrl": self._download_url(item),
            "createdDateTime": _graph_time(item.created),
            "eTag": item.etag,
            "id": item.id,
            "lastModifiedDateTime": _graph_time(item.modified),
            "name": item.name,
            "webUrl": f"{drive.web_url}/{quote(item.path)}",
            "cTag": item.ctag,
            "size": len(content),
            "createdBy": copy.deepcopy(item.created_by),
            "lastModifiedBy": copy.deepcopy(item.modified_by),
            "parentReference": parent,
            "file": {"mimeType": XLSX_MIME, "hashes": {"quickXorHash": quick_xor_hash(content)}},
            "fileSystemInfo": {"createdDateTime": _graph_time(item.created),
                               "lastModifiedDateTime": _graph_time(item.modified)},
            "shared": {"scope": "users"},
        }

    def _drive_json(self, drive: _Drive) -> dict[str, Any]:
        owner: dict[str, Any]
        if drive.owner:
            user = self._ensure_user(drive.owner)
            owner = {"user": {"email": user.upn, "id": user.id, "displayName": user.display_name}}
        else:
            owner = {"group": {"displayName": "Owners"}}
        return {"@odata.context": f"{METADATA}#drives/$entity",
                "createdDateTime": _graph_time(drive.created), "description": "",
                "id": drive.id, "lastModifiedDateTime": _graph_time(drive.created),
                "name": drive.name, "webUrl": drive.web_url, "driveType": drive.drive_type,
                "createdBy": {"user": {"displayName": "System Account"}}, "owner": owner,
                "quota": {"deleted": 0, "remaining": 27487790694400, "state": "normal",
                          "total": 27487790694400, "used": 0}}

    @staticmethod
    def _item_odata(item: _Item) -> str:
        return f"/drives('{_odata_key(item.drive_id)}')/items('{_odata_key(item.id)}')"

    def _range_json(self, item: _Item, book: _Workbook, sheet: _Sheet, box: _Box,
                    requested: str | None = None) -> dict[str, Any]:
        grid = book.grid(sheet, box)
        address = f"{_quote_sheet(sheet.name)}!{box.local()}"
        shown = quote(requested if requested is not None else address, safe=":!$")
        return {
            "@odata.context": f"{METADATA}#workbookRange",
            "@odata.type": "#microsoft.graph.workbookRange",
            "@odata.id": f"{self._item_odata(item)}/workbook/worksheets("
                         f"%27{_odata_key(sheet.id)}%27)/range(address=%27{shown}%27)",
            "address": address,
            "addressLocal": address,
            "columnCount": box.cols,
            "cellCount": box.rows * box.cols,
            "columnHidden": False,
            "rowHidden": False,
            "numberFormat": grid["numberFormat"],
            "columnIndex": box.c0,
            "text": grid["text"],
            "formulas": grid["formulas"],
            "formulasLocal": copy.deepcopy(grid["formulas"]),
            "formulasR1C1": grid["formulasR1C1"],
            "hidden": False,
            "rowCount": box.rows,
            "rowIndex": box.r0,
            "valueTypes": grid["valueTypes"],
            "values": grid["values"],
        }

    def _sheet_json(self, item: _Item, book: _Workbook, sheet: _Sheet) -> dict[str, Any]:
        return {"@odata.id": f"{self._item_odata(item)}/workbook/worksheets("
                             f"%27{_odata_key(sheet.id)}%27)",
                "id": sheet.id, "name": sheet.name, "position": book.sheets.index(sheet),
                "visibility": sheet.visibility}

    def _table_json(self, item: _Item, table: _Table) -> dict[str, Any]:
        return {"@odata.id": f"{self._item_odata(item)}/workbook/worksheets("
                             f"%27{_odata_key(table.sheet.id)}%27)/tables("
                             f"%27{_odata_key(table.id)}%27)",
                "style": table.style, "name": table.name, "showFilterButton": True,
                "id": table.id, "highlightLastColumn": False, "highlightFirstColumn": False,
                "legacyId": table.legacy_id, "showBandedColumns": False,
                "showBandedRows": True, "showHeaders": table.show_headers,
                "showTotals": table.show_totals}

    def _row_json(self, item: _Item, book: _Workbook, table: _Table, index: int) -> dict[str, Any]:
        r = table.box.r0 + 1 + index
        box = _Box(r, table.box.c0, r, table.box.c1)
        return {"@odata.id": f"{self._item_odata(item)}/workbook/tables("
                             f"%27{_odata_key(table.id)}%27)/rows/itemAt(index={index})",
                "index": index, "values": book.grid(table.sheet, box)["values"]}

    # -- request handling ------------------------------------------------------------------
    def _execute(self, request: RecordedRequest, parsed: _Parsed,
                 token: IssuedToken) -> _Reply:
        """Answer one authenticated Graph request (raises GraphError or _Rejected)."""
        method_id, args = parsed.method_id, parsed.args
        if method_id == "graph.user.get":
            return _Reply(200, self._target_user(args.get("user"), token).json())
        if method_id == "graph.sendMail":
            return self._send_mail(request, args.get("user"), token)
        if method_id in ("graph.site.get", "graph.site.getByPath"):
            site = self._site(args)
            self._check_site(site, token, write=False)
            return _Reply(200, site.json())
        if method_id == "graph.drive.get":
            drive = self._drive(args, token)
            return _Reply(200, self._drive_json(drive))
        write = method_id in _WRITES
        item = self._item(args, token, write=write)
        if method_id in ("graph.driveItem.get", "graph.shares.driveItem"):
            return _Reply(200, self._item_json(item))
        if method_id == "graph.driveItem.content":
            return _Reply(302, None, {"Location": self._download_url(item)})
        return self._workbook(request, parsed, item, token)

    def _target_user(self, key: str | None, token: IssuedToken) -> _User:
        if key is None:
            if token.app_only:
                raise _bad_request("/me request is only valid with delegated authentication "
                                   "flow.")
            key = token.user
        assert key is not None
        user = self._user(key)
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{key}' does not "
                             "exist or one of its queried reference-property objects are not "
                             "present.")
        return user

    def _site(self, args: Mapping[str, Any]) -> _Site:
        if "site_id" in args:
            wanted = args["site_id"].lower()
            for site in self.sites.values():
                if site.id.lower() == wanted or wanted == f"{site.hostname}:{site.path}".lower():
                    return site
            if wanted == "root":
                for site in self.sites.values():
                    if site.path == "/":
                        return site
        else:
            host, path = args["site_host"].lower(), (args["site_path"] or "/").lower()
            for site in self.sites.values():
                if site.hostname.lower() == host and site.path.lower() == path:
                    return site
        raise _item_not_found("Requested site could not be found")

    def _check_site(self, site: _Site, token: IssuedToken, *, write: bool) -> None:
        if site.denied:
            raise _access_denied()
        perms = token.permissions
        if perms & (_WRITE_ALL if write else _READ_ALL):
            return
        if "Sites.Selected" in perms:
            grant = site.grants.get(token.client_id, set())
            if grant & (_GRANT_WRITE if write else _GRANT_READ):
                return
        raise _access_denied()

    def _check_drive(self, drive: _Drive, token: IssuedToken, *, write: bool,
                     shares: bool = False) -> None:
        if drive.site_id is not None and not shares:
            self._check_site(self.sites[drive.site_id], token, write=write)
            return
        if drive.site_id is not None and self.sites[drive.site_id].denied:
            raise _access_denied()
        perms = token.permissions
        if perms & (_WRITE_ALL if write else _READ_ALL):
            return
        own = (not token.app_only and drive.owner is not None and token.user is not None
               and token.user.lower() == drive.owner.lower())
        if own and perms & ({"Files.ReadWrite"} if write else {"Files.Read", "Files.ReadWrite"}):
            return
        raise _access_denied()

    def _drive(self, args: Mapping[str, Any], token: IssuedToken, *,
               write: bool = False) -> _Drive:
        if "drive_user" in args:
            key = None if args["drive_user"] == "me" else args["drive_user"]
            user = self._target_user(key, token)
            if user.drive_id is None:
                raise GraphError(404, "ResourceNotFound", "User's mysite not found.")
            drive = self.drives[user.drive_id]
        elif "drive_id" in args:
            if args["drive_id"] not in self.drives:
                raise _item_not_found()
            drive = self.drives[args["drive_id"]]
            if ("site_id" in args or "site_host" in args) and drive.site_id != self._site(args).id:
                raise _item_not_found()
        else:
            drive = self.drives[self._site(args).drive_id]
        self._check_drive(drive, token, write=write)
        return drive

    def _item(self, args: Mapping[str, Any], token: IssuedToken, *, write: bool) -> _Item:
        if "share" in args:
            return self._shared_item(args["share"], token, write=write)
        drive = self._drive(args, token, write=write)
        if "item_id" in args:
            item = self.items.get(args["item_id"])
            if item is None or item.drive_id != drive.id:
                raise _item_not_found()
            return item
        wanted = args["item_path"].strip("/").lower()
        for item in self.items.values():
            if item.drive_id == drive.id and item.path.lower() == wanted:
                return item
        raise _item_not_found()

    def _shared_item(self, share: str, token: IssuedToken, *, write: bool) -> _Item:
        if not share.startswith("u!"):
            raise GraphError(400, "invalidRequest", "Invalid shares key.")
        try:
            url = _b64url_decode(share[2:]).decode("utf-8")
        except (ValueError, binascii.Error):
            raise GraphError(400, "invalidRequest", "Invalid shares key.") from None
        item_id = self._shares.get(url.split("?")[0])
        if item_id is None:
            raise _item_not_found("The sharing link no longer exists, or you do not have "
                                  "permission to access it.")
        item = self.items[item_id]
        # The shares API takes Files.*.All / Sites.*.All; Sites.Selected does not cover it.
        self._check_drive(self.drives[item.drive_id], token, write=write, shares=True)
        return item

    def _download(self, request: RecordedRequest) -> FakeResponse:
        entry = self._downloads.get(request.param("tempauth") or "")
        if entry is None or entry[1] < time.time() or entry[0] not in self.items:
            return FakeResponse(401, b"", {"Content-Type": "text/plain"})
        item = self.items[entry[0]]
        body = b"" if request.method == "HEAD" else item.content()
        return FakeResponse(200, body, {
            "Content-Type": XLSX_MIME, "ETag": item.etag, "CTag": item.ctag,
            "Content-Disposition": f"attachment; filename=\"{quote(item.name)}\""})

    # -- sendMail -------------------------------------------------------------------------------
    def _send_mail(self, request: RecordedRequest, key: str | None,
                   token: IssuedToken) -> _Reply:
        if key is None and token.app_only:
            raise _bad_request("/me request is only valid with delegated authentication flow.")
        sender_key = key if key is not None else token.user
        assert sender_key is not None
        user = self._user(sender_key)
        if user is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{sender_key}' is "
                             "invalid.")
        perms = token.permissions
        if token.app_only:
            allowed = "Mail.Send" in perms
        else:
            own = token.user is not None and token.user.lower() == user.upn.lower()
            allowed = ("Mail.Send" in perms and own) or "Mail.Send.Shared" in perms
        if not allowed:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                             "and try again.")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "text/plain":
            message = self._mime_message(request.body)
            self.sent.append(SentMail(user.id, user.upn, message, True, True, token.client_id))
            return _Reply(202)
        if content_type != "application/json":
            raise _Rejected(f"sendMail with Content-Type {content_type or 'none'}",
                            GraphError(415, "UnsupportedMediaType", "The content type of the "
                                       "request body is not supported. Use application/json "
                                       "or text/plain for MIME."))
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please "
                             "ensure Content-Type header is set and payload is of valid JSON "
                             "format.") from None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidParameter", "The value of the parameter "
                             "'Message' is empty.")
        unknown = set(body) - {"message", "saveToSentItems"}
        if unknown:
            raise _Rejected(f"sendMail body has unknown properties {sorted(unknown)}",
                            _bad_request(f"Property '{sorted(unknown)[0]}' does not exist as "
                                         "a declared property or extension property."))
        recipients = [r for key_ in ("toRecipients", "ccRecipients", "bccRecipients")
                      for r in message.get(key_) or []]
        if not recipients:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not "
                             "valid., A message can't be sent because it contains no "
                             "recipients.")
        for recipient in recipients:
            address = ((recipient or {}).get("emailAddress") or {}).get("address")
            if not isinstance(address, str) or "@" not in address:
                raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is "
                                 f"not valid., Recipient '{address}' is not resolved. All "
                                 "recipients must be resolved before a message can be "
                                 "submitted.")
        save = body.get("saveToSentItems", True)
        if isinstance(save, str):
            save = save.lower() != "false"
        self.sent.append(SentMail(user.id, user.upn, copy.deepcopy(message), False,
                                  bool(save), token.client_id))
        return _Reply(202)

    @staticmethod
    def _mime_message(body: bytes) -> EmailMessage:
        compact = re.sub(rb"\s+", b"", body)
        try:
            raw = base64.b64decode(compact, validate=True)
        except (ValueError, binascii.Error):
            raw = b""
        if not compact or not raw:
            raise GraphError(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 "
                             "string for MIME content.")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if not message.keys() or not any(message.get(h) for h in ("To", "Cc", "Bcc")):
            raise GraphError(400, "ErrorMimeContentInvalid", "Invalid MIME content.")
        return message

    # -- workbooks --------------------------------------------------------------------------
    def _workbook(self, request: RecordedRequest, parsed: _Parsed, item: _Item,
                  token: IssuedToken) -> _Reply:
        method_id, args = parsed.method_id, parsed.args
        if item.lock is not None:
            status, by = item.lock
            if status == 423:
                raise GraphError(423, "notAllowed", "The resource you are attempting to "
                                 "access is locked", inner_code="resourceLocked")
            raise GraphError(409, "EditModeCannotAcquireLock", f"{by} is editing this "
                             "workbook.", inner_code="accessConflict", inner_message="The "
                             "request failed due to conflicts with other clients that are "
                             "accessing the workbook.")
        body = _json_body(request)
        if method_id == "graph.workbook.createSession":
            persist = isinstance(body, dict) and body.get("persistChanges") is True
            if persist:
                self._check_drive(self.drives[item.drive_id], token, write=True)
            sid = (f"cluster=PNL{self._rng.randrange(1, 9)}&session="
                   f"{_b64url(self._rng.randbytes(24))}&usid={_guid(self._rng)}")
            self._sessions[sid] = _Session(sid, item.id, persist,
                                           None if persist else item.workbook.clone())
            return _Reply(201, {"@odata.context": f"{METADATA}#microsoft.graph."
                                                  "workbookSessionInfo",
                                "persistChanges": persist, "id": sid})
        session = self._session(request, item)
        if method_id in ("graph.workbook.closeSession", "graph.workbook.refreshSession"):
            if session is None:
                raise _invalid_argument("The workbook-session-id header is required.")
            if method_id == "graph.workbook.closeSession":
                session.valid = False
            return _Reply(204)
        book = session.workbook if session is not None and session.workbook is not None \
            else item.workbook
        reply = self._workbook_op(method_id, args, body, request, item, book)
        if method_id in _WRITES and (session is None or session.persist):
            self._touch(item, content=True, token=token)
        return reply

    def _session(self, request: RecordedRequest, item: _Item) -> _Session | None:
        sid = request.header("workbook-session-id")
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None or not session.valid or session.item_id != item.id:
            message = ("The session specified in the request does not exist or is invalid due "
                       "to a transient error.")
            raise GraphError(404, "ItemNotFound", message, inner_code="invalidSessionReCreatable",
                             inner_message=message)
        return session

    def _box(self, args: Mapping[str, Any], sheet: _Sheet) -> tuple[_Box, str]:
        if "cell" in args:
            row, col = args["cell"]
            return _Box(row, col, row, col), f"{column_letters(col)}{row + 1}"
        text = args["address"]
        named, local = _split_sheet(text)
        if named is not None and named.lower() != sheet.name.lower():
            raise _invalid_argument()
        try:
            return _parse_box(local), text
        except ValueError:
            raise _invalid_argument() from None

    def _workbook_op(self, method_id: str, args: Mapping[str, Any], body: Any,
                     request: RecordedRequest, item: _Item, book: _Workbook) -> _Reply:
        if method_id == "graph.workbook.worksheets.list":
            listing = [self._sheet_json(item, book, s) for s in book.sheets]
            return _Reply(200, {"@odata.context": f"{METADATA}#{self._item_odata(item)}"
                                                  "/workbook/worksheets",
                                "value": _page(listing, request)})
        if method_id == "graph.workbook.worksheets.add":
            return self._add_sheet(item, book, body)
        if method_id in ("graph.workbook.tables.list", "graph.workbook.table.get",
                         "graph.workbook.table.rows.list", "graph.workbook.table.rows.add",
                         "graph.workbook.table.row.get", "graph.workbook.table.range",
                         "graph.workbook.table.columns.list"):
            return self._table_op(method_id, args, body, request, item, book)
        sheet = book.sheet(args["sheet"])
        if method_id == "graph.workbook.worksheet.get":
            return _Reply(200, {"@odata.context": f"{METADATA}#workbookWorksheet",
                                **self._sheet_json(item, book, sheet)})
        if method_id == "graph.workbook.worksheet.delete":
            if len([s for s in book.sheets if s.visibility == "Visible"]) <= 1:
                raise _invalid_argument("A workbook must contain at least one visible "
                                        "worksheet.")
            book.sheets.remove(sheet)
            book.tables = [t for t in book.tables if t.sheet is not sheet]
            return _Reply(204)
        if method_id == "graph.workbook.usedRange":
            used = sheet.used_box(values_only=args["values_only"]) or _Box(0, 0, 0, 0)
            return _Reply(200, self._range_json(item, book, sheet, used))
        box, requested = self._box(args, sheet)
        if method_id == "graph.workbook.range.get":
            if box.whole:
                raise GraphError(501, "NotImplemented", "The fake does not serve whole-row or "
                                 "whole-column range reads.")
            return _Reply(200, self._range_json(item, book, sheet, box, requested))
        if method_id == "graph.workbook.range.update":
            self._update_range(sheet, box, body)
            return _Reply(200, self._range_json(item, book, sheet, box, requested))
        if method_id == "graph.workbook.range.delete":
            shift = (body or {}).get("shift") if isinstance(body, dict) else None
            if not isinstance(shift, str) or shift.lower() not in ("up", "left"):
                raise _Rejected("range delete without shift Up/Left",
                                _invalid_argument())
            if (box.whole == "rows" and shift.lower() != "up") or (
                    box.whole == "columns" and shift.lower() != "left"):
                raise _invalid_argument()
            book.shift_rows(sheet, box, shift.lower())
            return _Reply(204)
        if method_id == "graph.workbook.range.clear":
            apply_to = (body or {}).get("applyTo", "All") if isinstance(body, dict) else "All"
            for key in [k for k in list(sheet.cells) if box.r0 <= k[0] <= box.r1
                        and box.c0 <= k[1] <= box.c1]:
                cell = sheet.cells[key]
                if apply_to in ("All", "Contents"):
                    cell.value = cell.formula = None
                if apply_to in ("All", "Formats"):
                    cell.fmt = "General"
                    sheet.styles.pop(key, None)
                sheet.prune(key)
            return _Reply(204)
        if method_id == "graph.workbook.range.format":
            return self._format(request, args["part"], sheet, box, body)
        if method_id == "graph.workbook.range.autofit":
            sheet.autofit.append(f"{args['what']}:{box.local()}")
            return _Reply(204)
        raise GraphError(501, "NotImplemented", f"The fake does not implement {method_id}.")

    def _add_sheet(self, item: _Item, book: _Workbook, body: Any) -> _Reply:
        name = body.get("name") if isinstance(body, dict) else None
        if name is None:
            used = {s.name.lower() for s in book.sheets}
            name = next(f"Sheet{n}" for n in range(1, 10_000) if f"sheet{n}" not in used)
        if not isinstance(name, str) or not name or len(name) > 31 or re.search(
                r"[\[\]:*?/\\]", name) or name.startswith("'") or name.endswith("'"):
            raise _invalid_argument()
        if any(s.name.lower() == name.lower() for s in book.sheets):
            raise _workbook_error(409, "itemAlreadyExists", "A resource with the same name or "
                                  "identifier already exists.")
        sheet = _Sheet(self._sheet_id(), name)
        book.sheets.append(sheet)
        return _Reply(201, {"@odata.context": f"{METADATA}#workbookWorksheet",
                            **self._sheet_json(item, book, sheet)})

    def _update_range(self, sheet: _Sheet, box: _Box, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Rejected("range PATCH without a JSON object body", _invalid_argument())
        unknown = set(body) - _RANGE_PROPS
        if unknown:
            name = sorted(unknown)[0]
            raise _Rejected(f"range PATCH with unknown property {name!r}", _bad_request(
                f"The property '{name}' does not exist on type "
                "'microsoft.graph.workbookRange'. Make sure to only use property names that "
                "are defined by the type."))
        grids = {key: _grid_shape(key, body[key], box)
                 for key in ("numberFormat", "values", "formulas", "formulasLocal")
                 if key in body and body[key] is not None}
        if "formulasR1C1" in body:
            raise GraphError(501, "NotImplemented", "The fake does not accept formulasR1C1.")
        if grids and box.whole:
            raise _Rejected("values written to a whole-row or whole-column range",
                            _invalid_argument(_DIMENSION_MISMATCH))
        for r_i, r in enumerate(range(box.r0, box.r1 + 1)):
            for c_i, c in enumerate(range(box.c0, box.c1 + 1)):
                fmt = grids.get("numberFormat", [[None] * box.cols] * box.rows)[r_i][c_i]
                if fmt is not None:
                    if not isinstance(fmt, str):
                        raise _Rejected("numberFormat holds a value that is not a string",
                                        _invalid_argument())
                    sheet.cell(r, c).fmt = fmt or "General"
                for key in ("values", "formulas", "formulasLocal"):
                    raw = grids.get(key, [[None] * box.cols] * box.rows)[r_i][c_i]
                    if raw is not None:
                        _enter(sheet.cell(r, c), raw)
                sheet.prune((r, c))

    def _format(self, request: RecordedRequest, part: str, sheet: _Sheet, box: _Box,
                body: Any) -> _Reply:
        cells = list(box.cells()) if not box.whole else []
        first = sheet.styles.get((box.r0, box.c0), {})
        if request.method == "PATCH":
            allowed = {"format": _FORMAT_PROPS, "font": _FONT_PROPS, "fill": _FILL_PROPS}[part]
            if not isinstance(body, dict):
                raise _Rejected(f"format/{part} PATCH without a JSON object body",
                                _invalid_argument())
            unknown = set(body) - allowed
            if unknown:
                name = sorted(unknown)[0]
                raise _Rejected(f"format/{part} PATCH with unknown property {name!r}",
                                _bad_request(f"The property '{name}' does not exist on type "
                                             f"'microsoft.graph.workbookRange{part.title()}'."))
            color = body.get("color")
            if color is not None and not re.fullmatch(r"#[0-9A-Fa-f]{6}|[A-Za-z]+", str(color)):
                raise _invalid_argument()
            for key, value in body.items():
                if key == "columnWidth":
                    for c in range(box.c0, box.c1 + 1):
                        sheet.column_widths[c] = float(value)
                elif key == "rowHeight":
                    for r in range(box.r0, min(box.r1, box.r0 + 10_000) + 1):
                        sheet.row_heights[r] = float(value)
                else:
                    name = "fill" if part == "fill" else key
                    targets = cells or [(r, c) for r, c in sheet.cells
                                        if box.r0 <= r <= box.r1 and box.c0 <= c <= box.c1]
                    for target in targets:
                        sheet.styles.setdefault(target, {})[name] = value
            first = sheet.styles.get((box.r0, box.c0), {})
        if part == "fill":
            payload = {"@odata.context": f"{METADATA}#workbookRangeFill",
                       "color": first.get("fill", "#FFFFFF")}
        elif part == "font":
            payload = {"@odata.context": f"{METADATA}#workbookRangeFont",
                       "bold": bool(first.get("bold", False)),
                       "color": first.get("color", "#000000"),
                       "italic": bool(first.get("italic", False)),
                       "name": first.get("name", "Calibri"), "size": first.get("size", 11),
                       "underline": first.get("underline", "None")}
        else:
            payload = {"@odata.context": f"{METADATA}#workbookRangeFormat",
                       "columnWidth": sheet.column_widths.get(box.c0, 48.0),
                       "horizontalAlignment": first.get("horizontalAlignment", "General"),
                       "rowHeight": sheet.row_heights.get(box.r0, 15.0),
                       "verticalAlignment": first.get("verticalAlignment", "Bottom"),
                       "wrapText": bool(first.get("wrapText", False))}
        return _Reply(200, payload)

    def _table_op(self, method_id: str, args: Mapping[str, Any], body: Any,
                  request: RecordedRequest, item: _Item, book: _Workbook) -> _Reply:
        context = f"{METADATA}#{self._item_odata(item)}/workbook"
        if method_id == "graph.workbook.tables.list":
            tables = book.tables
            if "sheet" in args:
                sheet = book.sheet(args["sheet"])
                tables = [t for t in tables if t.sheet is sheet]
                context += f"/worksheets('{quote(sheet.name)}')"
            listing = [self._table_json(item, t) for t in tables]
            return _Reply(200, {"@odata.context": f"{context}/tables",
                                "value": _page(listing, request)})
        table = book.table(args["table"])
        sheet = table.sheet
        body_box = table.body
        count = 0 if body_box is None else body_box.rows
        if method_id == "graph.workbook.table.get":
            return _Reply(200, {"@odata.context": f"{METADATA}#workbookTable",
                                **self._table_json(item, table)})
        if method_id == "graph.workbook.table.rows.list":
            rows = [self._row_json(item, book, table, i) for i in range(count)]
            return _Reply(200, {"@odata.context": f"{context}/tables('{quote(table.name)}')"
                                                  "/rows",
                                "value": _page(rows, request)})
        if method_id == "graph.workbook.table.row.get":
            if args["index"] >= count:
                raise _sheet_not_found()
            return _Reply(200, {"@odata.context": f"{METADATA}#workbookTableRow",
                                **self._row_json(item, book, table, args["index"])})
        if method_id == "graph.workbook.table.rows.add":
            return self._add_rows(item, book, table, body)
        if method_id == "graph.workbook.table.columns.list":
            columns = []
            for i, c in enumerate(range(table.box.c0, table.box.c1 + 1)):
                col_box = _Box(table.box.r0, c, table.box.r1, c)
                values = book.grid(sheet, col_box)["values"]
                odata_id = (f"{self._item_odata(item)}/workbook/tables("
                            f"%27{_odata_key(table.id)}%27)/columns(%27{i + 1}%27)")
                columns.append({"@odata.id": odata_id,
                                "id": str(i + 1), "index": i, "name": values[0][0],
                                "values": values})
            return _Reply(200, {"@odata.context": f"{context}/tables('{quote(table.name)}')"
                                                  "/columns",
                                "value": _page(columns, request)})
        part = args["part"]
        t = table.box
        if part == "headerrowrange":
            box = _Box(t.r0, t.c0, t.r0, t.c1)
        elif part == "range":
            box = t
        elif part == "databodyrange":
            box = body_box or _Box(t.r0 + 1, t.c0, t.r0 + 1, t.c1)
        else:
            raise _workbook_error(404, "itemNotFound", "The requested resource doesn't "
                                  "exist.")
        return _Reply(200, self._range_json(item, book, sheet, box))

    def _add_rows(self, item: _Item, book: _Workbook, table: _Table, body: Any) -> _Reply:
        if not isinstance(body, dict):
            raise _Rejected("rows/add without a JSON object body", _invalid_argument())
        unknown = set(body) - {"index", "values", "@odata.type"}
        if unknown:
            name = sorted(unknown)[0]
            raise _Rejected(f"rows/add with unknown property {name!r}", _bad_request(
                f"The property '{name}' does not exist on type "
                "'microsoft.graph.workbookTableRow'."))
        values = body.get("values")
        width = table.box.cols
        if not isinstance(values, list) or not values:
            raise _Rejected("rows/add without values", _invalid_argument())
        _grid_shape("values", values, _Box(0, 0, len(values) - 1, width - 1))
        count = 0 if table.body is None else table.body.rows
        index = body.get("index")
        if index is not None and (not isinstance(index, int) or not 0 <= index <= count):
            raise _invalid_argument()
        start = book.insert_table_rows(table, len(values))
        sheet = table.sheet
        if index is not None and index < count:
            # move the rows from ``index`` down to make room inside the table
            first = table.box.r0 + 1 + index
            for r in range(start - 1, first - 1, -1):
                for c in range(table.box.c0, table.box.c1 + 1):
                    moved = sheet.cells.pop((r, c), None)
                    if moved is not None:
                        sheet.cells[(r + len(values), c)] = moved
            start = first
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if value is not None:
                    _enter(sheet.cell(start + i, table.box.c0 + j), value)
                sheet.prune((start + i, table.box.c0 + j))
        new_index = start - table.box.r0 - 1
        box = _Box(start, table.box.c0, start + len(values) - 1, table.box.c1)
        return _Reply(201, {
            "@odata.context": f"{METADATA}#workbookTableRow",
            "@odata.type": "#microsoft.graph.workbookTableRow",
            "@odata.id": f"{self._item_odata(item)}/workbook/tables(%27{_odata_key(table.id)}"
                         f"%27)/rows/itemAt(index={new_index})",
            "index": new_index, "values": book.grid(sheet, box)["values"]})


def _json_body(request: RecordedRequest) -> Any:
    if not request.body:
        return None
    try:
        return json.loads(request.body)
    except ValueError:
        raise _bad_request("Unable to read JSON request payload. Please ensure Content-Type "
                           "header is set and payload is of valid JSON format.") from None


def _page(listing: list[dict[str, Any]], request: RecordedRequest) -> list[dict[str, Any]]:
    """``$skip``/``$top`` as the Excel collections apply them."""
    def number(name: str) -> int | None:
        raw = request.param(name)
        if raw is None:
            return None
        if not raw.isdigit():
            raise _bad_request(f"Invalid value '{raw}' for query option '{name}'.")
        return int(raw)

    skip, top = number("$skip") or 0, number("$top")
    return listing[skip:] if top is None else listing[skip:skip + top]


def _json(status: int, payload: Any, content_type: str,
          headers: Mapping[str, str] | None = None) -> FakeResponse:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return FakeResponse(status, body, {"Content-Type": content_type, **(headers or {})})


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------

MAX_BATCH = 20
_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 302: "Found",
                400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                409: "Conflict", 423: "Locked", 424: "Failed Dependency",
                429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
                504: "Gateway Timeout"}


@dataclass(frozen=True)
class ViolationRecord:
    """A request the real service would have rejected, and why."""

    method: str
    path: str
    method_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.method_id}): {self.problem}"


def _fault_error(method_id: str, status: int) -> GraphError:
    """Graph's bodies for throttling and server errors, per workload."""
    if status == 429:
        if method_id.startswith("graph.workbook"):
            return GraphError(429, "tooManyRequests", "The app or user has been throttled.",
                              inner_code="tooManyRequestsUncategorized", inner_message="The "
                              "client app or user has been throttled. Please try your request "
                              "again.")
        if method_id.startswith(("graph.driveItem", "graph.shares", "graph.site",
                                 "graph.drive")):
            return GraphError(429, "activityLimitReached", "The request has been throttled")
        return GraphError(429, "TooManyRequests", "Please retry again later.",
                          inner_code="429", inner_message="Please retry after")
    if status == 503:
        return GraphError(503, "serviceNotAvailable", "The service is temporarily "
                          "unavailable. Please try again later.")
    if status == 504:
        return GraphError(504, "UnknownError", "Gateway Timeout: the server, while acting as "
                          "a gateway, did not receive a timely response from the upstream "
                          "server.")
    if status == 502:
        return GraphError(502, "badGateway", "The server encountered a temporary error and "
                          "could not complete your request.")
    if status >= 500:
        return GraphError(status, "generalException", "An unspecified error has occurred.")
    return GraphError(status, "UnknownError", _STATUS_TEXT.get(status, "Error"))


class MicrosoftFakeServer(FakeHTTPServer):
    """Graph v1.0 and the identity platform v2.0 on one local server.

    Args:
        seed: seeds ids, ``$batch`` response order and random faults.
        tenant_id / tenant_domain: the directory the identity endpoints serve (``common`` and
            ``organizations`` resolve to it too).
        retry_after: the ``Retry-After`` (seconds) of injected 429 answers that were not given
            one, as Graph always sends one; None leaves it out.

    Attributes: ``identity`` (:class:`IdentityFake`), ``graph`` (:class:`GraphFake`),
    ``violations`` (:class:`ViolationRecord` list), plus ``requests``, ``counters`` and
    ``faults`` from :class:`~tests.fakes.http.FakeHTTPServer`. ``$batch`` sub-requests are
    recorded and counted under their own method ids and meet the fault injector one by one.
    """

    def __init__(self, *, seed: int = 0,
                 tenant_id: str = "8f3c1b52-6d1e-4c57-9a0e-2b7d3e4f5a61",
                 tenant_domain: str = "contoso.onmicrosoft.com",
                 retry_after: int | None = 1) -> None:
        super().__init__(seed=seed)
        rng = random.Random(seed)
        self.retry_after = retry_after
        self.violations: list[ViolationRecord] = []
        self.identity = IdentityFake(self, random.Random(rng.random()), tenant_id,
                                     tenant_domain)
        self.graph = GraphFake(self, random.Random(rng.random()))
        self._ids = random.Random(rng.random())
        self._batch_rng = random.Random(rng.random())
        self.faults.exempt = lambda method_id, path: method_id.startswith("identity.")

    def __enter__(self) -> MicrosoftFakeServer:
        self.start()
        return self

    # -- client helpers ------------------------------------------------------------------
    def authority(self, tenant: str | None = None) -> str:
        """The msal authority for this server: ``https://127.0.0.1:<port>/<tenant>``."""
        return f"https://127.0.0.1:{self.port}/{tenant or self.identity.tenant_id}"

    def identity_session(self) -> requests.Session:
        """A session for msal's ``http_client``: https://127.0.0.1:<port> goes to the fake."""
        session = requests.Session()
        session.mount(f"https://127.0.0.1:{self.port}",
                      rewrite_adapter(f"https://127.0.0.1:{self.port}", self.url))
        return session

    def graph_session(self) -> requests.Session:
        """A session whose requests to https://graph.microsoft.com reach the fake."""
        session = requests.Session()
        session.mount(GRAPH_HOST, rewrite_adapter(GRAPH_HOST, self.url))
        return session

    # -- classification -------------------------------------------------------------------
    def classify(self, request: RecordedRequest) -> Classification:
        parsed = _parse_path(request.method, request.path)
        api = parsed.method_id.split(".")[0]
        return Classification(parsed.method_id, api, parsed)

    def _violation(self, request: RecordedRequest, method_id: str, problem: str) -> None:
        self.violations.append(ViolationRecord(request.method, request.path, method_id, problem))

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, request: RecordedRequest, classification: Classification) -> FakeResponse:
        parsed: _Parsed = classification.info
        method_id = parsed.method_id
        if method_id.startswith("identity."):
            if method_id == "identity.methodNotAllowed":
                return _json(405, {"error": "invalid_request"}, TOKEN_JSON)
            return self.identity._handle(request, method_id, parsed.args["tenant"])
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        client_request_id = request.header("client-request-id") or request_id
        try:
            if method_id == "graph.driveItem.download":
                self._check_params(request, method_id)
                return self.graph._download(request)
            token = self._authenticate(request)
            if method_id == "graph.batch":
                return self._batch(request, token, request_id, client_request_id)
            reply = self._reply(request, parsed, token)
        except GraphError as err:
            return self._error_response(err, request_id, client_request_id)
        return self._response(reply, request_id, client_request_id)

    def _reply(self, request: RecordedRequest, parsed: _Parsed, token: IssuedToken) -> _Reply:
        """Run one Graph request after authentication (shared by ``$batch``)."""
        method_id = parsed.method_id
        try:
            if method_id in ("graph.unknown", "graph.workbook.freezePanes"):
                segment = parsed.args.get("segment", "")
                raise _Rejected(f"no such endpoint in Graph v1.0 (segment {segment!r})",
                                _unknown_segment(segment))
            if method_id == "graph.methodNotAllowed":
                raise _Rejected(f"{request.method} is not allowed here",
                                GraphError(405, "Request_BadRequest", "Specified HTTP method "
                                           "is not allowed for the request target."))
            self._check_params(request, method_id)
            selected = self._selected(request, method_id)
            reply = self.graph._execute(request, parsed, token)
        except _Rejected as rejected:
            self._violation(request, method_id, rejected.problem)
            raise rejected.error from None
        if selected is not None and isinstance(reply.body, dict):
            reply.body = {k: v for k, v in reply.body.items()
                          if k in selected or k == "@odata.context"}
        return reply

    def _check_params(self, request: RecordedRequest, method_id: str) -> None:
        allowed = _PARAMS.get(method_id, frozenset())
        for name in request.query:
            if name in allowed:
                continue
            self._violation(request, method_id, f"unknown query parameter {name!r}")
            if name.startswith("$"):
                raise _bad_request(f"Query option '{name}' is not allowed.")

    def _selected(self, request: RecordedRequest, method_id: str) -> set[str] | None:
        raw = request.param("$select")
        if raw is None:
            return None
        kind = _selection(method_id)
        names = {n.strip() for n in raw.split(",") if n.strip()}
        known = _SELECTABLE.get(kind or "", frozenset())
        unknown = sorted(n for n in names if n not in known)
        if unknown:
            raise _Rejected(f"$select names unknown property {unknown[0]!r}", _bad_request(
                f"Could not find a property named '{unknown[0]}' on type "
                f"'microsoft.graph.{kind or 'entity'}'."))
        return names

    def _authenticate(self, request: RecordedRequest) -> IssuedToken:
        header = request.header("Authorization") or ""
        challenge = {"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                     '"https://login.microsoftonline.com/common/oauth2/authorize", '
                     f'client_id="{GRAPH_APP_ID}"'}
        value = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not value:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.",
                             headers=challenge)
        token = self.identity.lookup(value)
        if token is None:
            message = ("IDX14100: JWT is not well formed, there are no dots (.)."
                       if value.count(".") < 2 else "Access token validation failure.")
            raise GraphError(401, "InvalidAuthenticationToken", message, headers=challenge)
        if self.identity.is_expired(token):
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Lifetime validation failed, the token is expired.",
                             headers=challenge)
        if token.audience != GRAPH_HOST:
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token validation failure. Invalid audience.",
                             headers=challenge)
        return token

    # -- responses ------------------------------------------------------------------------
    @staticmethod
    def _ids_headers(request_id: str, client_request_id: str) -> dict[str, str]:
        return {"request-id": request_id, "client-request-id": client_request_id,
                "Cache-Control": "no-cache"}

    def _error_response(self, err: GraphError, request_id: str,
                        client_request_id: str) -> FakeResponse:
        return _json(err.status, err.body(request_id, client_request_id), ERROR_JSON,
                     {**self._ids_headers(request_id, client_request_id), **err.headers})

    def _response(self, reply: _Reply, request_id: str, client_request_id: str) -> FakeResponse:
        headers = {**self._ids_headers(request_id, client_request_id), **reply.headers}
        if reply.raw is not None:
            return FakeResponse(reply.status, reply.raw,
                                {"Content-Type": reply.content_type, **headers})
        if reply.body is None:
            return FakeResponse(reply.status, b"", headers)
        if reply.status in (200, 201):
            headers["OData-Version"] = "4.0"
        return _json(reply.status, reply.body, reply.content_type, headers)

    def fault_response(self, request: RecordedRequest, classification: Classification,
                       decision: FaultDecision) -> FakeResponse:
        status = decision.status
        assert status is not None
        retry_after = decision.retry_after
        if retry_after is None and status == 429:
            retry_after = self.retry_after
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if classification.api == "identity":
            code = 50196 if status == 429 else 90033
            description = ("The server terminated an operation because it encountered a "
                           "client request loop. Please contact your app vendor."
                           if status == 429 else
                           "A transient error has occurred. Please try again.")
            response = self.identity._failure(status, "temporarily_unavailable", code,
                                              description)
            response.headers.update(headers)
            return response
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        client_request_id = request.header("client-request-id") or request_id
        err = _fault_error(classification.method_id, status)
        err.headers.update(headers)
        return self._error_response(err, request_id, client_request_id)

    # -- $batch --------------------------------------------------------------------------------
    def _batch(self, request: RecordedRequest, token: IssuedToken, request_id: str,
               client_request_id: str) -> FakeResponse:
        def reject(problem: str, message: str) -> FakeResponse:
            self._violation(request, "graph.batch", problem)
            return self._error_response(_bad_request(message), request_id, client_request_id)

        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            return reject("$batch body is not JSON", "Invalid batch payload format.")
        steps = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(steps, list) or not steps:
            return reject("$batch without a requests array", "Invalid batch payload format.")
        if len(steps) > MAX_BATCH:
            return reject(f"$batch with {len(steps)} requests (at most {MAX_BATCH})",
                          "Number of requests inside batch exceeds the limit.")
        ids: list[str] = []
        for step in steps:
            if not isinstance(step, dict) or not all(
                    isinstance(step.get(k), str) and step.get(k) for k in ("id", "method", "url")):
                return reject("$batch request without a string id, method and url",
                              "Invalid batch payload format.")
            ids.append(step["id"])
        if len(set(ids)) != len(ids):
            return reject("$batch with duplicate request ids", "Batch request ids must be "
                          "unique.")
        for step in steps:
            depends = step.get("dependsOn") or []
            if not isinstance(depends, list) or any(d not in ids or d == step["id"]
                                                     for d in depends):
                return reject("$batch dependsOn names an unknown request",
                              "Invalid dependsOn value.")
        results: dict[str, dict[str, Any]] = {}
        pending = list(steps)
        while pending:
            ready = [s for s in pending if all(d in results for d in s.get("dependsOn") or [])]
            if not ready:
                return reject("$batch dependsOn forms a cycle", "Invalid dependsOn value.")
            for step in ready:
                pending.remove(step)
                failed = [d for d in step.get("dependsOn") or [] if results[d]["status"] >= 400]
                if failed:
                    results[step["id"]] = self._sub_error(
                        step["id"], GraphError(424, "FailedDependency", "The request could not "
                                               "be processed because a request it depends on "
                                               "failed."), client_request_id)
                else:
                    results[step["id"]] = self._sub_request(request, step, token,
                                                            client_request_id)
        responses = [results[i] for i in ids]
        self._batch_rng.shuffle(responses)
        return _json(200, {"responses": responses}, "application/json",
                     self._ids_headers(request_id, client_request_id))

    def _sub_error(self, step_id: str, err: GraphError, client_request_id: str,
                   ) -> dict[str, Any]:
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        return {"id": step_id, "status": err.status,
                "headers": {"Cache-Control": "no-cache", "Content-Type": ERROR_JSON,
                            **err.headers},
                "body": err.body(request_id, client_request_id)}

    def _sub_request(self, outer: RecordedRequest, step: Mapping[str, Any], token: IssuedToken,
                     client_request_id: str) -> dict[str, Any]:
        url = step["url"]
        headers = {str(k): str(v) for k, v in (step.get("headers") or {}).items()}
        if re.match(r"https?://", url, re.IGNORECASE):
            self._violation(outer, "graph.batch", f"$batch url {url!r} is absolute")
            return self._sub_error(step["id"], _bad_request("Invalid request URL. The url of a "
                                                            "batch request must be relative."),
                                   client_request_id)
        parts = urlsplit("/" + url.lstrip("/"))
        payload = step.get("body")
        if payload is None:
            raw = b""
        elif isinstance(payload, str):
            raw = payload.encode("utf-8")
        else:
            raw = json.dumps(payload).encode("utf-8")
        sub = RecordedRequest(
            method=step["method"].upper(), path="/v1.0" + parts.path,
            query=parse_qs(parts.query, keep_blank_values=True), body=raw,
            headers={**headers, "Authorization": outer.header("Authorization") or "",
                     "client-request-id": client_request_id})
        classification = self.classify(sub)
        sub = replace(sub, method_id=classification.method_id, api=classification.api)
        self.requests.append(sub)
        self.counters.record(classification.method_id, classification.api)
        if payload is not None and not any(k.lower() == "content-type" for k in headers):
            self._violation(sub, classification.method_id,
                            "$batch request has a body but no Content-Type header")
            return self._sub_error(step["id"], _bad_request("Content-Type header must be "
                                                            "specified when a body is present."),
                                   client_request_id)
        parsed: _Parsed = classification.info
        if parsed.method_id == "graph.batch" or not parsed.method_id.startswith("graph."):
            self._violation(sub, parsed.method_id, "$batch request that Graph cannot nest")
            return self._sub_error(step["id"], _bad_request("Invalid request URL."),
                                   client_request_id)
        decision = self.faults.decide(classification.method_id, sub.path)
        if decision is not None and decision.status is not None:
            err = _fault_error(classification.method_id, decision.status)
            retry_after = decision.retry_after
            if retry_after is None and decision.status == 429:
                retry_after = self.retry_after
            if retry_after is not None:
                err.headers["Retry-After"] = str(retry_after)
            return self._sub_error(step["id"], err, client_request_id)
        gateway = _fault_error("graph.batch", 504)
        if decision is not None and not decision.lost:
            # the workload never saw it: Graph's front end answers for it
            return self._sub_error(step["id"], gateway, client_request_id)
        try:
            reply = self._reply(sub, parsed, token)
        except GraphError as err:
            answer = self._sub_error(step["id"], err, client_request_id)
        else:
            answer = {"id": step["id"], "status": reply.status,
                      "headers": {"Cache-Control": "no-cache", "OData-Version": "4.0",
                                  **({"Content-Type": reply.content_type}
                                     if reply.body is not None else {}),
                                  **reply.headers}}
            if reply.status == 302:
                answer["headers"] = {"Location": reply.headers["Location"]}
            elif reply.raw is not None:
                answer["body"] = base64.b64encode(reply.raw).decode("ascii")
            else:
                answer["body"] = reply.body
        if decision is not None and decision.lost:
            # applied, but the answer was lost between the workload and Graph
            return self._sub_error(step["id"], gateway, client_request_id)
        return answer

    # -- helpers --------------------------------------------------------------------------
    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every request the real service would reject."""
        with self.lock:
            if self.violations:
                raise AssertionError("requests Microsoft's services would reject:\n"
                                     + "\n".join(str(v) for v in self.violations))


class _RewriteAdapter(HTTPAdapter):
    def __init__(self, source: str, target: str) -> None:
        super().__init__()
        self.source = source.rstrip("/")
        self.target = target.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        if request.url and request.url.startswith(self.source):
            request.url = self.target + request.url[len(self.source):]
        return super().send(request, *args, **kwargs)


def rewrite_adapter(source: str, target: str) -> HTTPAdapter:
    """A requests adapter sending ``source``-prefixed URLs to ``target`` instead, so client
    code keeps the real host (``session.mount(source, adapter)``)."""
    return _RewriteAdapter(source, target)
