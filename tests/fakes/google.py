"""Fakes of Google Forms v1, Sheets v4, Gmail v1 and the OAuth2 token endpoint.

One :class:`GoogleFakeServer` serves them all on ``http://127.0.0.1:<port>``, routed by path
exactly as the real hosts route them (``/v1/forms/...``, ``/v4/spreadsheets/...``,
``/gmail/v1/users/...``, ``/token``). Point the real libraries at it:

* google-api-python-client: ``build("forms", "v1", credentials=AnonymousCredentials(),
  client_options={"api_endpoint": server.url + "/"}, static_discovery=True,
  cache_discovery=False)``;
* gspread / requests: mount :func:`rewrite_adapter` on ``https://sheets.googleapis.com``;
* google-auth: ``token_uri=server.url + "/token"`` in the service-account info.

Every API request is validated against the bundled discovery documents
(:mod:`tests.fakes.google_discovery`); problems land in ``server.violations`` and are
answered 400 the way Google answers them. Response shapes follow the recorded
interactions in ``tests/fakes/recorded`` (proto3 defaults omitted, ``values`` trimmed,
FORMATTED_VALUE strings, ...). State lives in ``server.forms``, ``server.sheets``,
``server.gmail`` and ``server.tokens``; faults are injected with ``server.faults``.

Typical use in a connector test::

    with GoogleFakeServer() as server:
        form_id = server.forms.create_form("Near-miss report", [
            QuestionSpec("What happened?", "paragraph", required=True, question_id="q1")])
        server.forms.add_response(form_id, {"q1": "Wet floor by the lift"})
        sheet_id = server.sheets.create_spreadsheet("Tracker", ["Tracker"])
        session = requests.Session()
        session.mount("https://sheets.googleapis.com",
                      rewrite_adapter("https://sheets.googleapis.com", server.url))
        gc = gspread.Client(auth=None, session=session)
        server.faults.fail_next(1, 429, only="sheets.spreadsheets.values.append")
        ...  # run the connector
        server.assert_no_violations()
        assert server.counters["sheets.spreadsheets.values.append"] == 2
        assert server.sheets.cell(sheet_id, "Tracker!B2").formula is None
        assert server.gmail.sent[0]["To"] == "manager@example.org"

With ``require_auth=True`` an anonymous googleapiclient client must be built with
``http=httplib2.Http()``: with ``AnonymousCredentials`` the library tries to refresh
after a 401 and raises before the error reaches the caller.
"""

from __future__ import annotations

import ast
import base64
import binascii
import copy
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import json
import operator
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

import requests
from requests.adapters import HTTPAdapter

from tests.fakes.google_discovery import (
    DiscoveryValidator,
    MethodSpec,
    ValidationResult,
    Violation,
)
from tests.fakes.http import (
    Classification,
    FakeHTTPServer,
    FakeResponse,
    FaultDecision,
    RecordedRequest,
    column_index,
    column_letters,
    json_response,
)

__all__ = [
    "QUESTION_KINDS",
    "AuthUse",
    "CellView",
    "FormsFake",
    "GmailFake",
    "GoogleApiError",
    "GoogleFakeServer",
    "IssuedToken",
    "QuestionSpec",
    "SentMessage",
    "SheetsFake",
    "TokenEndpointFake",
    "ViolationRecord",
    "apply_field_mask",
    "column_index",
    "column_letters",
    "parse_field_mask",
    "quote_sheet_title",
    "rewrite_adapter",
]

TOKEN_CONTENT_TYPE = "application/json; charset=utf-8"
TOKEN_PATHS = ("/token", "/oauth2/v4/token")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    501: "Operation is not implemented, or supported, or enabled.",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}
# Gmail still sends the legacy errors[] array next to "status" (recorded, grade C).
_GMAIL_REASONS = {
    400: "invalidArgument", 401: "authError", 403: "forbidden", 404: "notFound",
    429: "rateLimitExceeded", 500: "backendError", 503: "backendError",
}
_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_SERVICES = {
    "forms": "forms.googleapis.com", "sheets": "sheets.googleapis.com",
    "gmail": "gmail.googleapis.com",
}


class GoogleApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "status", ...}}``."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(code, "Error")
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details
        self.errors = errors
        self.headers = dict(headers or {})
        super().__init__(f"{code} {self.status}: {self.message}")

    def body(self, api: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        errors = self.errors
        if errors is None and api == "gmail":
            reason = _GMAIL_REASONS.get(self.code, "backendError")
            errors = [{"message": self.message, "domain": "global", "reason": reason}]
        if errors is not None:
            error["errors"] = errors
        error["status"] = self.status
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self, api: str, *, pretty: bool = True) -> FakeResponse:
        return json_response(self.code, self.body(api), headers=self.headers, pretty=pretty)


def _bad_request(message: str, violations: Sequence[tuple[str, str]] = ()) -> GoogleApiError:
    details = None
    if violations:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": f, "description": d} for f, d in violations],
            }
        ]
    return GoogleApiError(400, message, details=details)


def _not_found() -> GoogleApiError:
    return GoogleApiError(404, "Requested entity was not found.")


def _denied() -> GoogleApiError:
    return GoogleApiError(403, "The caller does not have permission")


# ---------------------------------------------------------------------------------------
# Timestamps (proto3 JSON: "Z", 0/3/6/9 fractional digits)
# ---------------------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_RFC3339_ZULU = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")


def _to_ns(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _proto_timestamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{text}.{nanos // 1000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def _parse_zulu(text: str) -> int | None:
    m = _RFC3339_ZULU.fullmatch(text)
    if not m:
        return None
    try:
        base = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return _to_ns(base) + int((m.group(2) or "").ljust(9, "0"))


# ---------------------------------------------------------------------------------------
# Field masks ("sheets(properties(title)),spreadsheetId", "gridProperties.frozenRowCount")
# ---------------------------------------------------------------------------------------

FieldTree = dict[str, "FieldTree"]


def parse_field_mask(text: str) -> FieldTree:
    """Parse a ``fields`` selector or update mask into a tree (``{}`` = whole subtree).

    Accepts ``a,b.c,d(e,f/g)`` as the partial-response syntax does.
    """
    name_re = re.compile(r"[A-Za-z0-9_*$@-]+(?:[./][A-Za-z0-9_*$@-]+)*")
    pos = 0

    def parse_list(closing: str | None) -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while True:
            while pos < len(text) and text[pos] in ", ":
                pos += 1
            if pos >= len(text):
                if closing:
                    raise ValueError(f"unbalanced parentheses in {text!r}")
                return tree
            if text[pos] == closing:
                pos += 1
                return tree
            m = name_re.match(text, pos)
            if not m:
                raise ValueError(f"invalid field selector {text!r}")
            pos = m.end()
            sub: FieldTree = {}
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list(")")
            _merge_path(tree, re.split(r"[./]", m.group(0)), sub)

    return parse_list(None)


def _merge_path(tree: FieldTree, names: list[str], sub: FieldTree) -> None:
    node = tree
    for name in names[:-1]:
        if node.get(name) == {}:
            return  # the whole subtree is already selected
        node = node.setdefault(name, {})
    leaf = names[-1]
    if not sub or (node.get(leaf) == {} and leaf in node):
        node[leaf] = {} if not sub else node[leaf]
        return
    for key, value in sub.items():
        _merge_path(node.setdefault(leaf, {}), [key], value)


def apply_field_mask(value: Any, tree: FieldTree) -> Any:
    """Partial response: keep only the selected keys (lists are filtered element-wise)."""
    if not tree or "*" in tree:
        return value
    if isinstance(value, list):
        return [apply_field_mask(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, sub in tree.items():
        if key in value:
            out[key] = apply_field_mask(value[key], sub)
    return out


# Fields Sheets always prints: SheetProperties ids/sizes, and the GridRange/DimensionRange
# bounds, which have explicit presence (a GridRange's 0 sheetId is still omitted).
_KEEP_DEFAULTS = frozenset({
    "sheetId", "index", "rowCount", "columnCount", "startRowIndex", "endRowIndex",
    "startColumnIndex", "endColumnIndex", "startIndex", "endIndex",
})


def _is_default(key: str, value: Any) -> bool:
    return key not in _KEEP_DEFAULTS and value in (None, False, 0, "", [], {})


def _set_masked(target: dict[str, Any], source: Mapping[str, Any], tree: FieldTree) -> None:
    """Copy the masked fields from ``source`` into ``target``; fields the mask names but
    ``source`` leaves out are reset to their default (i.e. removed), as update masks do."""
    if "*" in tree:
        for key, value in source.items():
            if _is_default(key, value):
                target.pop(key, None)
            else:
                target[key] = copy.deepcopy(value)
        return
    for key, sub in tree.items():
        value = source.get(key) if isinstance(source, Mapping) else None
        if sub and isinstance(value, Mapping | type(None)):
            child = target.setdefault(key, {})
            _set_masked(child, value or {}, sub)
            if not child:
                target.pop(key, None)
        elif _is_default(key, value):
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


def _prune(value: Any) -> Any:
    """Drop proto3 defaults (false, 0, "", empty) the way Google's JSON omits them."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _prune(item)
            if not _is_default(key, item) or key in ("editors",):
                out[key] = item
        return out
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------
# A1 notation
# ---------------------------------------------------------------------------------------


def quote_sheet_title(title: str) -> str:
    """Sheets quotes a sheet name in A1 notation only when it must (``'🌵 x'!A1``)."""
    simple = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) is not None
    looks_like_ref = re.fullmatch(r"[A-Za-z]{1,3}\d+|[Rr]\d*[Cc]\d*", title) is not None
    if simple and not looks_like_ref and title.upper() not in ("TRUE", "FALSE"):
        return title
    return "'" + title.replace("'", "''") + "'"


def _split_a1(text: str) -> tuple[str | None, str | None]:
    """Split ``'It''s'!A1:B2`` into (``It's``, ``A1:B2``); a bare string returns (None, s)."""
    if text.startswith("'"):
        name: list[str] = []
        i = 1
        while i < len(text):
            if text[i] == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    name.append("'")
                    i += 2
                    continue
                break
            name.append(text[i])
            i += 1
        else:
            raise ValueError(text)
        rest = text[i + 1 :]
        if rest == "":
            return "".join(name), None
        if rest.startswith("!") and rest[1:]:
            return "".join(name), rest[1:]
        raise ValueError(text)
    if "!" in text:
        name_part, _, cells = text.rpartition("!")
        if not name_part or not cells:
            raise ValueError(text)
        return name_part, cells
    return None, text


_CELL_PART = re.compile(r"\$?([A-Za-z]{0,3})\$?(\d*)")


@dataclass(frozen=True)
class _Bounds:
    sr: int
    er: int | None  # exclusive; None = open to the end of the grid
    sc: int
    ec: int | None
    single: bool = False


def _parse_cells(text: str) -> _Bounds:
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(text)
    parsed = []
    for part in parts:
        m = _CELL_PART.fullmatch(part)
        if not m or not (m.group(1) or m.group(2)) or m.group(2).startswith("0"):
            raise ValueError(text)
        col = column_index(m.group(1)) if m.group(1) else None
        row = int(m.group(2)) - 1 if m.group(2) else None
        parsed.append((col, row))
    if len(parsed) == 1:
        col, row = parsed[0]
        if col is None or row is None:
            raise ValueError(text)
        return _Bounds(row, row + 1, col, col + 1, single=True)
    (c1, r1), (c2, r2) = parsed
    if (c1 is None and c2 is not None) or (c1 is None and r1 is None):
        raise ValueError(text)
    if c1 is not None and c2 is None and (r2 is None or r1 is None):
        raise ValueError(text)
    sc, ec = (c1 or 0), (None if c2 is None else c2 + 1)
    sr, er = (r1 or 0), (None if r2 is None else r2 + 1)
    if ec is not None and ec <= sc:
        sc, ec = ec - 1, sc + 1
    if er is not None and er <= sr:
        sr, er = er - 1, sr + 1
    return _Bounds(sr, er, sc, ec)


def _a1(title: str, sr: int, er: int, sc: int, ec: int) -> str:
    start = f"{column_letters(sc)}{sr + 1}"
    if er - sr <= 1 and ec - sc <= 1:
        return f"{quote_sheet_title(title)}!{start}"
    return f"{quote_sheet_title(title)}!{start}:{column_letters(ec - 1)}{er}"


# ---------------------------------------------------------------------------------------
# Cell values
# ---------------------------------------------------------------------------------------

_SHEETS_EPOCH = dt.date(1899, 12, 30)
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
)


@dataclass
class _Cell:
    value: Any = None  # str | int | float | bool | None (effective value)
    formula: str | None = None
    text: str | None = None  # formatted text when it differs from str(value)
    is_date: bool = False
    fmt: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def empty(self) -> bool:
        return self.value is None and self.formula is None

    def clear_value(self) -> None:
        self.value = self.formula = self.text = None
        self.is_date = False


def _number(value: float | int) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _general(value: float | int) -> str:
    value = _number(value)
    if isinstance(value, int):
        return str(value)
    text = f"{value:.10g}"
    return text.upper() if "e" in text else text


def _float_pow(base: float, exponent: float) -> float:
    return float(base) ** float(exponent)  # floats overflow instead of growing unbounded


_ARITH: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: _float_pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _eval_formula(formula: str) -> Any:
    """Evaluate plain arithmetic (``=4/2``); anything else is an error value, like a
    spreadsheet without the referenced function or name would show."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return _ARITH[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITH:
            return _ARITH[type(node.op)](walk(node.operand))
        raise NameError

    if "**" in formula or ("_" in formula and not re.search(r"[A-Za-z]", formula)):
        return "#ERROR!"  # Python-only syntax that the spreadsheet grammar lacks
    expression = formula[1:].replace("^", "**")
    try:
        result = walk(ast.parse(expression, mode="eval"))
    except ZeroDivisionError:
        return "#DIV/0!"
    except SyntaxError:
        return "#ERROR!"
    except OverflowError:
        return "#NUM!"
    except (NameError, TypeError, ValueError):
        return "#NAME?"
    return _number(result) if not isinstance(result, complex) else "#NUM!"


def _entered_cell(raw: Any, user_entered: bool) -> _Cell:
    """How Sheets stores one input value. RAW keeps strings as typed; USER_ENTERED parses
    formulas, numbers, booleans, percentages and dates as the UI would."""
    if isinstance(raw, bool):
        return _Cell(value=raw)
    if isinstance(raw, int | float):
        return _Cell(value=_number(raw))
    text = str(raw)
    if not user_entered:
        return _Cell(value=text)
    if text.startswith("=") and len(text) > 1:
        return _Cell(value=_eval_formula(text), formula=text)
    if text.startswith("'"):
        return _Cell(value=text[1:]) if len(text) > 1 else _Cell()
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return _Cell(value=stripped.upper() == "TRUE")
    if _NUMBER.fullmatch(stripped):
        number = float(stripped.replace(",", ""))
        is_int = re.fullmatch(r"[+-]?\d{1,15}", stripped) is not None
        return _Cell(value=int(stripped) if is_int else _number(number),
                     text=stripped if "," in stripped else None)
    if stripped.endswith("%") and _NUMBER.fullmatch(stripped[:-1]):
        return _Cell(value=float(stripped[:-1].replace(",", "")) / 100, text=stripped)
    for pattern in ("%Y-%m-%d", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            moment = dt.datetime.strptime(stripped, pattern)
        except ValueError:
            continue
        days = (moment.date() - _SHEETS_EPOCH).days
        fraction = (moment.hour * 3600 + moment.minute * 60 + moment.second) / 86_400
        return _Cell(value=_number(days + fraction), text=stripped, is_date=True)
    return _Cell(value=text)


# What a DATE, TIME or DATE_TIME number format without a pattern shows (en_US).
_DEFAULT_PATTERNS = {"DATE": "M/d/yyyy", "TIME": "H:mm:ss", "DATE_TIME": "M/d/yyyy H:mm:ss"}
_DATE_TOKEN = re.compile(r'"[^"]*"|\\.|yyyy|yy|mm|m|dd|d|hh|h|ss|s|.', re.I)


def _date_text(value: float | int, number_format: Mapping[str, Any]) -> str | None:
    """A number as Sheets shows it through a date or time number format: the tokens of
    the reference that the fake models (yyyy yy mm m dd d hh h ss s, quoted text; "m" is
    minutes after an hour or before seconds, else the month; hours are 0-23). None for a
    format it does not model, which is then shown as a plain number."""
    kind = number_format.get("type")
    if kind not in _DEFAULT_PATTERNS:
        return None
    pattern = number_format.get("pattern") or _DEFAULT_PATTERNS[kind]
    if re.search(r"am/pm|a/p|ddd|mmm|\[", pattern, re.I) or not 0 <= value < 2_958_466:
        return None
    moment = dt.datetime.combine(_SHEETS_EPOCH, dt.time()) + dt.timedelta(
        seconds=round(value * 86_400))
    tokens = _DATE_TOKEN.findall(pattern)
    fields = [i for i, t in enumerate(tokens) if t.lower() in (
        "yyyy", "yy", "mm", "m", "dd", "d", "hh", "h", "ss", "s")]
    out = []
    for i, token in enumerate(tokens):
        low = token.lower()
        if i not in fields:
            out.append(token[1:-1] if token.startswith('"') else token.lstrip("\\"))
            continue
        at = fields.index(i)
        before = tokens[fields[at - 1]].lower() if at else ""
        after = tokens[fields[at + 1]].lower() if at + 1 < len(fields) else ""
        if low in ("m", "mm"):
            minutes = before in ("h", "hh") or after in ("s", "ss")
            number = moment.minute if minutes else moment.month
        else:
            number = {"y": moment.year % 100 if low == "yy" else moment.year,
                      "d": moment.day, "h": moment.hour, "s": moment.second}[low[0]]
        out.append(f"{number:02d}" if len(low) == 2 else str(number))
    return "".join(out)


def _formatted(cell: _Cell) -> str:
    if cell.text is not None:
        return cell.text
    if isinstance(cell.value, bool):
        return "TRUE" if cell.value else "FALSE"
    if isinstance(cell.value, int | float):
        shown = _date_text(cell.value, cell.fmt.get("numberFormat") or {})
        return _general(cell.value) if shown is None else shown
    return "" if cell.value is None else str(cell.value)


def _render(cell: _Cell, value_render: str, date_render: str) -> Any:
    if value_render == "FORMULA" and cell.formula is not None:
        return cell.formula
    if value_render == "FORMATTED_VALUE":
        return _formatted(cell)
    if cell.is_date and date_render == "FORMATTED_STRING":
        return cell.text
    return cell.value


# ---------------------------------------------------------------------------------------
# Deterministic identifiers
# ---------------------------------------------------------------------------------------

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _random_id(rng: random.Random, length: int, prefix: str = "") -> str:
    return prefix + "".join(rng.choices(_ID_ALPHABET, k=length))


def _hex8(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}"


# ---------------------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------------------

_CHOICE_TYPES = {"radio": "RADIO", "checkbox": "CHECKBOX", "dropdown": "DROP_DOWN"}
QUESTION_KINDS = ("text", "paragraph", "radio", "checkbox", "dropdown", "date", "time", "scale")


@dataclass
class QuestionSpec:
    """A question to put on a fake form.

    ``kind`` is one of :data:`QUESTION_KINDS`; ``options`` for radio/checkbox/dropdown;
    ``settings`` holds kind-specific fields in API spelling, e.g. ``{"includeTime": True}``
    for dates or ``{"low": 1, "high": 5}`` for scales.
    """

    title: str
    kind: str = "text"
    options: Sequence[str] = ()
    required: bool = False
    question_id: str | None = None
    description: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    item_id: str | None = None


@dataclass
class _Question:
    item_id: str
    question_id: str
    spec: QuestionSpec

    def item_json(self) -> dict[str, Any]:
        spec = self.spec
        question: dict[str, Any] = {"questionId": self.question_id}
        if spec.required:
            question["required"] = True
        settings = dict(spec.settings)
        if spec.kind in ("text", "paragraph"):
            question["textQuestion"] = {"paragraph": True} if spec.kind == "paragraph" else {}
        elif spec.kind in _CHOICE_TYPES:
            question["choiceQuestion"] = {
                "type": _CHOICE_TYPES[spec.kind],
                "options": [{"value": option} for option in spec.options],
                **settings,
            }
        elif spec.kind == "date":
            question["dateQuestion"] = _prune({"includeYear": True, **settings})
        elif spec.kind == "time":
            question["timeQuestion"] = _prune(settings)
        elif spec.kind == "scale":
            question["scaleQuestion"] = _prune({"low": 1, "high": 5, **settings})
        item: dict[str, Any] = {"itemId": self.item_id, "title": spec.title}
        if spec.description:
            item["description"] = spec.description
        item["questionItem"] = {"question": question}
        return item


_KIND_OF_CHOICE = {v: k for k, v in _CHOICE_TYPES.items()}


def _spec_of_item(item: Mapping[str, Any], where: str) -> QuestionSpec:
    """The question an Item of a createItem request asks (what the fake can hold)."""
    question = (item.get("questionItem") or {}).get("question")
    if not question:
        raise _bad_request(f"{where}: the fake holds question items only")
    settings: dict[str, Any] = {}
    if "textQuestion" in question:
        kind = "paragraph" if question["textQuestion"].get("paragraph") else "text"
        options: list[str] = []
    elif "choiceQuestion" in question:
        choice = question["choiceQuestion"]
        kind = _KIND_OF_CHOICE.get(choice.get("type", ""), "")
        if not kind:
            raise _bad_request(f"{where}: choiceQuestion.type must be RADIO, CHECKBOX or "
                               "DROP_DOWN")
        options = [o.get("value", "") for o in choice.get("options") or []]
        if not options or any(not o for o in options):
            raise _bad_request(f"{where}: a choice question needs options with values")
    elif "dateQuestion" in question:
        kind, options = "date", []
        settings = {k: v for k, v in question["dateQuestion"].items() if k != "includeYear"}
    elif "timeQuestion" in question:
        kind, options, settings = "time", [], dict(question["timeQuestion"])
    else:
        raise _bad_request(f"{where}: the fake holds text, choice, date and time questions")
    return QuestionSpec(item.get("title") or "", kind, tuple(options),
                        bool(question.get("required")), None, item.get("description"),
                        settings)


@dataclass
class _StoredResponse:
    response_id: str
    create_ns: int
    submitted_ns: int
    email: str | None
    answers: dict[str, list[str]]
    order_key: str

    def json(self, form_id: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if form_id is not None:
            out["formId"] = form_id
        out["responseId"] = self.response_id
        out["createTime"] = _proto_timestamp(self.create_ns)
        out["lastSubmittedTime"] = _proto_timestamp(self.submitted_ns)
        if self.email:
            out["respondentEmail"] = self.email
        if self.answers:
            out["answers"] = {
                qid: {"questionId": qid, "textAnswers": {"answers": [{"value": v} for v in vals]}}
                for qid, vals in self.answers.items()
            }
        return out


@dataclass
class _Form:
    form_id: str
    title: str
    document_title: str
    description: str | None
    questions: list[_Question]
    revision: int
    responder_id: str
    collect_email: str | None
    published: bool | None
    responses: dict[str, _StoredResponse] = field(default_factory=dict)

    def question(self, question_id: str) -> _Question:
        for question in self.questions:
            if question.question_id == question_id:
                return question
        raise KeyError(f"form {self.form_id} has no question {question_id!r}")


def _answer_values(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [v for item in value for v in _answer_values(item)]
    if isinstance(value, dt.datetime):
        return [value.strftime("%Y-%m-%d %H:%M")]
    if isinstance(value, dt.date):
        return [value.isoformat()]
    if isinstance(value, dt.time):
        return [value.strftime("%H:%M")]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    return [str(value)]


class FormsFake:
    """State and handlers of the fake Forms API v1 (``server.forms``).

    ``filter_on`` chooses which timestamp ``responses.list`` filters compare with; the
    documentation only says "submitted after", so tests can try both.
    Responses are listed in a deterministic but non-chronological order, as observed.
    """

    PAGE_CAP = 5000

    def __init__(
        self, server: GoogleFakeServer, rng: random.Random, filter_on: str = "lastSubmittedTime"
    ) -> None:
        if filter_on not in ("lastSubmittedTime", "createTime"):
            raise ValueError("filter_on must be 'lastSubmittedTime' or 'createTime'")
        self._server = server
        self._rng = rng
        self.filter_on = filter_on
        self.forms: dict[str, _Form] = {}
        self.denied: set[str] = set()
        self._clock_ns = _to_ns(dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC))

    @property
    def _lock(self) -> Any:
        return self._server.lock

    # -- test helpers ---------------------------------------------------------------------
    def create_form(
        self,
        title: str = "Near-miss report",
        questions: Iterable[QuestionSpec | Mapping[str, Any]] = (),
        *,
        form_id: str | None = None,
        document_title: str | None = None,
        description: str | None = None,
        collect_email: str | None = None,
        published: bool | None = None,
    ) -> str:
        """Create a form; returns its id.

        ``collect_email`` (``"VERIFIED"`` or ``"RESPONDER_INPUT"``) shows in
        ``settings.emailCollectionType``. ``published`` adds ``publishSettings.publishState``;
        the default leaves it out, as in the recorded responses of older forms.
        """
        with self._lock:
            form_id = form_id or _random_id(self._rng, 43, "1")
            form = _Form(
                form_id=form_id, title=title, document_title=document_title or title,
                description=description, questions=[], revision=0x10,
                responder_id=_random_id(self._rng, 48, "1FAIpQLS"), collect_email=collect_email,
                published=published,
            )
            self.forms[form_id] = form
            for spec in questions:
                self._add(form, spec if isinstance(spec, QuestionSpec) else QuestionSpec(**spec))
            return form_id

    def add_question(
        self,
        form_id: str,
        title: str,
        kind: str = "text",
        *,
        options: Sequence[str] = (),
        required: bool = False,
        question_id: str | None = None,
        index: int | None = None,
        description: str | None = None,
        **settings: Any,
    ) -> str:
        """Add a question (form drift); returns its questionId."""
        spec = QuestionSpec(title, kind, tuple(options), required, question_id, description,
                            settings)
        with self._lock:
            form = self._form(form_id)
            question = self._add(form, spec, index)
            form.revision += 1
            return question.question_id

    def rename_question(self, form_id: str, question_id: str, title: str) -> None:
        with self._lock:
            form = self._form(form_id)
            form.question(question_id).spec.title = title
            form.revision += 1

    def remove_question(self, form_id: str, question_id: str) -> None:
        """Remove a question. Existing responses keep their answers to it, as in Forms."""
        with self._lock:
            form = self._form(form_id)
            form.questions.remove(form.question(question_id))
            form.revision += 1

    def add_response(
        self,
        form_id: str,
        answers: Mapping[str, Any],
        *,
        email: str | None = None,
        at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Submit a response; ``answers`` maps questionId to a value or a list of values
        (dates, times and numbers are converted to the strings Forms returns). ``at``
        defaults to a deterministic clock. Returns the FormResponse JSON."""
        with self._lock:
            form = self._form(form_id)
            stored = {qid: _answer_values(v) for qid, v in answers.items() if v is not None}
            stored = {qid: vals for qid, vals in stored.items() if vals}
            self._check_answers(form, [q for q, v in answers.items() if v is not None], stored)
            ns = self._when(at)
            response_id = _random_id(self._rng, 65, "ACYDBN")
            order_key = hashlib.sha256(f"{form_id}/{response_id}".encode()).hexdigest()
            response = _StoredResponse(
                response_id, (ns // 1_000_000) * 1_000_000, (ns // 1000) * 1000,
                email, stored, order_key,
            )
            form.responses[response_id] = response
            return response.json(form_id)

    def edit_response(
        self,
        form_id: str,
        response_id: str,
        answers: Mapping[str, Any],
        *,
        at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Re-submit an edited response: given answers replace old ones (``None`` removes
        an answer); ``lastSubmittedTime`` moves, ``createTime`` stays."""
        with self._lock:
            form = self._form(form_id)
            response = form.responses[response_id]
            merged = dict(response.answers)
            for qid, value in answers.items():
                values = _answer_values(value) if value is not None else []
                if values:
                    merged[qid] = values
                else:
                    merged.pop(qid, None)
            self._check_answers(form, [q for q, v in answers.items() if v is not None], merged)
            response.answers = merged
            response.submitted_ns = (self._when(at) // 1000) * 1000
            return response.json(form_id)

    def responses(self, form_id: str) -> list[dict[str, Any]]:
        """All responses in submission order (the API lists them shuffled)."""
        with self._lock:
            form = self._form(form_id)
            return [r.json(form_id) for r in form.responses.values()]

    def form_json(self, form_id: str) -> dict[str, Any]:
        with self._lock:
            return self._form_json(self._form(form_id))

    # -- internals ------------------------------------------------------------------------
    def _form(self, form_id: str) -> _Form:
        try:
            return self.forms[form_id]
        except KeyError:
            raise KeyError(f"no fake form {form_id!r}") from None

    def _add(self, form: _Form, spec: QuestionSpec, index: int | None = None) -> _Question:
        if spec.kind not in QUESTION_KINDS:
            raise ValueError(f"unknown question kind {spec.kind!r}; use one of {QUESTION_KINDS}")
        if spec.kind in _CHOICE_TYPES and not spec.options:
            raise ValueError(f"a {spec.kind} question needs options")
        question_id = spec.question_id or _hex8(self._rng)
        if any(q.question_id == question_id for q in form.questions):
            raise ValueError(f"question id {question_id} already used")
        question = _Question(spec.item_id or _hex8(self._rng), question_id, spec)
        form.questions.insert(len(form.questions) if index is None else index, question)
        return question

    @staticmethod
    def _check_answers(form: _Form, given: Iterable[str], answers: Mapping[str, list[str]]) -> None:
        """``given``: question ids the caller answered now (must exist on the form);
        ``answers``: the complete answer set, checked for required questions."""
        for qid in given:
            spec = form.question(qid).spec
            if spec.kind not in ("checkbox",) and len(answers.get(qid, ())) > 1:
                raise ValueError(f"question {qid} ({spec.kind}) takes one answer")
        missing = [q.question_id for q in form.questions
                   if q.spec.required and q.question_id not in answers]
        if missing:
            raise ValueError(f"required questions unanswered: {missing}")

    def _when(self, at: dt.datetime | None) -> int:
        if at is not None:
            return _to_ns(at)
        self._clock_ns += 433_371_519_000  # 7 min 13.371519 s: deterministic, with µs
        return self._clock_ns

    def _form_json(self, form: _Form) -> dict[str, Any]:
        info: dict[str, Any] = {"title": form.title}
        if form.description:
            info["description"] = form.description
        info["documentTitle"] = form.document_title
        out: dict[str, Any] = {"formId": form.form_id, "info": info}
        if form.collect_email:
            out["settings"] = {"emailCollectionType": form.collect_email}
        out["revisionId"] = f"{form.revision:08x}"
        out["responderUri"] = f"https://docs.google.com/forms/d/e/{form.responder_id}/viewform"
        if form.questions:
            out["items"] = [q.item_json() for q in form.questions]
        if form.published is not None:
            state = {"isPublished": True, "isAcceptingResponses": True} if form.published \
                else {}
            out["publishSettings"] = {"publishState": state}
        return out

    def _lookup(self, form_id: str) -> _Form:
        if form_id in self.denied:
            raise _denied()
        form = self.forms.get(form_id)
        if form is None:
            raise _not_found()
        return form

    # -- handlers -------------------------------------------------------------------------
    def _handle_get(self, form_id: str) -> dict[str, Any]:
        return self._form_json(self._lookup(form_id))

    def _handle_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """forms.create: only the title and document title may be given; items and
        settings come by batchUpdate (the documented behaviour)."""
        info = body.get("info") or {}
        extra = sorted({*body} - {"info"} | {*info} - {"title", "documentTitle"})
        if extra or not info.get("title"):
            raise _bad_request("Only info.title and info.documentTitle can be set when "
                               "creating a form. To add items and change settings, use "
                               "batchUpdate.", [(f, "cannot be set") for f in extra])
        form_id = self.create_form(info["title"], document_title=info.get("documentTitle"))
        return self._form_json(self.forms[form_id])

    def _handle_batch_update(self, form_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """forms.batchUpdate: createItem (questions) and updateFormInfo; all or nothing."""
        with self._lock:
            form = self._lookup(form_id)
            replies: list[dict[str, Any]] = []
            added: list[_Question] = []
            try:
                for i, request in enumerate(body.get("requests") or []):
                    if "createItem" in request:
                        create = request["createItem"]
                        spec = _spec_of_item(create.get("item") or {}, f"requests[{i}]")
                        index = (create.get("location") or {}).get("index")
                        question = self._add(form, spec, index)
                        added.append(question)
                        replies.append({"createItem": {"itemId": question.item_id,
                                                       "questionId": [question.question_id]}})
                    elif "updateFormInfo" in request:
                        update = request["updateFormInfo"]
                        for name in (update.get("updateMask") or "").split(","):
                            value = (update.get("info") or {}).get(name.strip())
                            if name.strip() == "description":
                                form.description = value
                            elif name.strip() == "title" and value:
                                form.title = value
                        replies.append({})
                    else:
                        raise _bad_request(f"requests[{i}]: the fake implements createItem "
                                           "and updateFormInfo only")
            except (GoogleApiError, ValueError) as exc:
                for question in added:  # nothing of a failed batch stays
                    form.questions.remove(question)
                if isinstance(exc, ValueError):
                    raise _bad_request(str(exc)) from None
                raise
            form.revision += 1
            out: dict[str, Any] = {"replies": replies,
                                   "writeControl": {"requiredRevisionId": f"{form.revision:08x}"}}
            if body.get("includeFormInResponse"):
                out["form"] = self._form_json(form)
            return out

    def _handle_response_get(self, form_id: str, response_id: str) -> dict[str, Any]:
        form = self._lookup(form_id)
        response = form.responses.get(response_id)
        if response is None:
            raise _not_found()
        return response.json(form.form_id)

    def _handle_list(self, form_id: str, request: RecordedRequest) -> dict[str, Any]:
        form = self._lookup(form_id)
        filter_text = request.param("filter") or ""
        threshold: tuple[str, int] | None = None
        if filter_text:
            m = re.fullmatch(r"\s*timestamp\s*(>=|>)\s*(\S+)\s*", filter_text)
            ns = _parse_zulu(m.group(2)) if m else None
            if m is None or ns is None:
                raise _bad_request(
                    "Request contains an invalid argument.",
                    [("filter", f"Unsupported filter {filter_text!r}: use 'timestamp > N' or "
                                "'timestamp >= N' with N in RFC 3339 UTC (Zulu) format.")],
                )
            threshold = (m.group(1), ns)
        page_size = int(request.param("pageSize") or 0)
        if page_size < 0:
            raise _bad_request("Request contains an invalid argument.",
                               [("page_size", "page_size must not be negative")])
        page_size = min(page_size or self.PAGE_CAP, self.PAGE_CAP)
        after_key = ""
        token = request.param("pageToken")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode() + b"=="))
                after_key = str(state["k"])
                same = state["f"] == filter_text and state["form"] == form_id
            except (ValueError, KeyError, TypeError, binascii.Error):
                same = False
            if not same:
                raise _bad_request(
                    "Request contains an invalid argument.",
                    [("page_token", "The page token does not match this form and filter.")],
                )
        attr = "submitted_ns" if self.filter_on == "lastSubmittedTime" else "create_ns"
        selected = []
        for response in form.responses.values():
            stamp = getattr(response, attr)
            if threshold is not None:
                op, ns = threshold
                if (op == ">" and stamp <= ns) or (op == ">=" and stamp < ns):
                    continue
            if response.order_key > after_key:
                selected.append(response)
        selected.sort(key=lambda r: r.order_key)
        page = selected[:page_size]
        out: dict[str, Any] = {}
        if page:
            out["responses"] = [r.json() for r in page]
        if len(selected) > page_size:
            state = {"form": form_id, "f": filter_text, "k": page[-1].order_key}
            out["nextPageToken"] = (
                base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
            )
        return out


# ---------------------------------------------------------------------------------------
# Sheets
# ---------------------------------------------------------------------------------------

# Defaults of a new spreadsheet, as recorded from the live API (en_US, Etc/GMT).
_DEFAULT_FORMAT: dict[str, Any] = {
    "backgroundColor": {"red": 1, "green": 1, "blue": 1},
    "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM",
    "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {
        "foregroundColor": {}, "fontFamily": "arial,sans,sans-serif", "fontSize": 10,
        "bold": False, "italic": False, "strikethrough": False, "underline": False,
        "foregroundColorStyle": {"rgbColor": {}},
    },
    "backgroundColorStyle": {"rgbColor": {"red": 1, "green": 1, "blue": 1}},
}
_THEME: dict[str, Any] = {
    "primaryFontFamily": "Arial",
    "themeColors": [
        {"colorType": "TEXT", "color": {"rgbColor": {}}},
        {"colorType": "BACKGROUND", "color": {"rgbColor": {"red": 1, "green": 1, "blue": 1}}},
        {"colorType": "ACCENT1", "color": {"rgbColor": {
            "red": 0.25882354, "green": 0.52156866, "blue": 0.95686275}}},
        {"colorType": "ACCENT2", "color": {"rgbColor": {
            "red": 0.91764706, "green": 0.2627451, "blue": 0.20784314}}},
        {"colorType": "ACCENT3", "color": {"rgbColor": {
            "red": 0.9843137, "green": 0.7372549, "blue": 0.015686275}}},
        {"colorType": "ACCENT4", "color": {"rgbColor": {
            "red": 0.20392157, "green": 0.65882355, "blue": 0.3254902}}},
        {"colorType": "ACCENT5", "color": {"rgbColor": {
            "red": 1, "green": 0.42745098, "blue": 0.003921569}}},
        {"colorType": "ACCENT6", "color": {"rgbColor": {
            "red": 0.27450982, "green": 0.7411765, "blue": 0.7764706}}},
        {"colorType": "LINK", "color": {"rgbColor": {
            "red": 0.06666667, "green": 0.33333334, "blue": 0.8}}},
    ],
}


class _RequestError(Exception):
    """A batchUpdate sub-request is invalid; becomes "Invalid requests[i].kind: ..."."""


@dataclass
class _Sheet:
    props: dict[str, Any]
    cells: dict[tuple[int, int], _Cell] = field(default_factory=dict)
    basic_filter: dict[str, Any] | None = None
    protected_ranges: list[dict[str, Any]] = field(default_factory=list)
    conditional_formats: list[dict[str, Any]] = field(default_factory=list)
    validations: list[tuple[tuple[int, int, int, int], dict[str, Any] | None]] = field(
        default_factory=list
    )
    merges: list[dict[str, Any]] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)  # EmbeddedChart, as added
    row_meta: dict[int, dict[str, Any]] = field(default_factory=dict)
    col_meta: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def sheet_id(self) -> int:
        return int(self.props.get("sheetId", 0))

    @property
    def title(self) -> str:
        return str(self.props["title"])

    @property
    def rows(self) -> int:
        return int(self.props["gridProperties"]["rowCount"])

    @property
    def cols(self) -> int:
        return int(self.props["gridProperties"]["columnCount"])

    def resize(self, rows: int | None = None, cols: int | None = None) -> None:
        grid = self.props["gridProperties"]
        if rows is not None:
            grid["rowCount"] = rows
        if cols is not None:
            grid["columnCount"] = cols
        self.cells = {k: c for k, c in self.cells.items() if k[0] < self.rows and k[1] < self.cols}

    def validation_at(self, row: int, col: int) -> dict[str, Any] | None:
        rule = None
        for (sr, er, sc, ec), candidate in self.validations:
            if sr <= row < er and sc <= col < ec:
                rule = candidate
        return rule


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    properties: dict[str, Any]
    sheets: list[_Sheet]
    named_ranges: list[dict[str, Any]] = field(default_factory=list)

    def sheet_by_id(self, sheet_id: int) -> _Sheet:
        for sheet in self.sheets:
            if sheet.sheet_id == sheet_id:
                return sheet
        raise _RequestError(f"No grid with id: {sheet_id}")

    def sheet_by_title(self, title: str) -> _Sheet | None:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        for sheet in self.sheets:
            if sheet.title.casefold() == title.casefold():
                return sheet
        return None

    def reindex(self) -> None:
        for index, sheet in enumerate(self.sheets):
            sheet.props["index"] = index


@dataclass(frozen=True)
class _Range:
    sheet: _Sheet
    bounds: _Bounds
    text: str  # as the client sent it
    whole_sheet: bool

    def box(self) -> tuple[int, int, int, int]:
        """Bounds clipped to the grid (may be empty if the start lies beyond it)."""
        b, sheet = self.bounds, self.sheet
        er = sheet.rows if b.er is None else min(b.er, sheet.rows)
        ec = sheet.cols if b.ec is None else min(b.ec, sheet.cols)
        return b.sr, er, b.sc, ec

    def display(self) -> str:
        if self.whole_sheet:
            return quote_sheet_title(self.sheet.title)
        _, _, cells = self.text.rpartition("!")
        return f"{quote_sheet_title(self.sheet.title)}!{cells.replace('$', '').upper()}"


@dataclass(frozen=True)
class CellView:
    """What a test can check about one cell (``server.sheets.cell(id, "Sheet1!B2")``)."""

    value: Any
    formula: str | None
    formatted: str
    user_entered_format: dict[str, Any]
    note: str | None
    data_validation: dict[str, Any] | None


def _bool_param(request: RecordedRequest, name: str) -> bool:
    return (request.param(name) or "").lower() == "true"


def _to_rows(values: Any, major: str | None) -> list[list[Any]]:
    rows = [list(row) for row in (values or [])]
    if major != "COLUMNS":
        return rows
    height = max((len(col) for col in rows), default=0)
    return [[col[r] if r < len(col) else None for col in rows] for r in range(height)]


class SheetsFake:
    """State and handlers of the fake Sheets API v4 (``server.sheets``).

    Grid limits behave as the live API reports them: reads and clears whose start lies
    outside the grid and ``values.update``/``batchUpdate`` writes past the last row or
    column answer 400 "Range (...) exceeds grid limits"; reads past the end are clipped
    (``A1:ZZ1`` on a 24-column sheet works, writing ``Y1`` there does not);
    ``values.append`` adds rows/columns as needed (documented for INSERT_ROWS and
    OVERWRITE alike).

    Formulas: plain arithmetic (``=4/2``) is evaluated; any other formula is stored and
    reads back as ``#NAME?`` (FORMULA rendering returns its text), which is enough to tell
    that a formula was injected.
    """

    def __init__(self, server: GoogleFakeServer, rng: random.Random,
                 owner_email: str = "owner@example.com") -> None:
        self._server = server
        self._rng = rng
        self.owner_email = owner_email
        self.spreadsheets: dict[str, _Spreadsheet] = {}
        self.denied: set[str] = set()

    @property
    def _lock(self) -> Any:
        return self._server.lock

    # -- test helpers ---------------------------------------------------------------------
    def create_spreadsheet(
        self,
        title: str = "Untitled spreadsheet",
        sheets: Iterable[str | tuple[str, int, int]] = ("Sheet1",),
        *,
        spreadsheet_id: str | None = None,
        locale: str = "en_US",
        time_zone: str = "Etc/GMT",
    ) -> str:
        """Create a spreadsheet; ``sheets`` are titles (1000 x 26 grids) or
        ``(title, rows, columns)``. The first sheet gets sheetId 0, as in Sheets."""
        with self._lock:
            spreadsheet_id = spreadsheet_id or _random_id(self._rng, 43, "1")
            properties = {
                "title": title, "locale": locale, "autoRecalc": "ON_CHANGE",
                "timeZone": time_zone, "defaultFormat": copy.deepcopy(_DEFAULT_FORMAT),
                "spreadsheetTheme": copy.deepcopy(_THEME),
            }
            ss = _Spreadsheet(spreadsheet_id, properties, [])
            self.spreadsheets[spreadsheet_id] = ss
            for spec in sheets:
                name, rows, cols = (spec, 1000, 26) if isinstance(spec, str) else spec
                self._new_sheet(ss, {"title": name, "gridProperties": {
                    "rowCount": rows, "columnCount": cols}})
            return spreadsheet_id

    def add_sheet(self, spreadsheet_id: str, title: str, *, rows: int = 1000, cols: int = 26,
                  frozen_rows: int = 0, sheet_id: int | None = None, hidden: bool = False) -> int:
        """Add a sheet at the end; returns its sheetId (random unless given)."""
        with self._lock:
            grid = {"rowCount": rows, "columnCount": cols, "frozenRowCount": frozen_rows}
            props: dict[str, Any] = {"title": title, "gridProperties": grid, "hidden": hidden}
            if sheet_id is not None:
                props["sheetId"] = sheet_id
            return self._new_sheet(self._ss(spreadsheet_id), props).sheet_id

    def set_values(self, spreadsheet_id: str, a1: str, rows: Sequence[Sequence[Any]], *,
                   value_input_option: str = "RAW") -> None:
        """Write values starting at the top-left of ``a1`` (grid grows as needed)."""
        with self._lock:
            rng = self._range(self._ss(spreadsheet_id), a1)
            sheet, b = rng.sheet, rng.bounds
            needed_rows = b.sr + len(rows)
            needed_cols = b.sc + max((len(r) for r in rows), default=0)
            if needed_rows > sheet.rows or needed_cols > sheet.cols:
                sheet.resize(max(sheet.rows, needed_rows), max(sheet.cols, needed_cols))
            self._write(sheet, b.sr, b.sc, [list(r) for r in rows],
                        value_input_option == "USER_ENTERED")

    def get_values(self, spreadsheet_id: str, a1: str, *,
                   render: str = "FORMATTED_VALUE") -> list[list[Any]]:
        """Values as ``values.get`` returns them (trimmed)."""
        with self._lock:
            rng = self._range(self._ss(spreadsheet_id), a1)
            return self._read(rng, "ROWS", render, "SERIAL_NUMBER")[1]

    def cell(self, spreadsheet_id: str, a1: str) -> CellView:
        with self._lock:
            rng = self._range(self._ss(spreadsheet_id), a1)
            row, col = rng.bounds.sr, rng.bounds.sc
            cell = rng.sheet.cells.get((row, col)) or _Cell()
            return CellView(cell.value, cell.formula, _formatted(cell), copy.deepcopy(cell.fmt),
                            cell.note, copy.deepcopy(rng.sheet.validation_at(row, col)))

    def metadata(self, spreadsheet_id: str) -> dict[str, Any]:
        """The spreadsheets.get body (without grid data)."""
        with self._lock:
            return self._spreadsheet_json(self._ss(spreadsheet_id), False, None)

    def sheet(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        """One sheet's metadata plus what the API only shows per cell: ``dataValidations``
        (list of ``{"range", "rule"}``) and ``dimensionProperties``."""
        with self._lock:
            ss = self._ss(spreadsheet_id)
            sheet = ss.sheet_by_title(title)
            if sheet is None:
                raise KeyError(title)
            out = self._sheet_json(sheet, False, None)
            out["dataValidations"] = [
                {"range": self._grid_range_json({
                    "sheetId": sheet.sheet_id, "startRowIndex": sr, "endRowIndex": er,
                    "startColumnIndex": sc, "endColumnIndex": ec}), "rule": copy.deepcopy(rule)}
                for (sr, er, sc, ec), rule in sheet.validations
            ]
            out["dimensionProperties"] = {
                "ROWS": copy.deepcopy(sheet.row_meta), "COLUMNS": copy.deepcopy(sheet.col_meta)
            }
            return out

    # -- lookup ---------------------------------------------------------------------------
    def _ss(self, spreadsheet_id: str) -> _Spreadsheet:
        try:
            return self.spreadsheets[spreadsheet_id]
        except KeyError:
            raise KeyError(f"no fake spreadsheet {spreadsheet_id!r}") from None

    def _lookup(self, spreadsheet_id: str) -> _Spreadsheet:
        if spreadsheet_id in self.denied:
            raise _denied()
        ss = self.spreadsheets.get(spreadsheet_id)
        if ss is None:
            raise _not_found()
        return ss

    def _new_sheet(self, ss: _Spreadsheet, props: Mapping[str, Any],
                   index: int | None = None) -> _Sheet:
        title = props.get("title") or self._default_title(ss)
        if ss.sheet_by_title(title) is not None:
            raise _RequestError(
                f'A sheet with the name "{title}" already exists. Please enter another name.'
            )
        sheet_id = props.get("sheetId")
        if sheet_id is None:
            sheet_id = 0 if not ss.sheets else self._rng.randrange(1, 2**31 - 1)
        grid = dict(props.get("gridProperties") or {})
        grid.setdefault("rowCount", 1000)
        grid.setdefault("columnCount", 26)
        full = {**copy.deepcopy(dict(props)), "sheetId": sheet_id, "title": title,
                "index": 0, "sheetType": props.get("sheetType") or "GRID",
                "gridProperties": grid}
        ordered = {k: full[k] for k in ("sheetId", "title", "index", "sheetType",
                                        "gridProperties")}
        ordered.update({k: v for k, v in full.items() if k not in ordered})
        sheet = _Sheet(_prune(ordered))
        position = len(ss.sheets) if index is None else min(max(index, 0), len(ss.sheets))
        ss.sheets.insert(position, sheet)
        ss.reindex()
        return sheet

    @staticmethod
    def _default_title(ss: _Spreadsheet) -> str:
        n = len(ss.sheets) + 1
        while ss.sheet_by_title(f"Sheet{n}") is not None:
            n += 1
        return f"Sheet{n}"

    def _range(self, ss: _Spreadsheet, text: str) -> _Range:
        def unparseable() -> GoogleApiError:
            return _bad_request(f"Unable to parse range: {text}")

        try:
            name, cells = _split_a1(text.strip())
        except ValueError:
            raise unparseable() from None
        if name is None:
            assert cells is not None
            sheet = ss.sheet_by_title(cells)
            if sheet is not None:
                return _Range(sheet, _Bounds(0, None, 0, None), text, True)
            for named in ss.named_ranges:
                if named["name"] == cells:
                    gr = named["range"]
                    sheet = ss.sheet_by_id(int(gr.get("sheetId", 0)))
                    bounds = _Bounds(gr.get("startRowIndex", 0), gr.get("endRowIndex"),
                                     gr.get("startColumnIndex", 0), gr.get("endColumnIndex"))
                    return _Range(sheet, bounds, text, False)
            visible = [s for s in ss.sheets if not s.props.get("hidden")] or ss.sheets
            sheet = visible[0]
        else:
            found = ss.sheet_by_title(name)
            if found is None:
                raise unparseable()
            sheet = found
            if cells is None:
                return _Range(sheet, _Bounds(0, None, 0, None), text, True)
        try:
            bounds = _parse_cells(cells)
        except ValueError:
            raise unparseable() from None
        return _Range(sheet, bounds, text, False)

    def _check_start(self, rng: _Range) -> None:
        sheet = rng.sheet
        if rng.bounds.sr >= sheet.rows or rng.bounds.sc >= sheet.cols:
            raise self._grid_error(rng.display(), sheet)

    @staticmethod
    def _grid_error(display: str, sheet: _Sheet) -> GoogleApiError:
        return _bad_request(
            f"Range ({display}) exceeds grid limits. Max rows: {sheet.rows}, "
            f"max columns: {sheet.cols}"
        )

    # -- values ---------------------------------------------------------------------------
    def _read(self, rng: _Range, major: str, value_render: str,
              date_render: str) -> tuple[str, list[list[Any]]]:
        self._check_start(rng)
        sr, er, sc, ec = rng.box()
        found = {
            (r, c): cell for (r, c), cell in rng.sheet.cells.items()
            if sr <= r < er and sc <= c < ec and not cell.empty
        }
        a1 = _a1(rng.sheet.title, sr, er, sc, ec)
        if not found:
            return a1, []
        last_row = max(r for r, _ in found) + 1
        last_col = max(c for _, c in found) + 1
        if major == "COLUMNS":
            lines = [[(r, c) for r in range(sr, last_row)] for c in range(sc, last_col)]
        else:
            lines = [[(r, c) for c in range(sc, last_col)] for r in range(sr, last_row)]
        out: list[list[Any]] = []
        for line in lines:
            filled = [i for i, key in enumerate(line) if key in found]
            if not filled:
                out.append([])
                continue
            out.append([
                _render(found[key], value_render, date_render) if key in found else ""
                for key in line[: filled[-1] + 1]
            ])
        while out and not out[-1]:
            out.pop()
        return a1, out

    def _value_range(self, rng: _Range, request: RecordedRequest) -> dict[str, Any]:
        major = request.param("majorDimension") or "ROWS"
        major = "ROWS" if major == "DIMENSION_UNSPECIFIED" else major
        value_render = request.param("valueRenderOption") or "FORMATTED_VALUE"
        date_render = request.param("dateTimeRenderOption") or "SERIAL_NUMBER"
        a1, values = self._read(rng, major, value_render, date_render)
        out: dict[str, Any] = {"range": a1, "majorDimension": major}
        if values:
            out["values"] = values
        return out

    def _write(self, sheet: _Sheet, row0: int, col0: int, rows: list[list[Any]],
               user_entered: bool) -> int:
        count = 0
        for i, row in enumerate(rows):
            for j, raw in enumerate(row):
                if raw is None:
                    continue  # null values are skipped, per the API reference
                count += 1
                key = (row0 + i, col0 + j)
                cell = sheet.cells.get(key)
                new = _entered_cell(raw, user_entered) if raw != "" else _Cell()
                if cell is None:
                    if not new.empty:
                        sheet.cells[key] = new
                    continue
                cell.value, cell.formula, cell.text, cell.is_date = (
                    new.value, new.formula, new.text, new.is_date)
                if cell.empty and not cell.fmt and cell.note is None:
                    del sheet.cells[key]
        return count

    def _plan_write(self, ss: _Spreadsheet, range_text: str, values: Any,
                    major: str | None) -> tuple[_Range, list[list[Any]], tuple[int, int, int, int]]:
        rng = self._range(ss, range_text)
        rows = _to_rows(values, major)
        height = len(rows)
        width = max((len(r) for r in rows), default=0)
        b, sheet = rng.bounds, rng.sheet
        if not b.single and not rng.whole_sheet:
            if b.er is not None and height > b.er - b.sr:
                raise _bad_request(f"Requested writing within range [{range_text}], but tried "
                                   f"writing to row [{b.sr + height}]")
            if b.ec is not None and width > b.ec - b.sc:
                raise _bad_request(f"Requested writing within range [{range_text}], but tried "
                                   f"writing to column [{column_letters(b.sc + width - 1)}]")
        box = (b.sr, b.sr + max(height, 1), b.sc, b.sc + max(width, 1))
        if b.sr >= sheet.rows or b.sc >= sheet.cols or (
            height and (box[1] > sheet.rows or box[3] > sheet.cols)
        ):
            raise self._grid_error(_a1(sheet.title, *box), sheet)
        return rng, rows, box

    @staticmethod
    def _input_option(value: str | None) -> bool:
        if value not in ("RAW", "USER_ENTERED"):
            message = "'valueInputOption' is required but not specified"
            raise GoogleApiError(400, message, errors=[
                {"message": message, "domain": "global", "reason": "badRequest"}])
        return value == "USER_ENTERED"

    def _update_response(self, ss: _Spreadsheet, rng: _Range, rows: list[list[Any]],
                         box: tuple[int, int, int, int], count: int, include: bool,
                         render: tuple[str, str] = ("FORMATTED_VALUE", "SERIAL_NUMBER"),
                         ) -> dict[str, Any]:
        out: dict[str, Any] = {"spreadsheetId": ss.spreadsheet_id,
                               "updatedRange": _a1(rng.sheet.title, *box)}
        if rows:
            out["updatedRows"] = box[1] - box[0]
            out["updatedColumns"] = box[3] - box[2]
            out["updatedCells"] = count
        if include:
            data_range = _Range(rng.sheet, _Bounds(box[0], box[1], box[2], box[3]),
                                out["updatedRange"], False)
            a1, values = self._read(data_range, "ROWS", *render)
            out["updatedData"] = {"range": a1, "majorDimension": "ROWS"}
            if values:
                out["updatedData"]["values"] = values
        return out

    def _handle_values_get(self, sid: str, range_text: str,
                          request: RecordedRequest) -> dict[str, Any]:
        ss = self._lookup(sid)
        return self._value_range(self._range(ss, range_text), request)

    def _handle_values_batch_get(self, sid: str, request: RecordedRequest) -> dict[str, Any]:
        ss = self._lookup(sid)
        out: dict[str, Any] = {"spreadsheetId": sid}
        ranges = [self._range(ss, text) for text in request.query.get("ranges", [])]
        if ranges:
            out["valueRanges"] = [self._value_range(rng, request) for rng in ranges]
        return out

    def _handle_values_update(self, sid: str, range_text: str, request: RecordedRequest,
                             body: Mapping[str, Any]) -> dict[str, Any]:
        ss = self._lookup(sid)
        user_entered = self._input_option(request.param("valueInputOption"))
        body_range = body.get("range")
        if body_range:
            a, b = self._range(ss, body_range), self._range(ss, range_text)
            if (a.sheet.sheet_id, a.bounds) != (b.sheet.sheet_id, b.bounds):
                raise _bad_request(f"Requested range [{body_range}] must match the range in "
                                   f"the URL [{range_text}].")
        rng, rows, box = self._plan_write(ss, range_text, body.get("values"),
                                          body.get("majorDimension"))
        count = self._write(rng.sheet, box[0], box[2], rows, user_entered)
        render = (request.param("responseValueRenderOption") or "FORMATTED_VALUE",
                  request.param("responseDateTimeRenderOption") or "SERIAL_NUMBER")
        return self._update_response(ss, rng, rows, box, count,
                                     _bool_param(request, "includeValuesInResponse"), render)

    def _handle_values_batch_update(self, sid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ss = self._lookup(sid)
        user_entered = self._input_option(body.get("valueInputOption"))
        plans = [self._plan_write(ss, item.get("range") or "", item.get("values"),
                                  item.get("majorDimension")) for item in body.get("data") or []]
        include = bool(body.get("includeValuesInResponse"))
        render = (body.get("responseValueRenderOption") or "FORMATTED_VALUE",
                  body.get("responseDateTimeRenderOption") or "SERIAL_NUMBER")
        responses = []
        rows_seen: set[tuple[int, int]] = set()
        cols_seen: set[tuple[int, int]] = set()
        sheets_seen: set[int] = set()
        total_cells = 0
        for rng, rows, box in plans:
            count = self._write(rng.sheet, box[0], box[2], rows, user_entered)
            responses.append(self._update_response(ss, rng, rows, box, count, include, render))
            if rows:
                sheet_id = rng.sheet.sheet_id
                sheets_seen.add(sheet_id)
                rows_seen.update((sheet_id, r) for r in range(box[0], box[1]))
                cols_seen.update((sheet_id, c) for c in range(box[2], box[3]))
                total_cells += count
        out: dict[str, Any] = {"spreadsheetId": sid}
        if total_cells:
            out.update(totalUpdatedRows=len(rows_seen), totalUpdatedColumns=len(cols_seen),
                       totalUpdatedCells=total_cells, totalUpdatedSheets=len(sheets_seen))
        if responses:
            out["responses"] = responses
        return out

    def _handle_values_append(self, sid: str, range_text: str, request: RecordedRequest,
                             body: Mapping[str, Any]) -> dict[str, Any]:
        ss = self._lookup(sid)
        user_entered = self._input_option(request.param("valueInputOption"))
        insert_rows = request.param("insertDataOption") == "INSERT_ROWS"
        rng = self._range(ss, range_text)
        self._check_start(rng)
        sheet = rng.sheet
        rows = _to_rows(body.get("values"), body.get("majorDimension"))
        height = len(rows)
        width = max((len(r) for r in rows), default=0)
        table = self._find_table(sheet, rng.box())
        if table is None:
            row0, col0 = rng.bounds.sr, rng.bounds.sc
        else:
            row0, col0 = table[1], table[2]
        if insert_rows and height:
            sheet.cells = {
                ((r + height) if r >= row0 else r, c): cell for (r, c), cell in sheet.cells.items()
            }
            sheet.props["gridProperties"]["rowCount"] = sheet.rows + height
        if row0 + height > sheet.rows or col0 + width > sheet.cols:
            sheet.resize(max(sheet.rows, row0 + height), max(sheet.cols, col0 + width))
        count = self._write(sheet, row0, col0, rows, user_entered)
        box = (row0, row0 + max(height, 1), col0, col0 + max(width, 1))
        render = (request.param("responseValueRenderOption") or "FORMATTED_VALUE",
                  request.param("responseDateTimeRenderOption") or "SERIAL_NUMBER")
        updates = self._update_response(ss, rng, rows, box, count,
                                        _bool_param(request, "includeValuesInResponse"), render)
        out: dict[str, Any] = {"spreadsheetId": sid}
        if table is not None:
            out["tableRange"] = _a1(sheet.title, *table)
        out["updates"] = updates
        return out

    @staticmethod
    def _find_table(sheet: _Sheet,
                    box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """The "table" values.append appends to: blocks of non-empty cells connected
        horizontally or vertically that touch the input range; of several, the one
        ending lowest (then rightmost). This reproduces the recorded case where, after
        ``["x", "", "z"]`` in row 1, the next append went below ``C1``."""
        sr, er, sc, ec = box
        filled = {key for key, cell in sheet.cells.items() if not cell.empty}
        seeds = sorted(k for k in filled if sr <= k[0] < er and sc <= k[1] < ec)
        seen: set[tuple[int, int]] = set()
        best: tuple[int, int, int, int] | None = None
        for seed in seeds:
            if seed in seen:
                continue
            stack, rows, cols = [seed], [], []
            seen.add(seed)
            while stack:
                r, c = stack.pop()
                rows.append(r)
                cols.append(c)
                for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if nxt in filled and nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            found = (min(rows), max(rows) + 1, min(cols), max(cols) + 1)
            if best is None or (found[1], found[3]) > (best[1], best[3]):
                best = found
        return best

    def _handle_values_clear(self, sid: str, range_text: str) -> dict[str, Any]:
        ss = self._lookup(sid)
        rng = self._range(ss, range_text)
        return {"spreadsheetId": sid, "clearedRange": self._clear(rng)}

    def _handle_values_batch_clear(self, sid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ss = self._lookup(sid)
        ranges = [self._range(ss, text) for text in body.get("ranges") or []]
        for rng in ranges:
            self._check_start(rng)
        out: dict[str, Any] = {"spreadsheetId": sid}
        if ranges:
            out["clearedRanges"] = [self._clear(rng) for rng in ranges]
        return out

    def _clear(self, rng: _Range) -> str:
        self._check_start(rng)
        sr, er, sc, ec = rng.box()
        for key in [k for k in rng.sheet.cells if sr <= k[0] < er and sc <= k[1] < ec]:
            cell = rng.sheet.cells[key]
            cell.clear_value()
            if not cell.fmt and cell.note is None:
                del rng.sheet.cells[key]
        return _a1(rng.sheet.title, sr, er, sc, ec)

    # -- spreadsheets.get / create --------------------------------------------------------
    def _handle_get(self, sid: str, request: RecordedRequest) -> dict[str, Any]:
        ss = self._lookup(sid)
        ranges = [self._range(ss, text) for text in request.query.get("ranges", [])]
        return self._spreadsheet_json(ss, _bool_param(request, "includeGridData"),
                                      ranges or None)

    def _handle_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        props = dict(body.get("properties") or {})
        sheets = [s.get("properties") or {} for s in body.get("sheets") or []] or [{}]
        sid = self.create_spreadsheet(props.pop("title", "Untitled spreadsheet"), sheets=())
        ss = self.spreadsheets[sid]
        ss.properties.update(props)
        try:
            for sheet_props in sheets:
                self._new_sheet(ss, sheet_props)
        except _RequestError as exc:
            del self.spreadsheets[sid]
            raise _bad_request(str(exc)) from None
        return self._spreadsheet_json(ss, False, None)

    def _spreadsheet_json(self, ss: _Spreadsheet, include_grid: bool,
                          ranges: list[_Range] | None) -> dict[str, Any]:
        sheets = []
        for sheet in ss.sheets:
            wanted = [r for r in ranges or [] if r.sheet is sheet]
            if ranges is not None and not wanted:
                continue
            sheets.append(self._sheet_json(sheet, include_grid, wanted or None))
        out: dict[str, Any] = {"spreadsheetId": ss.spreadsheet_id,
                               "properties": copy.deepcopy(ss.properties), "sheets": sheets}
        if ss.named_ranges:
            out["namedRanges"] = [_prune(copy.deepcopy(n)) for n in ss.named_ranges]
        out["spreadsheetUrl"] = f"https://docs.google.com/spreadsheets/d/{ss.spreadsheet_id}/edit"
        return out

    def _sheet_json(self, sheet: _Sheet, include_grid: bool,
                    ranges: list[_Range] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"properties": copy.deepcopy(sheet.props)}
        if include_grid:
            boxes = [r.box() for r in ranges] if ranges else [(0, sheet.rows, 0, sheet.cols)]
            out["data"] = [self._grid_data(sheet, box) for box in boxes]
        if sheet.merges:
            out["merges"] = copy.deepcopy(sheet.merges)
        if sheet.conditional_formats:
            out["conditionalFormats"] = copy.deepcopy(sheet.conditional_formats)
        if sheet.protected_ranges:
            out["protectedRanges"] = [
                {**p, "editors": p.get("editors") or {"users": [self.owner_email]}}
                for p in copy.deepcopy(sheet.protected_ranges)
            ]
        if sheet.basic_filter:
            out["basicFilter"] = copy.deepcopy(sheet.basic_filter)
        return out

    def _grid_data(self, sheet: _Sheet, box: tuple[int, int, int, int]) -> dict[str, Any]:
        sr, er, sc, ec = box
        data: dict[str, Any] = _prune({"startRow": sr, "startColumn": sc})
        rows = []
        for r in range(sr, er):
            values = []
            for c in range(sc, ec):
                cell = sheet.cells.get((r, c))
                entry: dict[str, Any] = {}
                if cell is not None and not cell.empty:
                    kind = ("boolValue" if isinstance(cell.value, bool) else
                            "numberValue" if isinstance(cell.value, int | float) else
                            "errorValue" if cell.formula and str(cell.value).startswith("#")
                            else "stringValue")
                    effective = ({"type": "ERROR", "message": cell.value}
                                 if kind == "errorValue" else cell.value)
                    entered = ({"formulaValue": cell.formula} if cell.formula else
                               {kind: cell.value})
                    entry.update(userEnteredValue=entered, effectiveValue={kind: effective},
                                 formattedValue=_formatted(cell))
                if cell is not None and cell.fmt:
                    entry["userEnteredFormat"] = copy.deepcopy(cell.fmt)
                if cell is not None and cell.note:
                    entry["note"] = cell.note
                rule = sheet.validation_at(r, c)
                if rule:
                    entry["dataValidation"] = copy.deepcopy(rule)
                values.append(entry)
            while values and not values[-1]:
                values.pop()
            rows.append({"values": values} if values else {})
        while rows and not rows[-1]:
            rows.pop()
        if rows:
            data["rowData"] = rows
        return data

    # -- spreadsheets.batchUpdate ---------------------------------------------------------
    def _handle_batch_update(self, sid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ss = self._lookup(sid)
        requests_ = body.get("requests") or []
        if not requests_:
            raise _bad_request("Must specify at least one request.")
        work = copy.deepcopy(ss)
        replies = []
        for i, item in enumerate(requests_):
            kinds = [k for k, v in (item or {}).items() if v is not None]
            if len(kinds) != 1:
                raise _bad_request(f"Invalid requests[{i}]: exactly one kind of request must "
                                   f"be set, found {kinds or 'none'}.")
            kind = kinds[0]
            handler = getattr(self, f"_req_{kind}", None)
            if handler is None:
                raise GoogleApiError(501, f"The fake Sheets API does not implement "
                                          f"requests[{i}].{kind}.")
            try:
                reply = handler(work, item[kind])
            except _RequestError as exc:
                raise _bad_request(f"Invalid requests[{i}].{kind}: {exc}") from None
            replies.append(reply or {})
        self.spreadsheets[sid] = work
        out: dict[str, Any] = {"spreadsheetId": sid, "replies": replies}
        if body.get("includeSpreadsheetInResponse"):
            ranges = [self._range(work, t) for t in body.get("responseRanges") or []] or None
            out["updatedSpreadsheet"] = self._spreadsheet_json(
                work, bool(body.get("responseIncludeGridData")), ranges)
        return out

    @staticmethod
    def _box(ss: _Spreadsheet, gr: Mapping[str, Any] | None) -> tuple[_Sheet, tuple[int, ...]]:
        gr = gr or {}
        sheet = ss.sheet_by_id(int(gr.get("sheetId") or 0))
        box = (int(gr.get("startRowIndex") or 0), int(gr.get("endRowIndex") or sheet.rows),
               int(gr.get("startColumnIndex") or 0),
               int(gr.get("endColumnIndex") or sheet.cols))
        if box[1] > sheet.rows or box[3] > sheet.cols or box[0] >= box[1] or box[2] >= box[3]:
            display = _a1(sheet.title, box[0], box[1], box[2], box[3])
            raise _RequestError(f"Range ({display}) exceeds grid limits. Max rows: "
                                f"{sheet.rows}, max columns: {sheet.cols}")
        return sheet, box

    @staticmethod
    def _grid_range_json(gr: Mapping[str, Any] | None) -> dict[str, Any]:
        """GridRange as responses show it: the row/column bounds have explicit presence
        (a 0 start is kept), while a 0 sheetId is omitted like any proto3 default."""
        out = {k: int(v) for k, v in (gr or {}).items() if v is not None}
        if out.get("sheetId") == 0:
            del out["sheetId"]
        return out

    def _dimension(self, ss: _Spreadsheet, dr: Mapping[str, Any]) -> tuple[_Sheet, str, int, int]:
        sheet = ss.sheet_by_id(int(dr.get("sheetId") or 0))
        dimension = dr.get("dimension")
        if dimension not in ("ROWS", "COLUMNS"):
            raise _RequestError("dimension must be ROWS or COLUMNS")
        size = sheet.rows if dimension == "ROWS" else sheet.cols
        start = int(dr.get("startIndex") or 0)
        end = int(dr.get("endIndex") if dr.get("endIndex") is not None else size)
        if start < 0 or end <= start:
            raise _RequestError(f"Invalid dimension range [{start}, {end})")
        return sheet, dimension, start, end

    def _req_addSheet(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        props = dict(req.get("properties") or {})
        sheet = self._new_sheet(ss, props, props.get("index"))
        return {"addSheet": {"properties": copy.deepcopy(sheet.props)}}

    def _req_deleteSheet(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet = ss.sheet_by_id(int(req.get("sheetId") or 0))
        if len(ss.sheets) == 1:
            raise _RequestError("You can't remove all the sheets in a document.")
        ss.sheets.remove(sheet)
        ss.reindex()

    def _req_updateSheetProperties(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        props = req.get("properties") or {}
        mask = req.get("fields")
        if not mask:
            raise _RequestError("'fields' is required (use '*' to update every field).")
        sheet = ss.sheet_by_id(int(props.get("sheetId") or 0))
        old_title, old_index = sheet.title, sheet.props.get("index", 0)
        old_rows, old_cols = sheet.rows, sheet.cols
        updated = copy.deepcopy(sheet.props)
        _set_masked(updated, props, parse_field_mask(mask))
        updated["sheetId"] = sheet.sheet_id
        if not updated.get("title"):
            raise _RequestError("The sheet title must not be empty.")
        if updated["title"] != old_title and ss.sheet_by_title(updated["title"]) not in (
            None, sheet
        ):
            raise _RequestError(f'A sheet with the name "{updated["title"]}" already exists. '
                                "Please enter another name.")
        grid = updated.setdefault("gridProperties", {})
        grid.setdefault("rowCount", old_rows)
        grid.setdefault("columnCount", old_cols)
        if updated.get("hidden") and all(
            s is sheet or s.props.get("hidden") for s in ss.sheets
        ):
            raise _RequestError("You can't hide all the sheets in a document.")
        sheet.props = updated
        sheet.resize(sheet.rows, sheet.cols)
        new_index = int(updated.get("index") or 0)
        if new_index != old_index:
            ss.sheets.remove(sheet)
            ss.sheets.insert(min(new_index, len(ss.sheets)), sheet)
        ss.reindex()

    def _req_updateSpreadsheetProperties(self, ss: _Spreadsheet,
                                         req: Mapping[str, Any]) -> None:
        mask = req.get("fields")
        if not mask:
            raise _RequestError("'fields' is required (use '*' to update every field).")
        _set_masked(ss.properties, req.get("properties") or {}, parse_field_mask(mask))

    def _req_appendDimension(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet = ss.sheet_by_id(int(req.get("sheetId") or 0))
        length = int(req.get("length") or 0)
        if length <= 0:
            raise _RequestError("length must be greater than 0")
        if req.get("dimension") == "ROWS":
            sheet.resize(rows=sheet.rows + length)
        elif req.get("dimension") == "COLUMNS":
            sheet.resize(cols=sheet.cols + length)
        else:
            raise _RequestError("dimension must be ROWS or COLUMNS")

    def _req_insertDimension(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        dr = req.get("range") or {}
        sheet, dimension, start, end = self._dimension(ss, dr)
        size = sheet.rows if dimension == "ROWS" else sheet.cols
        if start > size:
            raise _RequestError(f"range.startIndex [{start}] is after the last "
                                f"{dimension.lower()[:-1]} in the grid [{size}]")
        n = end - start
        axis = 0 if dimension == "ROWS" else 1
        shifted = {}
        for key, cell in sheet.cells.items():
            moved = list(key)
            if key[axis] >= start:
                moved[axis] += n
            shifted[(moved[0], moved[1])] = cell
        sheet.cells = shifted
        meta = sheet.row_meta if axis == 0 else sheet.col_meta
        moved_meta = {(i + n if i >= start else i): m for i, m in meta.items()}
        meta.clear()
        meta.update(moved_meta)
        grid = sheet.props["gridProperties"]
        grid["rowCount" if axis == 0 else "columnCount"] = size + n

    def _req_deleteDimension(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet, dimension, start, end = self._dimension(ss, req.get("range") or {})
        size = sheet.rows if dimension == "ROWS" else sheet.cols
        end = min(end, size)
        if start == 0 and end >= size:
            raise _RequestError(f"You can't delete all the {dimension.lower()} on the sheet.")
        n = end - start
        axis = 0 if dimension == "ROWS" else 1
        kept = {}
        for key, cell in sheet.cells.items():
            if start <= key[axis] < end:
                continue
            moved = list(key)
            if key[axis] >= end:
                moved[axis] -= n
            kept[(moved[0], moved[1])] = cell
        sheet.cells = kept
        grid = sheet.props["gridProperties"]
        grid["rowCount" if axis == 0 else "columnCount"] = size - n

    def _req_updateDimensionProperties(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        mask = req.get("fields")
        if not mask:
            raise _RequestError("'fields' is required (use '*' to update every field).")
        sheet, dimension, start, end = self._dimension(ss, req.get("range") or {})
        meta = sheet.row_meta if dimension == "ROWS" else sheet.col_meta
        tree = parse_field_mask(mask)
        for index in range(start, end):
            entry = meta.setdefault(index, {})
            _set_masked(entry, req.get("properties") or {}, tree)
            if not entry:
                del meta[index]

    def _req_autoResizeDimensions(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        self._dimension(ss, req.get("dimensions") or {})

    def _req_setBasicFilter(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        spec = dict(req.get("filter") or {})
        sheet, box = self._box(ss, spec.get("range"))
        spec["range"] = self._grid_range_json({
            "sheetId": sheet.sheet_id, "startRowIndex": box[0], "endRowIndex": box[1],
            "startColumnIndex": box[2], "endColumnIndex": box[3]})
        sheet.basic_filter = _prune(spec)

    def _req_clearBasicFilter(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        ss.sheet_by_id(int(req.get("sheetId") or 0)).basic_filter = None

    def _req_setDataValidation(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet, box = self._box(ss, req.get("range"))
        rule = req.get("rule")
        sheet.validations.append(((box[0], box[1], box[2], box[3]),
                                  _prune(copy.deepcopy(rule)) if rule else None))

    def _req_addChart(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        """An embedded chart: its source ranges must be inside the grid, and it is anchored
        on the sheet it is added to (the shape itself is checked against discovery)."""
        chart = copy.deepcopy(dict(req.get("chart") or {}))
        anchor = (((chart.get("position") or {}).get("overlayPosition") or {})
                  .get("anchorCell") or {})
        sheet = ss.sheet_by_id(int(anchor.get("sheetId") or 0))
        basic = (chart.get("spec") or {}).get("basicChart") or {}
        ranges = [d["domain"] for d in basic.get("domains") or []] + [
            s["series"] for s in basic.get("series") or []]
        for source in ranges:
            for gr in (source.get("sourceRange") or {}).get("sources") or []:
                self._box(ss, gr)
        taken = {c["chartId"] for s in ss.sheets for c in s.charts}
        chart.setdefault("chartId", max(taken, default=0) + 1)
        if chart["chartId"] in taken:
            raise _RequestError(f"chartId {chart['chartId']} is already in use")
        sheet.charts.append(chart)
        return {"addChart": {"chart": copy.deepcopy(chart)}}

    def _req_addProtectedRange(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        spec = dict(req.get("protectedRange") or {})
        sheet, _ = self._box(ss, spec.get("range"))
        range_json = self._grid_range_json(spec.get("range"))
        if spec.get("warningOnly") and (spec.get("editors") or {}).get("users"):
            raise _RequestError("You cannot set editors on a warning-only protected range.")
        protected = {"protectedRangeId": self._rng.randrange(1, 2**31 - 1), "range": range_json}
        if spec.get("description"):
            protected["description"] = spec["description"]
        if spec.get("warningOnly"):
            protected["warningOnly"] = True
        protected["requestingUserCanEdit"] = True
        editors = _prune(spec.get("editors") or {})
        protected["editors"] = editors
        sheet.protected_ranges.append(protected)
        return {"addProtectedRange": {"protectedRange": copy.deepcopy(protected)}}

    def _req_deleteProtectedRange(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        target = int(req.get("protectedRangeId") or 0)
        for sheet in ss.sheets:
            for protected in sheet.protected_ranges:
                if protected["protectedRangeId"] == target:
                    sheet.protected_ranges.remove(protected)
                    return
        raise _RequestError(f"No protected range with id: {target}")

    def _req_addConditionalFormatRule(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        rule = copy.deepcopy(dict(req.get("rule") or {}))
        ranges = rule.get("ranges") or []
        if not ranges:
            raise _RequestError("A conditional format rule needs at least one range.")
        sheet, _ = self._box(ss, ranges[0])
        rule["ranges"] = [self._grid_range_json(r) for r in ranges]
        index = int(req.get("index") or 0)
        sheet.conditional_formats.insert(min(index, len(sheet.conditional_formats)), _prune(rule))

    def _apply_cell_data(self, sheet: _Sheet, key: tuple[int, int], data: Mapping[str, Any],
                         tree: FieldTree) -> None:
        """Apply one CellData under a ``fields`` mask (``"*"`` = every field)."""
        cell = sheet.cells.get(key) or _Cell()
        star = "*" in tree
        if star or "userEnteredValue" in tree:
            entered = data.get("userEnteredValue") or {}
            if entered.get("formulaValue"):
                new = _entered_cell(entered["formulaValue"], True)
            else:
                raw = next((v for v in entered.values() if v is not None), None)
                new = _entered_cell(raw, False) if raw not in (None, "") else _Cell()
            cell.value, cell.formula, cell.text, cell.is_date = (
                new.value, new.formula, new.text, new.is_date)
        if star or "userEnteredFormat" in tree:
            source = data.get("userEnteredFormat") or {}
            sub = {} if star else tree["userEnteredFormat"]
            if sub:
                _set_masked(cell.fmt, source, sub)
            else:
                cell.fmt = _prune(copy.deepcopy(dict(source)))
        if star or "note" in tree:
            cell.note = data.get("note") or None
        if star or "dataValidation" in tree:
            rule = data.get("dataValidation")
            sheet.validations.append(((key[0], key[0] + 1, key[1], key[1] + 1),
                                      _prune(copy.deepcopy(rule)) if rule else None))
        if cell.empty and not cell.fmt and cell.note is None:
            sheet.cells.pop(key, None)
        else:
            sheet.cells[key] = cell

    def _req_repeatCell(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet, (sr, er, sc, ec) = self._box(ss, req.get("range"))
        mask = req.get("fields")
        if not mask:
            raise _RequestError("'fields' is required (use '*' to update every field).")
        tree = parse_field_mask(mask)
        data = req.get("cell") or {}
        for r in range(sr, er):
            for c in range(sc, ec):
                self._apply_cell_data(sheet, (r, c), data, tree)

    def _req_updateCells(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        mask = req.get("fields")
        if not mask:
            raise _RequestError("'fields' is required (use '*' to update every field).")
        tree = parse_field_mask(mask)
        if req.get("start") is not None:
            start = req["start"]
            sheet = ss.sheet_by_id(int(start.get("sheetId") or 0))
            r0, c0 = int(start.get("rowIndex") or 0), int(start.get("columnIndex") or 0)
            er, ec = sheet.rows, sheet.cols
        else:
            sheet, (r0, er, c0, ec) = self._box(ss, req.get("range"))
        for i, row in enumerate(req.get("rows") or []):
            for j, data in enumerate((row or {}).get("values") or []):
                if r0 + i >= er or c0 + j >= ec:
                    raise _RequestError("The rows extend beyond the range or the grid.")
                self._apply_cell_data(sheet, (r0 + i, c0 + j), data or {}, tree)

    def _req_mergeCells(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet, (sr, er, sc, ec) = self._box(ss, req.get("range"))
        kind = req.get("mergeType") or "MERGE_ALL"
        if kind == "MERGE_ROWS":
            boxes = [(r, r + 1, sc, ec) for r in range(sr, er)]
        elif kind == "MERGE_COLUMNS":
            boxes = [(sr, er, c, c + 1) for c in range(sc, ec)]
        else:
            boxes = [(sr, er, sc, ec)]
        for r0, r1, c0, c1 in boxes:
            sheet.merges.append(self._grid_range_json({
                "sheetId": sheet.sheet_id, "startRowIndex": r0, "endRowIndex": r1,
                "startColumnIndex": c0, "endColumnIndex": c1}))

    def _req_unmergeCells(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        sheet, (sr, er, sc, ec) = self._box(ss, req.get("range"))
        sheet.merges = [
            m for m in sheet.merges
            if not (sr <= m.get("startRowIndex", 0) and m.get("endRowIndex", 0) <= er
                    and sc <= m.get("startColumnIndex", 0) and m.get("endColumnIndex", 0) <= ec)
        ]

    def _req_addNamedRange(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> dict[str, Any]:
        spec = dict(req.get("namedRange") or {})
        self._box(ss, spec.get("range"))
        if any(n["name"] == spec.get("name") for n in ss.named_ranges):
            raise _RequestError(f"A named range with the name {spec.get('name')} already "
                                "exists.")
        named = {"namedRangeId": str(self._rng.randrange(10**8, 2**31 - 1)),
                 "name": spec.get("name"), "range": self._grid_range_json(spec.get("range"))}
        ss.named_ranges.append(named)
        return {"addNamedRange": {"namedRange": copy.deepcopy(named)}}

    def _req_updateNamedRange(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        spec = req.get("namedRange") or {}
        for named in ss.named_ranges:
            if named["namedRangeId"] == spec.get("namedRangeId"):
                _set_masked(named, spec, parse_field_mask(req.get("fields") or "*"))
                named["range"] = self._grid_range_json(named.get("range"))
                return
        raise _RequestError(f"No named range with id: {spec.get('namedRangeId')}")

    def _req_deleteNamedRange(self, ss: _Spreadsheet, req: Mapping[str, Any]) -> None:
        before = len(ss.named_ranges)
        ss.named_ranges = [n for n in ss.named_ranges
                           if n["namedRangeId"] != req.get("namedRangeId")]
        if len(ss.named_ranges) == before:
            raise _RequestError(f"No named range with id: {req.get('namedRangeId')}")


# ---------------------------------------------------------------------------------------
# Gmail
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMessage:
    """One message accepted by ``users.messages.send``."""

    id: str
    thread_id: str
    user_id: str
    label_ids: tuple[str, ...]
    message: EmailMessage
    raw: bytes


class GmailFake:
    """State and handler of the fake Gmail API (``server.gmail``).

    ``sent`` holds the parsed :class:`email.message.EmailMessage` objects (policy
    ``email.policy.default``); ``messages`` the full :class:`SentMessage` records. Set
    ``insufficient_scope = True`` to answer 403 as for a token without a send scope.
    """

    SEND_SCOPES = frozenset({
        "https://mail.google.com/", "https://www.googleapis.com/auth/gmail.send",
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/gmail.modify",
        "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
    })

    def __init__(self, server: GoogleFakeServer, rng: random.Random,
                 user_email: str = "sender@example.com") -> None:
        self._server = server
        self._rng = rng
        self.user_email = user_email
        self.insufficient_scope = False
        self.sent: list[EmailMessage] = []
        self.messages: list[SentMessage] = []
        self._next_id = 0x18F3A2B4C5D60000 + rng.randrange(0x10000)

    def clear(self) -> None:
        with self._server.lock:
            self.sent.clear()
            self.messages.clear()

    def _handle_send(self, user_id: str, request: RecordedRequest,
                    result: ValidationResult) -> dict[str, Any]:
        if self.insufficient_scope:
            raise _insufficient_scope("gmail", sorted(self.SEND_SCOPES))
        thread_hint = None
        if result.is_upload:
            raw, thread_hint = self._upload_payload(request)
        else:
            body = result.body or {}
            encoded = body.get("raw") if isinstance(body, dict) else None
            thread_hint = body.get("threadId") if isinstance(body, dict) else None
            if not encoded:
                raise GoogleApiError(400, "'raw' RFC822 payload message string or uploading "
                                          "message via /upload/* URL required")
            try:
                raw = base64.urlsafe_b64decode(encoded.encode() + b"=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                raise GoogleApiError(400, "Invalid value for ByteString: " + encoded[:40]) \
                    from None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        recipients = []
        for header in ("To", "Cc", "Bcc"):
            values = message.get_all(header) or []
            for value in values:
                if not str(value).strip():
                    continue
                addresses = email.utils.getaddresses([str(value)])
                if any(not addr or "@" not in addr for _, addr in addresses):
                    raise GoogleApiError(400, f"Invalid {header} header")
                recipients.extend(addr for _, addr in addresses)
        if not recipients:
            raise GoogleApiError(400, "Recipient address required")
        self._next_id += self._rng.randrange(0x100, 0x10000)
        message_id = f"{self._next_id:x}"
        known_threads = {m.thread_id for m in self.messages}
        thread_id = thread_hint if thread_hint in known_threads else message_id
        own = {self.user_email.lower()}
        labels = ("UNREAD", "SENT", "INBOX") if any(r.lower() in own for r in recipients) \
            else ("SENT",)
        record = SentMessage(message_id, thread_id, user_id, labels, message, raw)
        self.messages.append(record)
        self.sent.append(message)
        return {"id": message_id, "threadId": thread_id, "labelIds": list(labels)}

    @staticmethod
    def _upload_payload(request: RecordedRequest) -> tuple[bytes, str | None]:
        upload_type = request.param("uploadType")
        content_type = request.header("Content-Type") or ""
        if upload_type == "media":
            return request.body, None
        if upload_type == "multipart" and content_type.startswith("multipart/"):
            envelope = email.message_from_bytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body,
                policy=email.policy.default,
            )
            parts = list(envelope.iter_parts()) if isinstance(envelope, EmailMessage) else []
            if len(parts) == 2:
                metadata = json.loads(parts[0].get_payload(decode=True) or b"{}")
                payload = parts[1].get_payload(decode=True)
                if payload is None:
                    inner = parts[1].get_payload()
                    payload = inner[0].as_bytes() if isinstance(inner, list) else b""
                return payload, metadata.get("threadId")
        raise GoogleApiError(501, f"The fake Gmail API does not support uploadType={upload_type}.")


def _insufficient_scope(api: str, scopes: Sequence[str]) -> GoogleApiError:
    errors = None
    if api == "gmail":
        errors = [{"message": "Insufficient Permission", "domain": "global",
                   "reason": "insufficientPermissions"}]
    return GoogleApiError(
        403, "Request had insufficient authentication scopes.", errors=errors,
        details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                  "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com",
                  "metadata": {"service": _SERVICES.get(api, api)}}],
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                 f'error="insufficient_scope", scope="{" ".join(scopes)}"'},
    )


# ---------------------------------------------------------------------------------------
# OAuth2 token endpoint
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """An access token handed out by the fake ``/token`` (or seeded by a test)."""

    access_token: str
    grant_type: str
    scopes: frozenset[str]
    subject: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _RefreshToken:
    client_id: str | None
    client_secret: str | None
    scopes: frozenset[str]
    revoked: bool = False


_TOKEN_ERRORS = {
    "invalid_grant": (400, "Token has been expired or revoked."),
    "invalid_client": (401, "The OAuth client was not found."),
    "unauthorized_client": (401, "Client is unauthorized to retrieve access tokens using this "
                                 "method, or client not authorized for any of the scopes "
                                 "requested."),
    "invalid_scope": (400, "Invalid OAuth scope or ID token audience provided."),
}


class TokenEndpointFake:
    """The OAuth2 token endpoint (``server.tokens``), enough for google-auth.

    Grants: ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (service accounts; the JWT is
    decoded without checking its signature), ``refresh_token`` (user credentials) and
    ``authorization_code`` (the installed-app consent; see :meth:`add_authorization_code`).
    ``issued`` lists every :class:`IssuedToken` so tests can assert least-privilege
    scopes; ``fail_next`` answers Google's flat ``{"error", "error_description"}``.
    """

    def __init__(self, server: GoogleFakeServer) -> None:
        self._server = server
        self.issued: list[IssuedToken] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, _RefreshToken] = {}
        self.codes: dict[str, _RefreshToken] = {}
        self._failures: list[tuple[str, str | None, int | None]] = []
        self._counter = 0

    def add_token(self, access_token: str, scopes: Iterable[str], *,
                  subject: str | None = None) -> IssuedToken:
        """Accept ``access_token`` for API calls without a token exchange."""
        with self._server.lock:
            token = IssuedToken(access_token, "seeded", frozenset(scopes), subject)
            self.tokens[access_token] = token
            return token

    def register_refresh_token(self, refresh_token: str, *, scopes: Iterable[str] = (),
                               client_id: str | None = None,
                               client_secret: str | None = None) -> None:
        """Once any refresh token is registered, unknown ones get 400 invalid_grant."""
        with self._server.lock:
            self.refresh_tokens[refresh_token] = _RefreshToken(
                client_id, client_secret, frozenset(scopes))

    def add_authorization_code(self, code: str, *, scopes: Iterable[str],
                               client_id: str | None = None,
                               client_secret: str | None = None) -> None:
        """Accept ``code`` once in an ``authorization_code`` grant (what the consent page
        hands the installed-app redirect); the answer carries a new refresh token,
        registered with the same client and scopes."""
        with self._server.lock:
            self.codes[code] = _RefreshToken(client_id, client_secret, frozenset(scopes))

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._server.lock:
            self.refresh_tokens[refresh_token].revoked = True

    def fail_next(self, n: int = 1, error: str = "invalid_grant",
                  description: str | None = None, status: int | None = None) -> None:
        """The next ``n`` token requests fail with ``error`` (400 invalid_grant,
        401 invalid_client, 401 unauthorized_client, ... as Google words them)."""
        with self._server.lock:
            self._failures.extend([(error, description, status)] * n)

    def scopes_issued(self) -> set[str]:
        with self._server.lock:
            return {scope for token in self.issued for scope in token.scopes}

    @staticmethod
    def _error(error: str, description: str | None = None,
               status: int | None = None) -> FakeResponse:
        default_status, default_description = _TOKEN_ERRORS.get(error, (400, "Bad Request"))
        return json_response(
            status or default_status,
            {"error": error, "error_description": description or default_description},
            content_type=TOKEN_CONTENT_TYPE,
        )

    def _issue(self, grant_type: str, scopes: Iterable[str], **extra: Any) -> IssuedToken:
        self._counter += 1
        digest = hashlib.sha256(f"{self._counter}:{grant_type}".encode()).hexdigest()[:40]
        token = IssuedToken(f"ya29.fake-{self._counter}-{digest}", grant_type,
                            frozenset(scopes), **extra)
        self.issued.append(token)
        self.tokens[token.access_token] = token
        return token

    def _handle(self, request: RecordedRequest) -> FakeResponse:
        if request.method != "POST":
            return self._error("invalid_request", "Token requests must use POST.", 405)
        if self._failures:
            return self._error(*self._failures.pop(0))
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8"),
                                               keep_blank_values=True).items()}
        grant_type = form.get("grant_type", "")
        if grant_type == JWT_BEARER:
            return self._jwt_grant(form)
        if grant_type == "refresh_token":
            return self._refresh_grant(form)
        if grant_type == "authorization_code":
            return self._code_grant(form, request.header("Authorization"))
        if not grant_type:
            return self._error("unsupported_grant_type", "Invalid grant_type: ")
        return self._error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _jwt_grant(self, form: Mapping[str, str]) -> FakeResponse:
        assertion = form.get("assertion")
        if not assertion:
            return self._error("invalid_request", "Missing required parameter: assertion")
        try:
            payload_b64 = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64)
                                                                               % 4)))
        except (IndexError, ValueError, binascii.Error):
            return self._error("invalid_grant", "Invalid JWT Signature.")
        scopes = str(claims.get("scope") or "").split()
        if not scopes:
            return self._error("invalid_scope")
        token = self._issue(JWT_BEARER, scopes, subject=claims.get("sub"),
                            issuer=claims.get("iss"), claims=claims)
        return json_response(200, {"access_token": token.access_token, "expires_in": 3599,
                                   "token_type": "Bearer"}, content_type=TOKEN_CONTENT_TYPE)

    def _code_grant(self, form: Mapping[str, str], authorization: str | None) -> FakeResponse:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            # RFC 6749 2.3.1: the client may authenticate with HTTP Basic instead
            # (requests-oauthlib does); Google accepts both.
            decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            client_id, _, client_secret = decoded.partition(":")
        known = self.codes.pop(form.get("code") or "", None)  # a code works once
        if known is None:
            return self._error("invalid_grant", "Malformed auth code.")
        if known.client_id and client_id != known.client_id:
            return self._error("invalid_client")
        if known.client_secret and client_secret != known.client_secret:
            return self._error("invalid_client", "Unauthorized")
        if not form.get("redirect_uri"):
            return self._error("invalid_request", "Missing parameter: redirect_uri")
        token = self._issue("authorization_code", known.scopes, client_id=known.client_id)
        refresh_token = f"1//fake-refresh-{self._counter}"
        self.refresh_tokens[refresh_token] = _RefreshToken(
            known.client_id, known.client_secret, known.scopes)
        return json_response(200, {"access_token": token.access_token, "expires_in": 3599,
                                   "refresh_token": refresh_token,
                                   "scope": " ".join(sorted(known.scopes)),
                                   "token_type": "Bearer"}, content_type=TOKEN_CONTENT_TYPE)

    def _refresh_grant(self, form: Mapping[str, str]) -> FakeResponse:
        refresh_token = form.get("refresh_token")
        client_id = form.get("client_id")
        if not refresh_token:
            return self._error("invalid_request", "Missing required parameter: refresh_token")
        requested = set((form.get("scope") or "").split())
        known = self.refresh_tokens.get(refresh_token)
        if self.refresh_tokens and known is None:
            return self._error("invalid_grant")
        if known is not None:
            if known.client_id and client_id != known.client_id:
                return self._error("invalid_client")
            if known.client_secret and form.get("client_secret") != known.client_secret:
                return self._error("invalid_client", "Unauthorized")
            if known.revoked:
                return self._error("invalid_grant")
            if known.scopes and requested - known.scopes:
                return self._error("invalid_scope", "Bad Request")
            granted = requested or set(known.scopes)
        else:
            granted = requested
        token = self._issue("refresh_token", granted, client_id=client_id)
        body = {"access_token": token.access_token, "expires_in": 3599,
                "token_type": "Bearer"}
        if granted:
            body["scope"] = " ".join(sorted(granted))
        return json_response(200, body, content_type=TOKEN_CONTENT_TYPE)


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViolationRecord:
    """A request the real API would have rejected, and why."""

    method: str
    path: str
    method_id: str | None
    violations: tuple[Violation, ...]

    def __str__(self) -> str:
        problems = "; ".join(str(v) for v in self.violations)
        return f"{self.method} {self.path} ({self.method_id or 'no method'}): {problems}"


@dataclass(frozen=True)
class AuthUse:
    """An authenticated API call: which method, with which token and scopes."""

    method_id: str
    access_token: str
    scopes: frozenset[str]


def _api_from_path(path: str) -> str:
    if path.startswith("/v1/forms"):
        return "forms"
    if path.startswith("/v4/spreadsheets"):
        return "sheets"
    if "/gmail/" in path:
        return "gmail"
    return "unknown"


class GoogleFakeServer(FakeHTTPServer):
    """Forms, Sheets, Gmail and the token endpoint on one local server.

    Args:
        filter_on: which FormResponse timestamp ``responses.list`` filters compare with
            (``"lastSubmittedTime"`` or ``"createTime"``; the API does not document it).
        require_auth: API calls need ``Authorization: Bearer <token>`` from ``/token`` (or
            :meth:`TokenEndpointFake.add_token`); otherwise 401, and 403 when the token's
            scopes do not include one the method's discovery entry lists.
        seed: seeds ids, response order and random faults (deterministic runs).
        owner_email: the account shown as editor of protected ranges.
        gmail_user: the address ``userId="me"`` stands for.

    Attributes: ``forms``, ``sheets``, ``gmail``, ``tokens`` (the fakes), ``violations``
    (:class:`ViolationRecord` list; tests assert it stays empty), ``auth_log``
    (:class:`AuthUse` list), plus ``requests``, ``counters`` and ``faults`` from
    :class:`~tests.fakes.http.FakeHTTPServer`. Project number in quota errors:
    ``project_number``.
    """

    def __init__(
        self,
        *,
        filter_on: str = "lastSubmittedTime",
        require_auth: bool = False,
        seed: int = 0,
        owner_email: str = "owner@example.com",
        gmail_user: str = "sender@example.com",
        project_number: str = "123456789012",
    ) -> None:
        super().__init__(seed=seed)
        self.require_auth = require_auth
        self.project_number = project_number
        self.validator = DiscoveryValidator()
        self.violations: list[ViolationRecord] = []
        self.auth_log: list[AuthUse] = []
        rng = random.Random(seed)
        self.forms = FormsFake(self, random.Random(rng.random()), filter_on)
        self.sheets = SheetsFake(self, random.Random(rng.random()), owner_email)
        self.gmail = GmailFake(self, random.Random(rng.random()), gmail_user)
        self.tokens = TokenEndpointFake(self)
        self.faults.exempt = lambda method_id, path: method_id == "oauth2.token"

    # -- classification -------------------------------------------------------------------
    def classify(self, request: RecordedRequest) -> Classification:
        if request.path in TOKEN_PATHS:
            return Classification("oauth2.token", "oauth2")
        result = self.validator.validate(request.method, request.path, request.query,
                                         request.body, request.header("Content-Type"))
        if result.violations:
            self.violations.append(ViolationRecord(request.method, request.path,
                                                   result.method_id, tuple(result.violations)))
        api = result.method.api if result.method else _api_from_path(request.path)
        return Classification(result.method_id or "unknown", api, result)

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, request: RecordedRequest, classification: Classification) -> FakeResponse:
        if classification.method_id == "oauth2.token":
            return self.tokens._handle(request)
        result: ValidationResult = classification.info
        api = classification.api
        pretty = (request.param("prettyPrint") or "true").lower() != "false"
        try:
            token = self._authenticate(request, api)
            if result.violations:
                raise self._violation_error(result.violations)
            assert result.method is not None
            self._authorize(token, result.method)
            payload = self._dispatch(classification.method_id, request, result)
        except GoogleApiError as err:
            return err.response(api, pretty=pretty)
        fields = request.param("fields")
        if fields:
            payload = apply_field_mask(payload, parse_field_mask(fields))
        return json_response(200, payload, pretty=pretty)

    def _dispatch(self, method_id: str, request: RecordedRequest,
                  result: ValidationResult) -> dict[str, Any]:
        p = result.path_params
        body = result.body if isinstance(result.body, dict) else {}
        sheets, forms = self.sheets, self.forms
        routes: dict[str, Callable[[], dict[str, Any]]] = {
            "forms.forms.get": lambda: forms._handle_get(p["formId"]),
            "forms.forms.create": lambda: forms._handle_create(body),
            "forms.forms.batchUpdate": lambda: forms._handle_batch_update(p["formId"], body),
            "forms.forms.responses.list": lambda: forms._handle_list(p["formId"], request),
            "forms.forms.responses.get": lambda: forms._handle_response_get(
                p["formId"], p["responseId"]),
            "sheets.spreadsheets.get": lambda: sheets._handle_get(p["spreadsheetId"], request),
            "sheets.spreadsheets.create": lambda: sheets._handle_create(body),
            "sheets.spreadsheets.batchUpdate": lambda: sheets._handle_batch_update(
                p["spreadsheetId"], body),
            "sheets.spreadsheets.values.get": lambda: sheets._handle_values_get(
                p["spreadsheetId"], p["range"], request),
            "sheets.spreadsheets.values.batchGet": lambda: sheets._handle_values_batch_get(
                p["spreadsheetId"], request),
            "sheets.spreadsheets.values.update": lambda: sheets._handle_values_update(
                p["spreadsheetId"], p["range"], request, body),
            "sheets.spreadsheets.values.batchUpdate": lambda: sheets._handle_values_batch_update(
                p["spreadsheetId"], body),
            "sheets.spreadsheets.values.append": lambda: sheets._handle_values_append(
                p["spreadsheetId"], p["range"], request, body),
            "sheets.spreadsheets.values.clear": lambda: sheets._handle_values_clear(
                p["spreadsheetId"], p["range"]),
            "sheets.spreadsheets.values.batchClear": lambda: sheets._handle_values_batch_clear(
                p["spreadsheetId"], body),
            "gmail.users.messages.send": lambda: self.gmail._handle_send(
                p["userId"], request, result),
        }
        route = routes.get(method_id)
        if route is None:
            raise GoogleApiError(501, f"The fake does not implement {method_id}.")
        return route()

    @staticmethod
    def _violation_error(violations: Sequence[Violation]) -> GoogleApiError:
        first = violations[0]
        pairs = [(v.field, v.message) for v in violations
                 if v.kind in ("unknown_field", "invalid_value", "unknown_parameter",
                               "invalid_parameter")]
        return _bad_request(first.message, pairs)

    # -- auth -----------------------------------------------------------------------------
    def _authenticate(self, request: RecordedRequest, api: str) -> IssuedToken | None:
        header = request.header("Authorization") or ""
        access_token = header[7:].strip() if header.lower().startswith("bearer ") else None
        access_token = access_token or request.param("access_token") or request.param(
            "oauth_token")
        token = self.tokens.tokens.get(access_token) if access_token else None
        if token is not None and access_token is not None:
            self.auth_log.append(AuthUse(request.method_id, access_token, token.scopes))
        if not self.require_auth or token is not None:
            return token
        realm = 'Bearer realm="https://accounts.google.com/"'
        if not access_token:
            errors = None
            if api == "gmail":
                errors = [{"message": "Login Required.", "domain": "global",
                           "reason": "required", "location": "Authorization",
                           "locationType": "header"}]
            raise GoogleApiError(401, _MISSING_CREDENTIALS, errors=errors, details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com",
                 "metadata": {"service": _SERVICES.get(api, api)}}],
                headers={"WWW-Authenticate": realm})
        errors = None
        if api == "gmail":
            errors = [{"message": "Invalid Credentials", "domain": "global",
                       "reason": "authError", "location": "Authorization",
                       "locationType": "header"}]
        raise GoogleApiError(401, errors=errors, details=[
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
             "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com",
             "metadata": {"service": _SERVICES.get(api, api)}}],
            headers={"WWW-Authenticate": realm + ', error="invalid_token"'})

    def _authorize(self, token: IssuedToken | None, method: MethodSpec) -> None:
        if not self.require_auth or token is None:
            return
        if not token.scopes & set(method.scopes):
            raise _insufficient_scope(method.api, method.scopes)

    # -- faults ---------------------------------------------------------------------------
    def fault_response(self, request: RecordedRequest, classification: Classification,
                       decision: FaultDecision) -> FakeResponse:
        status = decision.status
        assert status is not None
        headers = {} if decision.retry_after is None else {
            "Retry-After": str(decision.retry_after)}
        api = classification.api
        if api == "oauth2":
            error = "rate_limit_exceeded" if status == 429 else "internal_failure"
            return json_response(status, {"error": error, "error_description":
                                          _DEFAULT_MESSAGES.get(status, "Error")},
                                 headers=headers, content_type=TOKEN_CONTENT_TYPE)
        err = GoogleApiError(status, headers=headers)
        if status == 429:
            err = self._quota_error(api, request.method, headers)
        return err.response(api)

    def _quota_error(self, api: str, http_method: str,
                     headers: Mapping[str, str]) -> GoogleApiError:
        """429 bodies as recorded since 2021 (ErrorInfo with quota metric and limit)."""
        if api == "gmail":
            message = "User-rate limit exceeded.  Retry after 2025-01-01T00:00:30.000Z"
            return GoogleApiError(429, message, headers=headers, errors=[
                {"message": message, "domain": "usageLimits", "reason": "rateLimitExceeded"}])
        service = _SERVICES.get(api, f"{api}.googleapis.com")
        kind = "Read" if http_method == "GET" else "Write"
        message = (f"Quota exceeded for quota metric '{kind} requests' and limit "
                   f"'{kind} requests per minute per user' of service '{service}' for consumer "
                   f"'project_number:{self.project_number}'.")
        return GoogleApiError(429, message, headers=headers, details=[{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
            "metadata": {"consumer": f"projects/{self.project_number}",
                         "quota_limit": f"{kind}RequestsPerMinutePerUser",
                         "quota_metric": f"{service}/{kind.lower()}_requests",
                         "service": service},
        }])

    # -- helpers --------------------------------------------------------------------------
    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every recorded violation."""
        with self.lock:
            if self.violations:
                raise AssertionError("requests the real API would reject:\n" +
                                     "\n".join(str(v) for v in self.violations))


class _RewriteAdapter(HTTPAdapter):
    def __init__(self, source: str, target: str) -> None:
        super().__init__()
        self.source = source
        self.target = target

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        assert request.url is not None
        request.url = request.url.replace(self.source, self.target, 1)
        return super().send(request, *args, **kwargs)


def rewrite_adapter(source: str, target: str) -> HTTPAdapter:
    """A requests adapter that sends ``source``-prefixed URLs to ``target`` instead, so a
    client keeps the real host in its code (``session.mount(source, adapter)``)."""
    return _RewriteAdapter(source, target)

