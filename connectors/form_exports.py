"""Form sources read from files: a Google Forms CSV export and a Microsoft Forms Excel export.

Both give one row per response and one column per question title; the metadata columns
(timestamps, respondent) are taken here and everything else is handed on as answers,
uninterpreted, so the mapping to report fields stays in one place (transforms/normalize).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from connectors.base import Pull, RawResponse
from connectors.errors import SourceError

# "2026/09/14 9:41:12 AM GMT+1" is what Google Forms writes in its CSV download.
_GOOGLE_STAMP = re.compile(
    r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s*([AP]M)?"
    r"\s*(?:(?:GMT|UTC)\s*([+-]\d{1,2})(?::?(\d{2}))?|(?:GMT|UTC))?\s*$",
    re.IGNORECASE,
)


def parse_google_timestamp(value: str, tz: ZoneInfo, dayfirst: bool) -> pd.Timestamp | None:
    """A Google Forms timestamp as an aware UTC time, or None when it cannot be read.

    The CSV download writes `YYYY/MM/DD h:mm:ss AM GMT+1`; a CSV saved from the linked
    sheet writes the sheet's locale (`23/11/2026 14:05:00`), read in the deployment zone.
    """
    m = _GOOGLE_STAMP.match(value or "")
    if m:
        year, month, day, hour, minute, second, ampm, off_h, off_m = m.groups()
        hour = int(hour)
        if ampm:
            hour = hour % 12 + (12 if ampm.upper() == "PM" else 0)
        try:
            naive = datetime(int(year), int(month), int(day), hour, int(minute), int(second))
        except ValueError:
            return None
        if off_h is None and "GMT" not in value.upper() and "UTC" not in value.upper():
            return pd.Timestamp(naive, tz=tz).tz_convert("UTC")
        sign = -1 if (off_h or "+0").startswith("-") else 1
        offset = pd.Timedelta(hours=abs(int(off_h or 0)), minutes=int(off_m or 0)) * sign
        return pd.Timestamp(naive - offset, tz="UTC")
    try:
        ts = pd.to_datetime(value, dayfirst=dayfirst)
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(ts):
        return None
    return (ts.tz_localize(tz) if ts.tzinfo is None else ts).tz_convert("UTC")


def _cell_text(value: object) -> str | None:
    """A spreadsheet cell as the text a respondent typed; dates/times in ISO form."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")
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
    if isinstance(exc, UnicodeDecodeError):
        return SourceError(f"{name}: {path} is not UTF-8 text: download the CSV again from the "
                           "form's Responses tab")
    return SourceError(f"{name}: cannot read {path}: {exc}")


class GoogleFormsCsvSource:
    """A "Download responses (.csv)" export: Timestamp, optional Email Address, questions.

    The export has no response id. A response is identified by its timestamp and respondent
    (plus its position among identical ones), so a re-download adds nothing new; a reporter
    who adds to an earlier report does so by quoting its reference in the form.
    """

    META = ("Timestamp", "Email Address", "Score")

    def __init__(self, name: str, path: Path, tz: ZoneInfo, dayfirst: bool = True) -> None:
        self.name, self.path, self.tz, self.dayfirst = name, Path(path), tz, dayfirst

    def pull(self, watermark: str | None = None) -> Pull:
        try:
            frame = pd.read_csv(self.path, dtype=str, keep_default_na=False,
                                encoding="utf-8-sig", on_bad_lines="error")
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise _read_error(self.name, self.path, exc) from None
        except pd.errors.EmptyDataError:
            return Pull(responses=[], questions={})
        if "Timestamp" not in frame.columns:
            raise SourceError(f"{self.name}: {self.path} has no 'Timestamp' column: is it a "
                              "Google Forms responses export?")
        questions = {c: c for c in frame.columns if c not in self.META}
        responses = []
        seen: dict[str, int] = {}
        for row in frame.to_dict("records"):
            stamp = row["Timestamp"].strip()
            email = (row.get("Email Address") or "").strip() or None
            base = f"{stamp}|{email or ''}"
            seen[base] = seen.get(base, 0) + 1
            digest = hashlib.sha256(f"{base}|{seen[base]}".encode()).hexdigest()[:20]
            submitted = parse_google_timestamp(stamp, self.tz, self.dayfirst)
            answers = {q: v.strip() for q in questions if (v := row.get(q) or "").strip()}
            responses.append(RawResponse(
                source=self.name, response_id=f"g-{digest}", submitted_at=submitted,
                answers=answers, respondent_email=email,
                unreadable_timestamp=None if submitted is not None else stamp))
        return Pull(responses=responses, questions=questions)


class MicrosoftFormsXlsxSource:
    """The Excel workbook of a Microsoft Form: ID, Start time, Completion time, Email, Name,
    optional Last modified time, then one column per question. Times are local (naive)."""

    META = ("ID", "Start time", "Completion time", "Email", "Name", "Last modified time")

    def __init__(self, name: str, path: Path, tz: ZoneInfo, sheet: str | None = None) -> None:
        self.name, self.path, self.tz, self.sheet = name, Path(path), tz, sheet

    def pull(self, watermark: str | None = None) -> Pull:
        try:
            frame = pd.read_excel(self.path, sheet_name=self.sheet or 0, dtype=object,
                                  engine="openpyxl")
        except ValueError as exc:
            if self.sheet and "not found" in str(exc).lower():
                raise SourceError(f"{self.name}: {self.path} has no sheet {self.sheet!r}") from None
            raise SourceError(
                f"{self.name}: {self.path} is not a readable Excel workbook") from None
        except (OSError, KeyError) as exc:
            raise _read_error(self.name, self.path, exc) from None
        except Exception as exc:  # openpyxl raises many types for a damaged or non-xlsx file
            raise SourceError(f"{self.name}: {self.path} is not a readable Excel workbook "
                              f"({type(exc).__name__})") from None
        missing = [c for c in ("ID", "Completion time") if c not in frame.columns]
        if missing:
            raise SourceError(f"{self.name}: {self.path} has no {', '.join(map(repr, missing))} "
                              "column: is it a Microsoft Forms responses workbook?")
        questions = {str(c): str(c) for c in frame.columns if c not in self.META}
        responses = []
        for row in frame.to_dict("records"):
            rid = _cell_text(row["ID"])
            if rid is None:
                continue  # blank line under the table, not a response
            stamp = row.get("Last modified time")
            if _cell_text(stamp) is None:
                stamp = row["Completion time"]
            submitted = self._when(stamp)
            answers = {q: t for q in questions if (t := _cell_text(row.get(q))) is not None}
            email = _cell_text(row.get("Email"))
            responses.append(RawResponse(
                source=self.name, response_id=rid, submitted_at=submitted, answers=answers,
                # Anonymous Microsoft Forms write the word "anonymous" in place of an address.
                respondent_email=None if (email or "").lower() == "anonymous" else email,
                respondent_name=_cell_text(row.get("Name")),
                unreadable_timestamp=None if submitted is not None else str(stamp)))
        return Pull(responses=responses, questions=questions)

    def _when(self, value: object) -> pd.Timestamp | None:
        try:
            ts = pd.Timestamp(value) if isinstance(value, datetime) else pd.to_datetime(
                str(value), dayfirst=False)
        except (ValueError, TypeError, OverflowError):
            return None
        if pd.isna(ts):
            return None
        return (ts.tz_localize(self.tz, ambiguous=True, nonexistent="shift_forward")
                if ts.tzinfo is None else ts).tz_convert("UTC")
