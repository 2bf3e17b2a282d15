"""The tracker round trip: which columns the system owns, which the managers own, and the
smallest set of cell writes that brings the shared sheet up to date without touching
anything a manager typed.

Rows are matched by their key (Report ID, Pattern ID, Action ID), never by position:
managers sort, filter, insert their own columns and notes. A system cell is written only
when its value differs; a keyed row that disappeared is appended again (restored), with the
manager values last seen in it. Columns the system does not know are never read or written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.rules import Rules
from domain.records import Cell, SheetSpec, SheetWrite
from domain.text import sheet_text
from transforms.normalize import display, local_time

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
)

PATTERNS = SheetSpec(
    title="Patterns",
    key_column="Pattern ID",
    columns=["Pattern ID", "Rule", "Similar on", "Reports", "Report IDs", "First", "Last",
             "Status", "Why", "Review status", "Review owner", "Closed on", "Review notes"],
    manager_columns=["Review status", "Review owner", "Closed on", "Review notes"],
    dropdowns={"Review status": REVIEW_STATUS},
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


def cell_text(value: Cell) -> str:
    """A cell as comparable text: what a manager sees, whatever type the backend returns."""
    if isinstance(value, str):  # most cells: first, as every cell of every read comes here
        return value.strip()
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
        return value.strftime("%Y-%m-%d") if value.time() == time() else value.strftime(
            "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return str(value).strip()


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
    duplicates: list[str] = field(default_factory=list)


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
    state = SheetState(spec=spec, exists=True, columns=columns, width=len(header),
                       last_row=max(len(rows), 1))
    key_col = columns.get(spec.key_column)
    for r, row in enumerate(rows[1:], start=2):
        values = {t: cell_text(row[c - 1]) if c - 1 < len(row) else "" for t, c in columns.items()}
        if not any(values.values()):
            continue
        key = values.get(spec.key_column, "") if key_col else ""
        if not key:
            state.unkeyed.append((r, values))
        elif key in state.rows:
            state.duplicates.append(key)
        else:
            state.rows[key] = r
            state.values[key] = values
    return state


@dataclass(frozen=True)
class ManagerChange:
    sheet: str
    key: str
    column: str
    old: str
    new: str


def manager_changes(state: SheetState, known: dict[str, dict[str, str]]) -> tuple[
        dict[str, dict[str, str]], list[ManagerChange]]:
    """Manager values now in the sheet, merged over those last stored, and what changed.

    A row missing from the sheet keeps its stored values (it will be restored with them).
    """
    merged = {k: dict(v) for k, v in known.items()}
    changes: list[ManagerChange] = []
    for key, values in state.values.items():
        before = known.get(key, {})
        now = {c: values[c] for c in state.spec.manager_columns if c in values}
        for col, new in now.items():
            old = before.get(col, "")
            if new != old:
                changes.append(ManagerChange(state.spec.title, key, col, old, new))
        merged[key] = {**before, **now}
    return merged, changes


def plan_sheet(state: SheetState, desired: pd.DataFrame, manager: dict[str, dict[str, str]],
               known: set[str] = frozenset(),  # type: ignore[assignment]
               ) -> tuple[SheetWrite, list[str], list[str]]:
    """The writes that make the sheet show `desired` (system columns, indexed by key).

    Returns (write, keys appended as new, keys restored after a manager deleted them).
    `manager` holds the stored manager values used when a row has to be restored; `known`
    the keys written by earlier runs (a missing one was deleted, not never written).
    """
    spec = state.spec
    system = [c for c in spec.columns if c not in spec.manager_columns]
    write = SheetWrite(spec=spec, create=not state.exists)
    columns = dict(state.columns)
    width = state.width
    if not state.exists:
        columns = {t: i for i, t in enumerate(spec.columns, start=1)}
        width = len(spec.columns)
        write.header = dict(enumerate(spec.columns, start=1))
    else:
        for title in spec.columns:  # a column the sheet lacks goes at the right-hand end
            if title not in columns:
                width += 1
                columns[title] = width
                write.header[width] = title
    added: list[str] = []
    restored: list[str] = []
    desired = desired.reindex(columns=[c for c in system if c in desired.columns])
    records = desired.astype(object).where(desired.notna(), None).to_dict("index")
    for key, wanted in records.items():
        row = state.rows.get(key)
        if row is None:
            line: list[Cell] = [None] * width
            for title, col in columns.items():
                line[col - 1] = _cell(wanted.get(title)) if title in system else _cell(
                    manager.get(key, {}).get(title) or None)
            line[columns[spec.key_column] - 1] = key
            write.append.append(line)
            (restored if key in manager or key in known else added).append(key)
            continue
        have = state.values.get(key, {})
        for title, value in wanted.items():
            # Compared as the sheet holds it, and written in that form: text it cannot hold
            # as given would differ from what is read back, and be written on every run.
            if stored_text(value) != have.get(title, ""):
                write.cells[(row, columns[title])] = _cell(value)
    return write, added, restored


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


def merge_writes(*writes: SheetWrite) -> list[SheetWrite]:
    """One write per sheet, in the order the sheets were first mentioned."""
    out: dict[str, SheetWrite] = {}
    for w in writes:
        if w.spec.title not in out:
            out[w.spec.title] = SheetWrite(spec=w.spec)
        target = out[w.spec.title]
        target.create |= w.create
        target.header.update(w.header)
        target.cells.update(w.cells)
        target.append.extend(w.append)
    return [w for w in out.values() if w]


# -- what the system writes in each sheet ------------------------------------------------------


def reports_rows(view: pd.DataFrame, rules: Rules, tz: ZoneInfo, now: pd.Timestamp,
                 ) -> pd.DataFrame:
    """System columns of the Reports sheet, one row per report, indexed by Report ID.

    `view` joins reports with checks, triage, closure (check, suggested_response,
    triaged), pattern ids and the loop status.
    """
    def col(name: str) -> pd.Series:
        return view[name] if name in view else pd.Series(None, index=view.index, dtype=object)

    def labelled(field: str) -> pd.Series:
        return col(field).map(lambda v: display(rules, field, v))

    reporter = col("reporter_name").where(col("reporter_name").notna(), col("reporter_email"))
    overdue = (view["triage_due"] < now) & ~view["triaged"]
    out = pd.DataFrame({
        "Report ID": view["report_id"],
        "Version": view["version"].astype(int),
        "Submitted": view["submitted_at"].map(lambda t: local_time(t, tz)),
        "Occurred": col("occurred_at").map(lambda t: local_time(t, tz)),
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
        "Triage due": view["triage_due"].map(lambda t: local_time(t, tz)),
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
        "First": patterns["first_at"].map(lambda t: local_time(t, tz)),
        "Last": patterns["last_at"].map(lambda t: local_time(t, tz)),
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
        "Information requested": rows["info_requested"].fillna(""),
        "Completed": rows["completed_at"].fillna(""),
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
