"""How a tracker sheet is laid out on every backend alike: column widths from what the
columns hold, long text wrapped, dates as dates.

A column is as wide as its header (and the filter button beside it) or its widest value,
whichever is wider, and never wider than `MAX_WIDTH` characters: a description of a
thousand words must not push every other column off the screen. Columns people write
sentences in are wrapped, and so is any column whose values reach the cap when its sheet
is created, so that what is cut off at the column's edge is still readable in the row.

Widths are counted in characters of the default font, as Excel counts them; each backend
converts them to its own unit (`pixels` for Sheets, `points` for Graph).

Dates and times are written as what spreadsheets call a date: a serial number of days with
a date number format, so that managers can sort and filter them as dates. The formats are
ISO (`DATE_TIME_FORMAT`, `DATE_FORMAT`): they read the same in every locale, and they are
the text the tracker compares (transforms.tracker.cell_text), so a date reads back as the
value that was written and is not written again on the next run.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

from domain.records import Cell, SheetWrite

MAX_WIDTH = 50  # characters: about a third of a laptop screen
MIN_WIDTH = 8  # about Excel's default column (8.43 characters): none is narrower
_PADDING = 2  # a character's margin either side of the text
_FILTER_BUTTON = 4  # the header also holds the filter's drop-down button

# Columns of free text, by title on whichever sheet they are (system and manager columns
# alike: "Action" and "Outcome for reporter" are typed by managers, who need the wrap as
# much). Titles are compared as the tracker compares them: case and runs of spaces aside.
LONG_TEXT = frozenset(" ".join(t.split()).casefold() for t in (
    # Reports
    "What happened", "Immediate action", "Contributing factors", "Missing information",
    "Notification risk", "Outcome for reporter", "No further action reason", "Check", "Loop",
    # Patterns
    "Report IDs", "Why", "Review notes",
    # Actions
    "Action", "Evidence required", "Verification method", "Outcome", "Tracking",
    # Data quality
    "Missing", "Invalid", "Cannot proceed without", "Marked values", "Notes",
))

DATE_TIME_FORMAT = "yyyy-mm-dd hh:mm"
DATE_FORMAT = "yyyy-mm-dd"
_EPOCH = datetime(1899, 12, 30)  # day 0 of Excel's and Sheets' serial dates


@dataclass(frozen=True)
class Column:
    width: int  # characters
    wrap: bool


def long_text(title: Cell) -> bool:
    return isinstance(title, str) and " ".join(title.split()).casefold() in LONG_TEXT


def text_width(value: Cell) -> int:
    """The characters a value takes on screen as the tracker shows it (its longest line;
    East Asian wide characters and most emoji count two), at most `MAX_WIDTH` + 1: past
    the cap the exact width does not matter, and a long text is not scanned to its end."""
    if value is None or (isinstance(value, str) and not value):
        return 0
    if isinstance(value, date):
        when = date_value(value)
        if when is None:  # NaT
            return 0
        return len("2026-11-20 10:07" if isinstance(when, datetime) else "2026-11-20")
    if isinstance(value, bool):
        return 5
    if isinstance(value, numbers.Integral):
        return len(str(int(value)))
    if isinstance(value, numbers.Real):
        number = float(value)
        return len(f"{number:.10g}") if math.isfinite(number) else 0
    text = str(value)
    widest = 0
    for line in text.split("\n"):
        if len(line) > MAX_WIDTH * 2:  # over the cap even counted as narrow characters
            return MAX_WIDTH + 1
        if line.isascii():
            width = len(line)
        else:
            width = sum(0 if unicodedata.combining(ch) else
                        2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)
        widest = max(widest, width)
        if widest > MAX_WIDTH:
            return MAX_WIDTH + 1
    return widest


def content_widths(write: SheetWrite) -> dict[int, int]:
    """Per column, the widest value `write` puts in it (header cells aside: a sheet without
    a header, such as Summary, has its first row in `cells`), in characters; columns it
    leaves empty are absent."""
    out: dict[int, int] = {}

    def see(col: int, value: Cell) -> None:
        if out.get(col, 0) <= MAX_WIDTH:
            width = text_width(value)
            if width > out.get(col, 0):
                out[col] = width

    for (_, col), value in write.cells.items():
        see(col, value)
    for line in write.append:
        for col, value in enumerate(line, start=1):
            if value is not None and value != "":
                see(col, value)
    return out


def width_for(content: int, title: Cell = None) -> int:
    """The width a column needs for values `content` characters wide under `title`."""
    header = len(str(title)) + _FILTER_BUTTON if title not in (None, "") else 0
    needed = max(content + _PADDING if content else 0, header, MIN_WIDTH)
    return min(needed, MAX_WIDTH)


def layout(write: SheetWrite) -> dict[int, Column]:
    """Every column of a sheet `write` creates: its width, and whether it wraps."""
    content = content_widths(write)
    out: dict[int, Column] = {}
    for col in sorted({*write.header, *content}):
        title = write.header.get(col)
        needed = content.get(col, 0)
        out[col] = Column(width_for(needed, title),
                          long_text(title) or needed + _PADDING > MAX_WIDTH)
    return out


def widened(write: SheetWrite) -> dict[int, int]:
    """The width each column `write` touches needs for what it writes (header cells
    included); a column already at least that wide stays as it is."""
    content = content_widths(write)
    return {col: width_for(content.get(col, 0), write.header.get(col))
            for col in sorted({*content, *write.header})}


def pixels(width: float) -> int:
    """A width in characters as Sheets' pixels (Arial 10: about 7 pixels a character)."""
    return round(width * 7 + 5)


def points(width: float) -> float:
    """A width in characters as Excel's points: 7 pixels a character and 5 of margin, at
    96 pixels to 72 points (Excel's default 8.43 characters is 48 points)."""
    return round((math.trunc(width * 7) + 5) * 0.75, 2)


def runs_of(cols: Iterable[int], same: Mapping[int, object]) -> list[tuple[int, int]]:
    """Adjacent columns with the same `same[col]`, as (first, last) runs."""
    out: list[tuple[int, int]] = []
    for col in sorted(cols):
        if out and out[-1][1] == col - 1 and same[out[-1][0]] == same[col]:
            out[-1] = (out[-1][0], col)
        else:
            out.append((col, col))
    return out


# -- dates -----------------------------------------------------------------------------------


def date_value(value: Cell) -> datetime | date | None:
    """A cell value that is a date or a date and time, as a plain naive `datetime` or
    `date` (pandas' Timestamp is a datetime the libraries handle unevenly); None for any
    other value, pandas' NaT (a missing time, though a datetime to `isinstance`) included.
    A time of day alone is not a date."""
    if isinstance(value, date) and value != value:  # NaT: equal to nothing, itself included
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # the tracker shows wall-clock times: never expected
            value = value.replace(tzinfo=None)
        if type(value) is not datetime:
            return datetime(value.year, value.month, value.day, value.hour, value.minute,
                            value.second, value.microsecond)
        return value
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    return None


def number_format(value: datetime | date) -> str:
    """The format a date cell is shown in: a day alone, or a day and a time."""
    return DATE_TIME_FORMAT if isinstance(value, datetime) else DATE_FORMAT


def serial(value: datetime | date) -> float | int:
    """A date as a serial number of days since 1899-12-30, as Sheets and Excel (through
    Graph) store it; a whole day as an integer."""
    moment = value if isinstance(value, datetime) else datetime.combine(value, time())
    delta = moment - _EPOCH
    if not delta.seconds and not delta.microseconds:
        return delta.days
    return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86_400
