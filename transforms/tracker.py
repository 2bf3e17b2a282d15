"""The tracker round trip: which columns the system owns, which the managers own, and the
smallest set of cell writes that brings the shared sheet up to date without touching
anything a manager typed.

Rows are matched by their key (Report ID, Pattern ID, Action ID), never by position:
managers sort, filter, insert their own columns and notes. A system cell is written only
when its value differs; a keyed row that disappeared is appended again (restored), with the
manager values last seen in it. Columns the system does not know are never written, except
when a row moves between sheets: its cells in them move with it.

Reports and patterns closed long ago move to yearly archive sheets ("Reports 2025"). A
sheet and its archives are one family: a key is looked for in all of them, and the first
copy found (the live sheet's, else the oldest archive's) is the one whose manager values
count and the one that is kept; it is moved when it is not in the sheet it belongs in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import zip_longest
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.rules import Rules
from domain.records import Cell, SheetSpec, SheetWrite
from domain.text import sheet_text
from transforms.normalize import display

TRIAGE_STATUS = ["In review", "Triaged", "Closed"]
JUST_CULTURE = {
    "Human error": "System redesign and coaching",
    "At-risk behaviour": "Supervision reinforcement and barrier removal",
    "Reckless behaviour": "Formal action under the conduct policy",
    "Not applicable": "Learning shared; no individual response",
}
NOTIFICATION_DECISIONS = ["Not notifiable", "Under consideration", "Notified"]
REVIEW_STATUS = ["Under review", "Closed"]
ACTION_STATUS = ["Open", "In progress", "Done - awaiting verification", "Verified effective",
                 "Not effective"]

REPORTS = SheetSpec(
    title="Reports",
    archives=True,
    key_column="Report ID",
    columns=[
        "Report ID", "Version", "Submitted", "Occurred", "Service", "Setting", "Shift",
        "Category", "What happened", "Immediate action", "Potential harm",
        "Contributing factors", "Reporter", "Person ref", "Data quality",
        "Missing information", "Pathway", "Priority", "Triage due", "Overdue",
        "Notification risk", "Rule", "Patterns",
        "Triage status", "Triage date", "Just-culture classification", "Suggested response",
        "Notification decision", "Outcome for reporter", "No further action reason",
        "Closed on", "Check", "Loop",
    ],
    manager_columns=["Triage status", "Triage date", "Just-culture classification",
                     "Notification decision", "Outcome for reporter",
                     "No further action reason", "Closed on"],
    dropdowns={"Triage status": TRIAGE_STATUS,
               "Just-culture classification": list(JUST_CULTURE),
               "Notification decision": NOTIFICATION_DECISIONS},
    overdue_column="Overdue",
    note_column="Check",
)

PATTERNS = SheetSpec(
    title="Patterns",
    archives=True,
    key_column="Pattern ID",
    columns=["Pattern ID", "Rule", "Similar on", "Reports", "Report IDs", "First", "Last",
             "Status", "Why", "Review status", "Review owner", "Closed on", "Review notes"],
    manager_columns=["Review status", "Review owner", "Closed on", "Review notes"],
    dropdowns={"Review status": REVIEW_STATUS},
    note_column="Why",
)

ACTIONS = SheetSpec(
    title="Actions",
    key_column="Action ID",
    columns=["Action ID", "Linked to", "Action", "Owner", "Owner email", "Due",
             "Evidence required", "Verification method", "Verification due", "Status",
             "Verified on", "Outcome", "Tracking", "Overdue"],
    manager_columns=["Linked to", "Action", "Owner", "Owner email", "Due", "Evidence required",
                     "Verification method", "Verification due", "Status", "Verified on",
                     "Outcome"],
    dropdowns={"Status": ACTION_STATUS},
    overdue_column="Overdue",
    note_column="Tracking",
)

DATA_QUALITY = SheetSpec(
    title="Data quality",
    key_column="Report ID",
    columns=["Report ID", "Category", "Service", "Status", "Missing", "Invalid",
             "Cannot proceed without", "Reporter contactable", "Information requested",
             "Completed", "Marked values", "Notes"],
    manager_columns=["Notes"],
)

SHEETS = [REPORTS, PATTERNS, ACTIONS, DATA_QUALITY]


# A date and time at midnight as a sheet that shows its number format gives it back.
_MIDNIGHT = re.compile(r"\d{4}-\d{2}-\d{2} 00:00")


def cell_text(value: Cell) -> str:
    """A cell as comparable text: what a manager sees, whatever type the backend returns.

    A time at midnight is its day alone: an Excel reader gives such a date cell as a
    datetime at midnight whether it shows the time or not, while Sheets gives the text of
    its format ("2026-11-20 00:00"); both are the same value, and must compare as one.
    """
    if isinstance(value, str):  # most cells: first, as every cell of every read comes here
        text = value.strip()
        if len(text) == 16 and text.endswith(" 00:00") and _MIDNIGHT.fullmatch(text):
            return text[:10]
        return text
    if type(value) is datetime:  # the next most common: every time a reader gives
        return _time_text(value)
    if value is None or value is pd.NaT or value is pd.NA:
        return ""
    if isinstance(value, np.bool_ | np.integer | np.floating):
        value = value.item()  # as the connectors write numpy scalars: Python values
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, date):
        return _day_text(value)
    return str(value).strip()


def _time_text(value: datetime) -> str:
    """A date and time to the minute, the day alone at midnight."""
    midnight = not (value.hour or value.minute or value.second or value.microsecond)
    if value.tzinfo is None and value.year >= 1000:  # isoformat: a fraction of strftime
        return value.isoformat(" ", "minutes")[:10 if midnight else 16]
    return value.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M")


def _day_text(value: date) -> str:
    if value.year >= 1000:  # isoformat: a fraction of strftime
        return value.isoformat()
    return value.strftime("%Y-%m-%d")


def stored_text(value: Cell) -> str:
    """The text a sheet gives back for `value` once written: what the plan compares.

    Every tracker makes text safe and cuts it to the cell limit before writing it (Excel
    keeps 32,767 characters; openpyxl cut longer text silently), so a value is compared in
    that form: compared as given, a pattern whose "Report IDs" run past the limit differed
    from its own cell on every run, and the whole workbook was saved again for it.
    """
    return cell_text(_cell(value))


def _norm(title: Any) -> str:
    return " ".join(cell_text(title).split()).casefold()


def _cell(value: Cell) -> Cell:
    """A value as a cell holds it: text made safe and cut to the cell limit."""
    return sheet_text(value) if isinstance(value, str) else value


@dataclass
class SheetState:
    """What one read of a sheet told us."""

    spec: SheetSpec
    exists: bool
    columns: dict[str, int] = field(default_factory=dict)  # known title -> 1-based column
    width: int = 0  # number of header cells, including managers' own columns
    rows: dict[str, int] = field(default_factory=dict)  # key -> 1-based row (first if dup)
    last_row: int = 1
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> title -> text
    unkeyed: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # rows w/o key
    # rows repeating a key a row above already holds (a copied row): key, row, its cells
    duplicates: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    others: dict[int, str] = field(default_factory=dict)  # managers' own titled columns
    # key -> title -> value of the row's non-empty cells in those columns (they move with it)
    extras: dict[str, dict[str, Cell]] = field(default_factory=dict)


def read_sheet(spec: SheetSpec, rows: Sequence[Sequence[Cell]] | None) -> SheetState:
    """Locate the known columns by header and every keyed row; read every known cell."""
    if rows is None:
        return SheetState(spec=spec, exists=False)
    header = list(rows[0]) if rows else []
    by_title = {_norm(t): t for t in spec.columns}
    columns: dict[str, int] = {}
    for i, title in enumerate(header, start=1):
        known = by_title.get(_norm(title))
        if known and known not in columns:
            columns[known] = i
    others: dict[int, str] = {}  # managers' own columns: titled, first of each title
    seen = set(by_title)
    for i, title in enumerate(header, start=1):
        text = cell_text(title)
        if text and _norm(text) not in seen:
            seen.add(_norm(text))
            others[i] = text
    state = SheetState(spec=spec, exists=True, columns=columns, width=len(header),
                       last_row=max(len(rows), 1), others=others)
    if not columns:
        return state
    body = rows[1:]
    titles = list(columns)
    # Column by column: a read of 100,000 rows holds millions of cells; each row's dict is
    # then built in C.
    cells = list(zip_longest(*body))  # by column; a short row (Sheets) padded with None
    texts = zip(*(column_texts(cells[c - 1] if c <= len(cells) else (None,) * len(body))
                  for c in columns.values()), strict=True)
    key_at = titles.index(spec.key_column) if spec.key_column in columns else None
    for r, (row, found) in enumerate(zip(body, texts, strict=True), start=2):
        if not any(found):
            continue
        values = dict(zip(titles, found, strict=True))
        key = found[key_at] if key_at is not None else ""
        if not key:
            state.unkeyed.append((r, values))
        elif key in state.rows:
            state.duplicates.append((key, r, values))
        else:
            state.rows[key] = r
            state.values[key] = values
            extras = {t: row[c - 1] for c, t in others.items()
                      if c - 1 < len(row) and cell_text(row[c - 1])} if others else None
            if extras:
                state.extras[key] = extras
    return state


def column_texts(values: Sequence[Cell]) -> list[str]:
    """`cell_text` of each value of one column, without a call per cell for the columns a
    reader gives in one type: text, times and days, numbers (a tracker holds 100,000s)."""
    kinds = set(map(type, values))
    if kinds <= {type(None)}:
        return [""] * len(values)
    if kinds <= {str}:
        texts = list(map(str.strip, values))  # in C
        # a date at midnight, as Sheets shows it: 16 characters ending in " 00:00"
        if 16 in set(map(len, texts)) and any(t.endswith(" 00:00") for t in texts
                                              if len(t) == 16):
            texts = [cell_text(t) for t in texts]
        return texts
    if kinds == {datetime}:  # as an Excel reader gives a column of times
        return list(map(_time_text, values))
    if kinds <= {datetime, date}:  # calamine gives a time at midnight as its day
        return [_time_text(v) if type(v) is datetime else _day_text(v) for v in values]
    if kinds == {int}:  # a count or a version
        return list(map(str, values))
    if kinds == {float}:  # as calamine gives every number
        return [str(int(v)) if v.is_integer() else cell_text(v) for v in values]
    # the midnight rule is for text alone: a time's text is final
    return ["" if v is None else cell_text(v) if type(v) is not str
            or (t := v.strip()).endswith(" 00:00") else t for v in values]


def read_states(specs: Sequence[SheetSpec], tables: Mapping[str, Sequence[Sequence[Cell]]],
                ) -> dict[str, SheetState]:
    """Every sheet of a tracker read: each spec's (absent or not) and each archive's."""
    states = {spec.title: read_sheet(spec, tables.get(spec.title)) for spec in specs}
    for title, rows in tables.items():
        if title not in states:
            for spec in specs:
                year = spec.archive_year(title)
                if year is not None:
                    states[title] = read_sheet(spec.archive(year, title), rows)
                    break
    return states


def family(states: Mapping[str, SheetState], spec: SheetSpec) -> list[SheetState]:
    """A sheet's state followed by its archives', oldest year first (one sheet per year)."""
    archives: dict[int, SheetState] = {}
    for title, state in states.items():
        year = spec.archive_year(title)
        if year is not None:
            archives.setdefault(year, state)
    return [states[spec.title], *(archives[y] for y in sorted(archives))]


def archived_in(states: Sequence[SheetState]) -> dict[str, int]:
    """Key -> year of the archive holding its first copy, for keys not in the live sheet."""
    live, *archives = states
    out: dict[str, int] = {}
    for state in archives:
        year = live.spec.archive_year(state.spec.title)
        for key in state.rows:
            if key not in live.rows and year is not None:
                out.setdefault(key, year)
    return out


def archive_targets(closed_on: Mapping[str, date | None], archived: Mapping[str, int],
                    cutoff: date | None) -> dict[str, int]:
    """The archive year each key belongs in; keys left out belong in the live sheet.

    `closed_on`: the local day each key was closed (None: open); `archived`: where keys are
    now (`archived_in`); `cutoff`: rows closed before that day move (None: none move).
    A row closed before the cutoff belongs in the archive of the year it was closed (a
    corrected date moves it to its year). One reopened goes back to the live sheet, where
    the work is. One closed after the cutoff, or with archiving turned off, stays where it
    is: archiving only ever moves rows that are done.
    """
    out: dict[str, int] = {}
    for key, day in closed_on.items():
        if day is None:
            continue
        if cutoff is not None and day < cutoff:
            out[key] = day.year
        elif key in archived:
            out[key] = archived[key]
    return out


@dataclass(frozen=True)
class ManagerChange:
    sheet: str
    key: str
    column: str
    old: str
    new: str


def manager_changes(state: SheetState, known: dict[str, dict[str, str]],
                    archives: Sequence[SheetState] = ()) -> tuple[
        dict[str, dict[str, str]], list[ManagerChange]]:
    """Manager values now in the sheet and its archives, merged over those last stored,
    and what changed (named by the live sheet, wherever the row is).

    A key's values are those of its first copy: the live sheet's, else the first archive's
    holding it (`family` order), with the text of managers' own columns. A row missing
    from every sheet keeps its stored values (it will be restored with them).
    """
    merged = {k: dict(v) for k, v in known.items()}
    changes: list[ManagerChange] = []
    manager = state.spec.manager_columns
    found: dict[str, tuple[dict[str, str], dict[str, Cell], list[str]]] = {}
    for sheet in (state, *archives):
        here = [c for c in manager if c in sheet.columns]  # a row's dict has every column
        for key, values in sheet.values.items():
            if key not in found:
                found[key] = (values, sheet.extras.get(key, {}), here)
    for key, (values, extras, here) in found.items():
        now = {c: values[c] for c in here}
        before = known.get(key)
        if before is None and not extras:  # most rows of a long tracker: never typed in
            merged[key] = now
            changes += [ManagerChange(state.spec.title, key, col, "", new)
                        for col, new in now.items() if new]
            continue
        before = before or {}
        for col, new in now.items():
            old = before.get(col, "")
            if new != old:
                changes.append(ManagerChange(state.spec.title, key, col, old, new))
        # Managers' own columns are kept too, as the text they show, so a deleted row
        # comes back whole; a cell emptied since is forgotten.
        merged[key] = {**{c: v for c, v in before.items() if c in manager}, **now,
                       **{t: cell_text(v) for t, v in extras.items()}}
    return merged, changes


def manager_updates(values: Mapping[str, dict[str, str]],
                    stored: Mapping[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The manager values to store: those that differ from the stored ones, a row never
    stored counting as blank. Most rows of a long tracker are never typed in: storing
    their empty cells once the first run has written them would rewrite the whole store."""
    return {k: v for k, v in values.items()
            if (stored[k] != v if k in stored else any(v.values()))}


def plan_sheet(state: SheetState, desired: pd.DataFrame, manager: dict[str, dict[str, str]],
               known: set[str] = frozenset(),  # type: ignore[assignment]
               ) -> tuple[SheetWrite, list[str], list[str]]:
    """The writes that make the sheet show `desired` (system columns, indexed by key).

    Returns (write, keys appended as new, keys restored after a manager deleted them).
    `manager` holds the stored manager values used when a row has to be restored; `known`
    the keys written by earlier runs (a missing one was deleted, not never written).
    """
    plan = plan_family([state], desired, manager, known)
    return plan.writes[0], plan.added, plan.restored


@dataclass
class FamilyPlan:
    """The writes for a sheet and its archives (the live sheet's first, maybe empty)."""

    writes: list[SheetWrite]
    added: list[str] = field(default_factory=list)  # keys appended for the first time
    restored: list[str] = field(default_factory=list)  # keys a manager had deleted
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # key, from, to sheet
    # copied rows newly told they are not read: sheet, key, the copy's row, the row counted
    copies: list[tuple[str, str, int, int]] = field(default_factory=list)


class _Planned:
    """One sheet being planned: where its columns are, and what is written to it."""

    def __init__(self, state: SheetState) -> None:
        spec = state.spec
        self.state = state
        self.write = SheetWrite(spec=spec, create=not state.exists)
        self.system = {c for c in spec.columns if c not in spec.manager_columns}
        if not state.exists:
            self.columns = {t: i for i, t in enumerate(spec.columns, start=1)}
            self.width = len(spec.columns)
            self.write.header = dict(enumerate(spec.columns, start=1))
        else:
            self.columns = dict(state.columns)
            self.width = state.width
            for title in spec.columns:  # a column the sheet lacks goes at the right-hand end
                if title not in self.columns:
                    self.width += 1
                    self.columns[title] = self.width
                    self.write.header[self.width] = title
        self.others = {_norm(t): c for c, t in state.others.items()}

    def update(self, key: str, wanted: dict[str, Cell], shown: Mapping[str, str | None]
               ) -> None:
        """Write the system cells of the row holding `key` that differ. `shown`: the
        comparable text of some of the values, made for a whole column at once."""
        row, have = self.state.rows[key], self.state.values.get(key, {})
        for title, value in wanted.items():
            was = have.get(title, "")
            # Most cells are as wanted: text equal as given, or empty and wanted empty.
            if (value == was and type(value) is str) or (value is None and not was) or (
                    shown.get(title) == was):
                continue
            # Compared as the sheet holds it, and written in that form: text it cannot hold
            # as given would differ from what is read back, and be written on every run.
            if stored_text(value) != was:
                self.write.cells[(row, self.columns[title])] = _cell(value)

    def append(self, key: str, wanted: dict[str, Cell], manager: Mapping[str, str],
               extras: Mapping[str, Cell]) -> None:
        """A new row: system values, the manager values given, and the cells of managers'
        own columns (each under its title, the column added at the end when missing)."""
        own: dict[int, Cell] = {}
        for title, value in extras.items():
            if _norm(title) not in self.others:
                self.width += 1
                self.others[_norm(title)] = self.width
                self.write.header[self.width] = title
            own[self.others[_norm(title)]] = value
        line: list[Cell] = [None] * self.width
        for title, col in self.columns.items():
            line[col - 1] = _cell(wanted.get(title)) if title in self.system else _cell(
                manager.get(title) or None)
        for col, value in own.items():
            line[col - 1] = _cell(value)
        line[self.columns[self.state.spec.key_column] - 1] = key
        self.write.append.append(line)


def plan_family(states: Sequence[SheetState], desired: pd.DataFrame,
                manager: dict[str, dict[str, str]],
                known: set[str] = frozenset(),  # type: ignore[assignment]
                targets: Mapping[str, int] | None = None) -> FamilyPlan:
    """The writes that make a sheet and its archives show `desired` (system columns,
    indexed by key), each key once, in the sheet it belongs in.

    `states`: the live sheet's, then its archives' (`family`). `targets`: key -> archive
    year for the keys that belong in an archive (`archive_targets`); the others belong in
    the live sheet. A key in the sheet it belongs in is updated in place. One elsewhere is
    moved: appended there with its manager values and managers' own cells exactly as read,
    and its row deleted. Copies of a key after the first (left by a move a run could not
    finish) are deleted. A key in no sheet is appended where it belongs, with the stored
    `manager` values: restored if earlier runs wrote it (`known`), else added. Keys not in
    `desired` are left as they are.
    """
    live = states[0]
    spec, targets = live.spec, targets or {}
    by_year: dict[int, SheetState] = {}
    for state in states[1:]:
        year = spec.archive_year(state.spec.title)
        if year is not None:
            by_year.setdefault(year, state)
    planned: dict[int, _Planned] = {}  # by id of the state, in the order first used

    def plan_of(state: SheetState) -> _Planned:
        if id(state) not in planned:
            planned[id(state)] = _Planned(state)
        return planned[id(state)]

    plan_of(live)
    copies: dict[str, list[tuple[SheetState, int]]] = {}
    for state in (live, *(by_year[y] for y in sorted(by_year))):
        for key, row in state.rows.items():
            copies.setdefault(key, []).append((state, row))
    out = FamilyPlan(writes=[])
    system = [c for c in spec.columns if c not in spec.manager_columns]
    desired = desired.reindex(columns=[c for c in system if c in desired.columns])
    # Column by column, not DataFrame.to_dict: several times faster on 100,000 rows.
    titles = list(desired.columns)
    shown = {t: _minute_texts(desired[t]) for t in titles
             if desired[t].dtype.kind == "M" and getattr(desired[t].dtype, "tz", None) is None}
    # A column of times as Python objects costs more than comparing every row: those are
    # taken for the rows written only.
    columns = [None if t in shown else desired[t].astype(object).where(
        desired[t].notna(), None).tolist() for t in titles]

    def wanted_at(i: int) -> dict[str, Cell]:
        return {t: _value_at(desired[t], i) if col is None else col[i]
                for t, col in zip(titles, columns, strict=True)}

    # A row whose cells all read as wanted, as given, is left in one comparison of its
    # items: most rows of a long tracker are (`update` decides the others, cell by cell).
    texts = zip(*[shown[t] if col is None else _plain_texts(col)
                  for t, col in zip(titles, columns, strict=True)], strict=True
                ) if columns else [()] * len(desired)
    live_values = live.values
    # the live row's cells in the order of `titles`, in C: when the sheet has them all
    pick = itemgetter(*titles) if len(titles) > 1 and set(titles) <= live.columns.keys() \
        else None
    for i, (key, as_text) in enumerate(zip(desired.index, texts, strict=True)):
        if key in live_values and targets.get(key) is None and len(copies[key]) == 1 and (
                pick(live_values[key]) == as_text if pick else dict(zip(
                    titles, as_text, strict=True)).items() <= live_values[key].items()):
            continue
        wanted = wanted_at(i)
        year = targets.get(key)
        if year is None:
            home = live
        else:
            if year not in by_year:
                by_year[year] = read_sheet(spec.archive(year), None)
            home = by_year[year]
        found = copies.get(key, [])
        kept = found[0] if found and found[0][0] is home else None
        if kept is not None:
            plan_of(home).update(key, wanted, {t: texts[i] for t, texts in shown.items()})
        elif found:
            source = found[0][0]
            plan_of(home).append(key, wanted, source.values[key], source.extras.get(key, {}))
            out.moved.append((key, source.spec.title, home.spec.title))
        else:
            stored = manager.get(key, {})
            plan_of(home).append(key, wanted, stored,
                                 {t: v for t, v in stored.items() if t not in spec.columns})
            (out.restored if key in manager or key in known else out.added).append(key)
        for state, row in found[1:] if kept else found:  # one copy per sheet: kept is [0]
            plan_of(state).write.delete_rows.append(row)
    for state in (live, *(by_year[y] for y in sorted(by_year))):
        _flag_copies(state, plan_of, out)
    out.writes = [p.write for p in planned.values()]
    return out


def _value_at(column: pd.Series, i: int) -> Cell:
    value = column.iat[i]
    return None if pd.isna(value) else value


def _plain_texts(values: list[Cell]) -> list[Any]:
    """Each value as the text a sheet holding it exactly gives back: text as it is, an
    empty cell empty, other values their `stored_text` (text the sheet would change is
    left to `_Planned.update`, which compares it as stored)."""
    kinds = set(map(type, values))
    if kinds <= {str}:  # most columns: as they are, without a loop
        return values
    if kinds <= {int}:  # a count or a version
        return list(map(str, values))
    return [v if type(v) is str else "" if v is None else stored_text(v) for v in values]


def _minute_texts(values: pd.Series) -> list[str | None]:
    """`stored_text` of each of a column of naive times, made at once: "YYYY-MM-DD HH:MM",
    a midnight the day alone, a missing time empty; None for a time within a minute (left
    to `stored_text`)."""
    texts = np.datetime_as_string(values.to_numpy("datetime64[us]"), unit="us")
    return ["" if t == "NaT" else None if t[16:] != ":00.000000" else t[:10]
            if t[11:16] == "00:00" else f"{t[:10]} {t[11:16]}" for t in texts.tolist()]


def copy_note(key: str, counted: int) -> str:
    """What a copied row says of itself: which copy counts, and what to do."""
    return (f"copy of {key}: row {counted} is the one read; what is typed here is not "
            "read: move it there and delete this row")


def _flag_copies(state: SheetState, plan_of: Any, out: FamilyPlan) -> None:
    """A row repeating a key of a row above it (a manager copied it) is never read: its
    note column says so, once, and which row counts."""
    note = state.spec.note_column
    if not state.exists or note is None or note not in state.columns:
        return
    for key, row, values in state.duplicates:
        text = copy_note(key, state.rows[key])
        if values.get(note, "") != text:
            plan_of(state).write.cells[(row, state.columns[note])] = text
            out.copies.append((state.spec.title, key, row, state.rows[key]))


def assign_ids(state: SheetState, ids: Sequence[str]) -> tuple[SheetWrite, dict[str, int]]:
    """Give rows that managers added without a key (new actions) the ids allocated for them.

    Only rows with something typed in a manager column count; returns the write and the
    new key -> row mapping (the state is updated so the rest of the run sees the ids).
    """
    write = SheetWrite(spec=state.spec)
    col = state.columns.get(state.spec.key_column)
    assigned: dict[str, int] = {}
    if col is None:
        return write, assigned
    for (row, values), new_id in zip(state.unkeyed, ids, strict=False):
        write.cells[(row, col)] = new_id
        assigned[new_id] = row
        state.rows[new_id] = row
        state.values[new_id] = {**values, state.spec.key_column: new_id}
    state.unkeyed = state.unkeyed[len(assigned):]
    return write, assigned


# -- what the system writes in each sheet ------------------------------------------------------
#
# Dates and times are date cells (naive datetimes in the deployment's wall-clock time, a day
# alone a `date`), so that managers sort and filter them as dates; the trackers write them
# as their spreadsheet's dates, and read back they compare equal (`cell_text`).


def _wall_clock(values: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Times (UTC) as the deployment's wall-clock time, naive and to the minute: the sheet
    shows minutes, and a value equal to what it shows sorts and filters as it reads. NaT
    where a time is missing."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values.map(lambda v: None if v is None or pd.isna(v)
                                           else pd.Timestamp(v)), utc=True)
    return values.dt.tz_convert(tz).dt.tz_localize(None).dt.floor("min")


def _dated(values: pd.Series, fmt: str, day: bool = False) -> pd.Series:
    """Wall-clock texts written as `fmt` as date cells (a `date` when `day`); empty as None,
    and a text that is not such a time kept as the text it is."""
    text = values.where(values.notna(), "").astype(str)
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    cells = (parsed.dt.date if day else parsed).astype(object)
    return cells.where(parsed.notna(), text.where(text != "", None))


def reports_rows(view: pd.DataFrame, rules: Rules, tz: ZoneInfo, now: pd.Timestamp,
                 ) -> pd.DataFrame:
    """System columns of the Reports sheet, one row per report, indexed by Report ID.

    `view` joins reports with checks, triage, closure (check, suggested_response,
    triaged), pattern ids and the loop status.
    """
    def col(name: str) -> pd.Series:
        return view[name] if name in view else pd.Series(None, index=view.index, dtype=object)

    def labelled(field: str) -> pd.Series:
        shown: dict[Any, str] = {}  # a few options (or lists of them) over every report

        def label(value: Any) -> str:
            key = (tuple(value),) if isinstance(value, list | tuple) else value
            if key not in shown:
                shown[key] = display(rules, field, value)
            return shown[key]
        return pd.Series([label(v) for v in col(field).tolist()], index=view.index,
                         dtype=object)

    reporter = col("reporter_name").where(col("reporter_name").notna(), col("reporter_email"))
    overdue = (view["triage_due"] < now) & ~view["triaged"]
    out = pd.DataFrame({
        "Report ID": view["report_id"],
        "Version": view["version"].astype(int),
        "Submitted": _wall_clock(view["submitted_at"], tz),
        "Occurred": _wall_clock(col("occurred_at"), tz),
        "Service": col("service").fillna(""),
        "Setting": labelled("setting"),
        "Shift": labelled("shift"),
        "Category": labelled("category"),
        "What happened": col("description").fillna(""),
        "Immediate action": col("immediate_action").fillna(""),
        "Potential harm": labelled("potential_harm"),
        "Contributing factors": labelled("contributing_factors"),
        "Reporter": reporter.fillna("Anonymous"),
        "Person ref": col("person_ref").fillna(""),
        "Data quality": view["dq_status"].str.capitalize(),
        "Missing information": view["blocked"].fillna(""),
        "Pathway": view["pathway_label"],
        "Priority": view["priority"],
        "Triage due": _wall_clock(view["triage_due"], tz),
        "Overdue": overdue.map({True: "overdue", False: ""}),
        "Notification risk": view["notification_reasons"].fillna(""),
        "Rule": view["rule_id"],
        "Patterns": view["pattern_ids"].map(lambda ids: ", ".join(ids) if ids else ""),
        "Suggested response": view["suggested_response"].fillna(""),
        "Check": view["check"].fillna(""),
        "Loop": view["loop"].fillna(""),
    })
    return out.set_index("Report ID", drop=False)


def patterns_rows(patterns: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    out = pd.DataFrame({
        "Pattern ID": patterns["pattern_id"],
        "Rule": patterns["rule_label"],
        "Similar on": patterns["key_label"],
        "Reports": patterns["count"].astype(int),
        "Report IDs": patterns["members"].map(", ".join),
        "First": _wall_clock(patterns["first_at"], tz),
        "Last": _wall_clock(patterns["last_at"], tz),
        "Status": patterns["display_status"],
        "Why": patterns["reason"].fillna(""),
    })
    return out.set_index("Pattern ID", drop=False)


def actions_rows(actions: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "Action ID": actions["action_id"],
        "Tracking": actions["tracking"],
        "Overdue": (actions["overdue"] | actions["verification_overdue"]).map(
            {True: "overdue", False: ""}),
    })
    return out.set_index("Action ID", drop=False)


def quality_rows(view: pd.DataFrame, held: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """Reports that are or were incomplete (a completed one stays, marked complete), reports
    with a value that was marked (unreadable, or read with a caveat such as a clock-change
    hour), reports whose reporter an email could not reach, and held reports with the
    reason they are held."""
    marked = view["problems"].map(bool)
    undelivered = view.get("undelivered", pd.Series("", index=view.index)).fillna("")
    rows = view[(view["dq_status"] == "incomplete") | view["completed_at"].notna() | marked
                | (undelivered != "")]
    undelivered = undelivered[rows.index]

    def labels(fields: list[str]) -> str:
        return ", ".join(rules.label(f) for f in fields)

    out = pd.DataFrame({
        "Report ID": rows["report_id"],
        "Category": rows["category"].map(lambda v: display(rules, "category", v)),
        "Service": rows["service"].fillna(""),
        "Status": rows["dq_status"].str.capitalize(),
        "Missing": rows["missing"].map(labels),
        "Invalid": rows["dq_messages"].map("; ".join).where(rows["invalid"].map(bool), ""),
        "Cannot proceed without": rows["blocked"].fillna(""),
        "Reporter contactable": rows["contactable"].map({True: "Yes", False: "No"}).where(
            undelivered == "", "No: " + undelivered),
        "Information requested": _dated(rows["info_requested"], "%Y-%m-%d", day=True),
        "Completed": _dated(rows["completed_at"], "%Y-%m-%d %H:%M"),
        "Marked values": rows["problems"].map("; ".join),
    })
    held_out = pd.DataFrame({
        "Report ID": held["report_id"],
        "Category": held["category"].map(lambda v: display(rules, "category", v)),
        "Service": held["service"].fillna(""),
        "Status": "Held",
        "Cannot proceed without": held["held"],
        "Marked values": held["problems"].map("; ".join),
    })
    return pd.concat([out, held_out]).set_index("Report ID", drop=False)


def closed_days(view: pd.DataFrame, patterns: pd.DataFrame, tz: ZoneInfo
                ) -> dict[str, dict[str, date | None]]:
    """Per archived sheet, the local day each row was closed (None: open). A report is
    closed as `report_closure` decides; a pattern when its status is closed (its review
    closed or an action on it verified, and no recurrence since)."""
    def day(at: Any) -> date | None:
        return pd.Timestamp(at).tz_convert(tz).date() if pd.notna(at) else None

    return {
        REPORTS.title: {rid: when if closed and isinstance(when, date) and pd.notna(when)
                        else None
                        for rid, closed, when in zip(view["report_id"], view["closed"],
                                                     view["closed_on"], strict=True)},
        PATTERNS.title: {pid: day(at) if status == "closed" else None
                         for pid, status, at in zip(patterns["pattern_id"], patterns["status"],
                                                    patterns["closed_at"], strict=True)},
    }
