"""Dates and times as people type them into forms and as exports write them.

One rule: a value can mark its row, never stop the run. Every reader returns a `Read`:
the time (aware, UTC) or None with the reason it could not be read, plus a note when it was
read with a caveat (a wall-clock time inside a clock change). Nothing here raises on input.

- Wall-clock times are in the deployment's zone. In the hour repeated when the clocks go
  back, the first occurrence is taken; a time inside the hour skipped when they go forward
  is read with the offset before the change (01:30 becomes 02:30 summer time), as a clock
  not yet changed would have shown it. Both are noted. An offset or a zone abbreviation
  typed with the time (`GMT`, `BST`, `UTC`, `+01:00`, `GMT+1`) is honoured.
- Day order is a property of a column, decided from its values (`day_order`): a first part
  over 12 proves day-first, a second part over 12 proves month-first, a year-first value
  (ISO) is never day-first; `dayfirst` only breaks a tie. A column is never read in mixed
  orders; one whose values prove both orders is named, and its ambiguous values are marked.
- Relative words (`now`, `today`) are refused: they would become the machine's clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd

Order = Literal["day-first", "month-first"]

EARLIEST_YEAR, LATEST_YEAR = 1900, 2100  # outside: a typo, and beyond pandas' range at 2262

# Zone abbreviations seen in exports and typed answers; others are refused, not guessed.
ZONES = {"Z": 0, "UTC": 0, "GMT": 0, "WET": 0, "BST": 60, "IST": 60, "WEST": 60, "CET": 60,
         "CEST": 120, "EET": 120, "EEST": 180, "EST": -300, "EDT": -240, "CST": -360,
         "CDT": -300, "MST": -420, "MDT": -360, "PST": -480, "PDT": -420}
MONTHS = {m: i for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")], start=1) for m in names}
RELATIVE = {"now", "today", "tonight", "yesterday", "tomorrow", "just now", "this morning",
            "this evening", "this afternoon", "last night"}

# Invisible characters and odd spaces that copy-paste and phone keyboards bring in.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[\s\u00a0\u2000-\u200a\u202f\u205f\u3000]+")

_TIME = (r"(?P<H>\d{1,2})(?:[:.](?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d{1,9}))?)?)?"
         r"\s?(?P<ampm>[ap]\.?\s?m\.?)?")
_ZONE = (r"(?:\s?\(?(?P<zone>[A-Z]{1,4})?"
         r"(?:\s?(?P<sign>[+-])(?P<oh>\d{1,2})(?::?(?P<om>\d{2}))?)?\)?)?")
_DATE_TIME = re.compile(
    r"^(?:[a-z]{3,9}\.?,?\s)?"  # a weekday name
    r"(?:(?P<y1>\d{4})[-/.](?P<m1>\d{1,2})[-/.](?P<d1>\d{1,2})"
    r"|(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y2>\d{4}|\d{2})"
    r"|(?P<d3>\d{1,2})(?:st|nd|rd|th)?[\s-](?P<mon3>[a-z]{3,9})\.?,?[\s-](?P<y3>\d{4})"
    r"|(?P<mon4>[a-z]{3,9})\.?\s(?P<d4>\d{1,2})(?:st|nd|rd|th)?,?\s(?P<y4>\d{4}))"
    rf"(?:(?:\s?[t,]\s?|\s|\sat\s)(?:{_TIME}))?{_ZONE}$",
    re.IGNORECASE)
_TIME_OF_DAY = re.compile(rf"^{_TIME}{_ZONE}$", re.IGNORECASE)
_SLASH_DATE = re.compile(
    r"^\s*(?:[a-z]{3,9}\.?,?\s*)?(\d{1,2})[-/.](\d{1,2})[-/.](?:\d{4}|\d{2})\b", re.IGNORECASE)


@dataclass(frozen=True)
class Read:
    """One value read: `value` (aware UTC) or None with `problem`; `note` when read with a
    caveat worth showing on the report."""

    value: pd.Timestamp | None
    problem: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ColumnRead:
    """A column of values read in one day order."""

    values: list[Read]
    order: Order
    # why the column's values prove both orders, naming one of each; None when they agree
    contradiction: str | None = None
    proofs: tuple[str | None, str | None] = (None, None)  # `order_proofs`


def clean(text: str) -> str:
    """Invisible characters dropped, runs of any kind of space made one space, stripped."""
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


# The first value of a column proving it day-first, and the first proving it month-first.
Proofs = tuple[str | None, str | None]
NO_PROOF: Proofs = (None, None)


def order_proofs(texts: Sequence[str | None], prior: Proofs = NO_PROOF) -> Proofs:
    """The first value proving each day order, after those `prior` (earlier values of the
    same column) already found: a column read in parts finds what a whole read would."""
    day_proof, month_proof = prior
    for text in texts:
        if day_proof and month_proof:
            break
        if not isinstance(text, str):
            continue
        m = _SLASH_DATE.match(text)
        if not m:
            continue
        first, second = int(m.group(1)), int(m.group(2))
        if first > 12 >= second and day_proof is None:
            day_proof = text
        elif second > 12 >= first and month_proof is None:
            month_proof = text
    return day_proof, month_proof


def decide_order(proofs: Proofs, dayfirst: bool) -> tuple[Order, str | None]:
    """A column's day order from its proofs; `dayfirst` breaks a tie. With proofs of both,
    a sentence naming one of each."""
    day_proof, month_proof = proofs
    if day_proof and month_proof:
        return ("day-first" if dayfirst else "month-first",
                f"{clean(day_proof)!r} is day-first but {clean(month_proof)!r} is "
                "month-first")
    if day_proof:
        return "day-first", None
    if month_proof:
        return "month-first", None
    return ("day-first" if dayfirst else "month-first"), None


def day_order(texts: Sequence[str | None], dayfirst: bool) -> tuple[Order, str | None]:
    """The day order of a column of dates, from its values; `dayfirst` breaks a tie.

    Returns the order and, when some values prove day-first and others month-first, a
    sentence naming one of each.
    """
    return decide_order(order_proofs(texts), dayfirst)


def read_column(texts: Sequence[str | None], tz: ZoneInfo, dayfirst: bool,
                prior: Proofs = NO_PROOF) -> ColumnRead:
    """Every value of a column read in the column's one day order. `prior`: the proofs of
    the column's earlier values, when only its newer ones are read."""
    proofs = order_proofs(texts, prior)
    order, contradiction = decide_order(proofs, dayfirst)
    return ColumnRead([read_datetime(t, tz, order, strict=contradiction is not None)
                       for t in texts], order, contradiction, proofs)


def read_datetime(text: str | None, tz: ZoneInfo, order: Order = "day-first",
                  *, strict: bool = False) -> Read:
    """A typed or exported date and time, read in `tz` unless it carries its own zone.

    `strict`: the column contradicts itself, so a value whose day order is not proven by
    the value itself is refused rather than guessed.
    """
    if text is None:
        return Read(None, "no date and time given")
    shown = clean(str(text))
    if not shown:
        return Read(None, "no date and time given")
    if shown.casefold().rstrip(".!") in RELATIVE:
        return Read(None, f"{shown!r} is not a date: the date and time are needed")
    m = _DATE_TIME.match(shown)
    if not m:
        return Read(None, f"{_short(shown)!r} is not a date and time")
    g = m.groupdict()
    if g["y1"]:
        year, month, day = int(g["y1"]), int(g["m1"]), int(g["d1"])
    elif g["y2"]:
        a, b, year = int(g["a"]), int(g["b"]), int(g["y2"])
        year += 2000 if len(g["y2"]) == 2 else 0
        if a > 12 and b > 12:
            return Read(None, f"{shown!r} is not a date: neither {a} nor {b} is a month")
        if a > 12 or b > 12:
            day, month = (a, b) if a > 12 else (b, a)
        elif strict and a != b:
            return Read(None, f"{shown!r} could be either {a} {_month_name(b)} or "
                              f"{b} {_month_name(a)}: the column has dates in both orders")
        else:
            day, month = (a, b) if order == "day-first" else (b, a)
    else:
        name = (g["mon3"] or g["mon4"]).casefold().rstrip(".")
        if name not in MONTHS:
            return Read(None, f"{_short(shown)!r} is not a date and time")
        year, month, day = int(g["y3"] or g["y4"]), MONTHS[name], int(g["d3"] or g["d4"])
    return _assemble(shown, g, year, month, day, tz)


def _assemble(shown: str, g: dict[str, str | None], year: int, month: int, day: int,
              tz: ZoneInfo) -> Read:
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        return Read(None, f"{shown!r}: the year {year} is out of range")
    clock = _clock(g)
    if isinstance(clock, str):
        return Read(None, f"{shown!r}: {clock}")
    hour, minute, second, micro = clock
    try:
        naive = datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return Read(None, f"{shown!r} is not a calendar date")
    offset = _offset(g)
    if isinstance(offset, str):
        return Read(None, f"{shown!r}: {offset}")
    if offset is not None:
        return Read(pd.Timestamp(naive - offset, tz="UTC"))
    return localise(naive, tz, shown)


def localise(naive: datetime, tz: ZoneInfo, shown: str | None = None) -> Read:
    """A wall-clock time in `tz` as UTC, noting a time inside a clock change."""
    first = naive.replace(fold=0, tzinfo=tz)
    utc = first.astimezone(UTC)
    value = pd.Timestamp(utc)
    shown = shown or naive.strftime("%Y-%m-%d %H:%M")
    back = utc.astimezone(tz).replace(tzinfo=None)
    if back != naive:  # skipped: the clocks went forward over it
        return Read(value, note=f"{shown!r} is in the hour skipped when the clocks went "
                                f"forward: read as {back:%H:%M} {utc.astimezone(tz):%Z}")
    if naive.replace(fold=1, tzinfo=tz).utcoffset() != first.utcoffset():
        return Read(value, note=f"{shown!r} is in the hour repeated when the clocks went "
                                f"back: read as the first {naive:%H:%M} "
                                f"({first:%Z}, {utc:%H:%M} UTC)")
    return Read(value)


def read_time(text: str | None) -> tuple[str | None, str | None]:
    """A time of day as "HH:MM", or None with the reason. A zone typed after it is
    dropped: a time of day without a date cannot be moved between zones."""
    shown = clean(str(text or ""))
    if not shown:
        return None, "no time given"
    if shown.casefold().rstrip(".!") in RELATIVE:
        return None, f"{shown!r} is not a time of day: the time is needed"
    m = _TIME_OF_DAY.match(shown)
    if not m:
        return None, f"{_short(shown)!r} is not a time of day"
    if isinstance(_offset(m.groupdict()), str):
        return None, f"{shown!r} is not a time of day"
    clock = _clock(m.groupdict(), need_minutes=not m.group("ampm"))
    if isinstance(clock, str):
        return None, f"{shown!r}: {clock}"
    return f"{clock[0]:02d}:{clock[1]:02d}", None


def _clock(g: dict[str, str | None], need_minutes: bool = False
           ) -> tuple[int, int, int, int] | str:
    """(hour, minute, second, microsecond) of the time part, or why it cannot be a time."""
    if g.get("H") is None:
        return 0, 0, 0, 0
    hour, minute, second = int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0)
    micro = int((g["F"] or "0")[:6].ljust(6, "0"))
    ampm = (g["ampm"] or "").casefold().replace(".", "").replace(" ", "")
    if g["M"] is None and (need_minutes or not ampm):
        return "the time needs hours and minutes"
    if ampm:
        if not 0 <= hour <= 12:
            return f"{hour} is not an hour on a 12-hour clock"
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return "not a time of day"
    return hour, minute, second, micro


def _offset(g: dict[str, str | None]) -> timedelta | str | None:
    """The UTC offset the text carries (zone abbreviation plus any offset), None if none."""
    zone, sign = g.get("zone"), g.get("sign")
    if zone is None and sign is None:
        return None
    minutes = 0
    if zone is not None:
        if zone.upper() not in ZONES:
            return f"the time zone {zone!r} is not known: write it as an offset (+01:00)"
        minutes = ZONES[zone.upper()]
    if sign is not None:
        hours, mins = int(g["oh"] or 0), int(g["om"] or 0)
        if hours > 14 or mins > 59:
            return "the UTC offset is out of range"
        minutes += (hours * 60 + mins) * (-1 if sign == "-" else 1)
    return timedelta(minutes=minutes)


def _month_name(month: int) -> str:
    return datetime(2000, month, 1).strftime("%B")


def _short(text: str, limit: int = 60) -> str:
    """Long answers are cut in messages: a reason names the value, it does not copy it."""
    return text if len(text) <= limit else text[:limit] + "…"
