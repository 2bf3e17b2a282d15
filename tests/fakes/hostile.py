"""A hostile corpus: form exports as providers' own downloads really are, not as samples are.

`write_corpus(folder)` writes three Google Forms CSV exports (UTF-8 with a BOM and commas;
Windows-1252 with semicolons; UTF-16 with tabs) and one Microsoft Forms workbook, over a
thousand rows in all, cycling through every case that once stopped a run: clock-change
hours, offsets and zone names, far-future years, "now", control characters, "N/A"
answers, empty timestamps, broken lines, duplicate response ids, emoji, right-to-left text,
line breaks inside cells and 100 kB answers. It returns what each row should become.

Every row's description starts with its token (`row-0042`), so a test finds its report.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from tests.fakes.deployment import MEDICATION, Q

GOOGLE_META = ["Timestamp", "Email Address"]
MS_META = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time"]
QUESTIONS = list(Q.values())
START = datetime(2026, 9, 1, 9, 0)


@dataclass
class Expect:
    """What one written row must become."""

    token: str
    source: str
    marks: list[str] = field(default_factory=list)  # each a substring of a report problem
    fields: dict[str, Any] = field(default_factory=dict)  # stored values, verbatim
    quarantined: bool = False


@dataclass
class Corpus:
    sources: list[dict[str, str]]  # config entries
    rows: dict[str, int]  # source name -> rows written (each one response)
    expect: list[Expect]


@dataclass
class Row:
    """One response before it is written: Google timestamp text or Microsoft cells."""

    answers: dict[str, Any]
    expect: Expect
    stamp: str | None = None
    completion: Any = None
    response_id: int | str | None = None
    start: Any = None
    broken: bool = False


# text that every encoding can carry (cp1252 has no emoji, Hebrew or Arabic)
PLAIN_HOSTILE = ["café – “quoted” ’apostrophe’ 5€", "tab\there", "semi;colon, comma",
                 'a "quoted" word', "line one\r\nline two\r\n\r\nline four", "=1+1",
                 "@SUM(A1)", "-2+3", "<b>bold</b> &amp;", "a\x00b", "bell\x07 vt\x0b us\x1f"]
WIDE_HOSTILE = ["😀👩‍⚕️💊 emoji", "مرحبا \u202eتصحيح\u202c", "שלום עולם", "zero\u200bwidth",
                "日本語のテキスト"]


def _cases(wide: bool, google: bool) -> list[Callable[[Row, random.Random], None]]:
    """Each case changes a complete medication report into one hostile row."""

    def stamp(text: str, *marks: str) -> Callable[[Row, random.Random], None]:
        def apply(row: Row, _: random.Random) -> None:
            if google:
                row.stamp = text
            row.expect.marks += list(marks) if google else []
        return apply

    def answer(field_: str, value: str, *marks: str, stored: Any = None
               ) -> Callable[[Row, random.Random], None]:
        def apply(row: Row, _: random.Random) -> None:
            row.answers[Q[field_]] = value
            row.expect.marks += list(marks)
            if stored is not None:
                row.expect.fields[field_] = stored
        return apply

    # An XLSX file cannot hold C0 controls at all (XML forbids them); a CSV can.
    texts = [t for t in PLAIN_HOSTILE + (WIDE_HOSTILE if wide else [])
             if google or not any(ord(c) < 32 and c not in "\t\r\n" for c in t)]

    def text(row: Row, rng: random.Random) -> None:
        hostile = rng.choice(texts)
        row.answers[Q["description"]] += " " + hostile
        row.answers[Q["conditions"]] = hostile
        # XML reads a line break in a cell as LF, whatever was written
        row.expect.fields["conditions"] = (hostile if google else hostile.replace(
            "\r\n", "\n")).strip()

    def huge(row: Row, _: random.Random) -> None:
        # about 100 kB in a CSV; an Excel cell holds at most 32,767 characters
        row.answers[Q["description"]] += " " + "long answer " * (8_500 if google else 2_700)
        row.expect.fields["description"] = row.answers[Q["description"]].strip()

    def missing_word(row: Row, rng: random.Random) -> None:
        word = rng.choice(["N/A", "None", "null", "NA", "n/a", "-"])
        row.answers[Q["medication_name"]] = word
        row.expect.fields["medication_name"] = word

    def clock_change_cells(row: Row, _: random.Random) -> None:
        if not google:
            row.completion = datetime(2026, 10, 25, 1, 30)
            row.expect.marks += ["note: Submitted:", "repeated"]

    return [
        lambda row, rng: None,
        stamp("2026/10/25 1:30:00 AM", "note: Submitted:", "repeated"),
        stamp("2026/10/25 1:30:00 AM GMT"),
        stamp("2026/03/29 1:30:00 AM", "note: Submitted:", "skipped"),
        stamp("", "invalid: Submitted:", "dated by when it was first received"),
        stamp("9999/12/31 11:59:59 PM GMT", "invalid: Submitted:", "9999"),
        stamp("sometime on Tuesday", "invalid: Submitted:"),
        answer("occurred_at", "2026-10-25 01:30", "note: when it happened:", "repeated"),
        answer("occurred_at", "2026-03-29 01:45", "note: when it happened:", "skipped"),
        answer("occurred_at", "2026-11-03 10:00 GMT", stored="2026-11-03T10:00:00+00:00"),
        answer("occurred_at", "2026-11-03 10:00 GMT+1", stored="2026-11-03T09:00:00+00:00"),
        answer("occurred_at", "2026-07-03T10:00:00+01:00", stored="2026-07-03T09:00:00+00:00"),
        answer("occurred_at", "2026-11-03 10:00 BST", stored="2026-11-03T09:00:00+00:00"),
        answer("occurred_at", "9999-01-01 10:00", "invalid: when it happened:", "9999"),
        answer("occurred_at", "now", "invalid: when it happened:", "'now' is not a date"),
        answer("occurred_at", "today", "invalid: when it happened:"),
        answer("scheduled_time", "now", "invalid: scheduled time:"),
        answer("scheduled_time", "20:00 GMT", stored="20:00"),
        missing_word, missing_word, text, text, text, huge, clock_change_cells,
    ]


def _base(token: str, i: int) -> dict[str, Any]:
    answers = {Q[f]: ", ".join(v) if isinstance(v, list) else v for f, v in MEDICATION.items()}
    answers[Q["description"]] = f"{token} MAR showed the dose as given"
    answers[Q["occurred_at"]] = (START + timedelta(hours=2 * i)).strftime("%Y-%m-%d %H:%M")
    answers[Q["person_ref"]] = f"P-{i % 97:03d}"
    return answers


def _rows(source: str, count: int, first: int, wide: bool, google: bool,
          rng: random.Random) -> list[Row]:
    cases = _cases(wide, google)
    rows = []
    for n in range(count):
        i = first + n
        token = f"row-{i:04d}"
        when = START + timedelta(hours=2 * i, minutes=5)
        row = Row(answers=_base(token, i), expect=Expect(token, source),
                  stamp=when.strftime("%Y/%m/%d %-I:%M:%S %p GMT") if google else None,
                  completion=when, response_id=i + 1, start=when - timedelta(minutes=3))
        cases[n % len(cases)](row, rng)
        rows.append(row)
    return rows


def _google_text(rows: list[Row], delimiter: str, broken: set[int]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([*GOOGLE_META, *QUESTIONS])
    for n, row in enumerate(rows):
        cells = [row.stamp, f"staff{n}@example.org",
                 *(row.answers.get(q, "") for q in QUESTIONS)]
        if n in broken:  # a stray delimiter typed into a cell that was never quoted
            cells = [*cells[:5], "extra", *cells[5:]] if n % 2 else cells[:-3]
            row.expect.quarantined = True
        writer.writerow(cells)
    return out.getvalue()


def _microsoft(path: Path, rows: list[Row]) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append([*MS_META, *QUESTIONS])
    for row in rows:
        ws.append([row.response_id, row.start, row.completion, "anonymous", None, None,
                   *(row.answers.get(q) for q in QUESTIONS)])
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # typed text, as Microsoft writes it; not a formula
    wb.save(path)


def write_corpus(folder: Path, seed: int = 8) -> Corpus:
    """Write the four exports under `folder` and say what each row must become."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [  # name, rows, encoding, delimiter, rows with a broken line
        ("google-bom", 300, "utf-8-sig", ",", {40, 161}),
        ("google-cp1252", 150, "cp1252", ";", {77}),
        ("google-utf16", 150, "utf-16", "\t", {12}),
    ]
    sources, counts, expect, first = [], {}, [], 0
    for name, count, encoding, delimiter, broken in specs:
        rows = _rows(name, count, first, wide=encoding != "cp1252", google=True, rng=rng)
        path = folder / f"{name}.csv"
        path.write_bytes(_google_text(rows, delimiter, broken).encode(encoding))
        sources.append({"name": name, "kind": "google_forms_csv", "path": str(path)})
        counts[name] = count
        expect += [r.expect for r in rows]
        first += count
    rows = _rows("microsoft", 420, first, wide=True, google=False, rng=rng)
    for row in rows[100:130]:  # thirty rows that share one ID, each started at its own time
        row.response_id = rows[100].response_id
        row.expect.marks.append("note: ID:")
    _microsoft(folder / "microsoft.xlsx", rows)
    sources.append({"name": "microsoft", "kind": "microsoft_forms_xlsx",
                    "path": str(folder / "microsoft.xlsx")})
    counts["microsoft"] = len(rows)
    expect += [r.expect for r in rows]
    return Corpus(sources, counts, expect)
