"""A whole deployment in a temporary folder: real export files that tests add responses to,
a real config YAML, SQLite store, XLSX tracker and outbox, and the pipeline run on them."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from openpyxl import Workbook, load_workbook

from config import Config, load_config
from jobs.pipeline import RunSummary, run

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
TZ = ZoneInfo("Europe/London")

Q = {  # canonical field -> question title on the demo forms
    field: question for question, field in yaml.safe_load(DEMO.read_text())["mapping"].items()
}

# A complete medication report: every field the minimum dataset and the category ask for.
MEDICATION = {
    "category": "Medication", "description": "MAR showed the evening dose as given already",
    "occurred_at": "2026-11-15 20:10",
    "immediate_action": "Paused the round and called the on-call nurse",
    "service": "Oak House", "setting": "Residential home", "shift": "Late (2pm-10pm)",
    "person_ref": "OH-014", "potential_harm": "Moderate",
    "conditions": "Handover note missed the pharmacy delivery",
    "contributing_factors": ["Handover", "Time pressure"], "workflow_stage": "Handover",
    "staff_involved": "JT, AB", "medication_name": "Amlodipine 5mg",
    "scheduled_time": "20:00", "record_discrepancy": "Signed for 08:00 twice",
    "clinical_advice": "Sought", "supervisor_notified": "Yes",
}


def answers(base: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Form answers (question title -> text) from canonical field values."""
    merged = {**(base or MEDICATION), **fields}
    return {Q[f]: v for f, v in merged.items() if v is not None}


def google_stamp(at: datetime) -> str:
    local = pd.Timestamp(at).tz_convert(TZ)
    offset = local.utcoffset().total_seconds() / 3600
    zone = "GMT" if offset == 0 else f"GMT+{offset:g}"
    return local.strftime("%Y/%m/%d %-I:%M:%S %p ") + zone


class Deployment:
    def __init__(self, folder: Path, **overrides: Any) -> None:
        self.folder = folder
        self.google_rows: list[dict[str, Any]] = []
        self.ms_rows: list[dict[str, Any]] = []
        data = yaml.safe_load(DEMO.read_text())
        data["mail"]["recent_days"] = 3650
        data["mail"]["learning_briefs"] = []  # tests that want the brief add a team
        # and those that want the governance emails and the Summary sheet turn them on
        data["governance"] = {"summary_sheet": False}
        for key, value in overrides.items():
            data[key] = value
        self.data = data
        (folder / "exports").mkdir(parents=True, exist_ok=True)
        self.write_exports()

    # -- the forms ---------------------------------------------------------------------------

    def add_google(self, at: str | datetime, email: str | None = "kim@example.org",
                   **fields: Any) -> None:
        at = pd.Timestamp(at, tz="UTC") if pd.Timestamp(at).tzinfo is None else pd.Timestamp(at)
        row = {"Timestamp": google_stamp(at), "Email Address": email or ""}
        for question, value in answers(**fields).items():
            row[question] = ", ".join(value) if isinstance(value, list) else value
        self.google_rows.append(row)
        self.write_exports()

    def add_microsoft(self, at: str | datetime, email: str = "anonymous", name: str = "",
                      **fields: Any) -> int:
        local = pd.Timestamp(at, tz="UTC").tz_convert(TZ).tz_localize(None).to_pydatetime()
        row = {"ID": len(self.ms_rows) + 1, "Start time": local, "Completion time": local,
               "Email": email, "Name": name, "Last modified time": None}
        for question, value in answers(**fields).items():
            row[question] = "".join(f"{v};" for v in value) if isinstance(value, list) else value
        self.ms_rows.append(row)
        self.write_exports()
        return row["ID"]

    def edit_microsoft(self, response_id: int, at: str, **fields: Any) -> None:
        row = self.ms_rows[response_id - 1]
        row["Last modified time"] = pd.Timestamp(at, tz="UTC").tz_convert(TZ).tz_localize(
            None).to_pydatetime()
        for question, value in answers({}, **fields).items():
            row[question] = "".join(f"{v};" for v in value) if isinstance(value, list) else value
        self.write_exports()

    def write_exports(self) -> None:
        columns = ["Timestamp", "Email Address", *Q.values()]
        columns += [c for r in self.google_rows for c in r if c not in columns]
        pd.DataFrame(self.google_rows, columns=columns).to_csv(
            self.folder / "exports" / "near-miss-google-form.csv", index=False)
        wb = Workbook()
        ws = wb.active
        header = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time",
                  *Q.values()]
        ws.append(header)
        for row in self.ms_rows:
            ws.append([row.get(h) for h in header])
        wb.save(self.folder / "exports" / "near-miss-microsoft-form.xlsx")

    # -- config and runs ---------------------------------------------------------------------

    def config(self) -> Config:
        path = self.folder / "nearmiss.yaml"
        path.write_text(yaml.safe_dump(copy.deepcopy(self.data), sort_keys=False))
        return load_config(path)

    def run(self, now: str = "2026-11-23 09:00", **kwargs: Any) -> RunSummary:
        return run(self.config(), now=pd.Timestamp(now, tz="UTC").to_pydatetime(), **kwargs)

    # -- what it produced --------------------------------------------------------------------

    @property
    def tracker_path(self) -> Path:
        return self.folder / "tracker.xlsx"

    def sheet(self, title: str = "Reports") -> list[dict[str, Any]]:
        """A sheet's rows by header, a date cell as the text it shows ("2026-11-20 10:07",
        a day alone "2026-11-20"), as a manager reads them."""
        ws = load_workbook(self.tracker_path)[title]
        rows = [[_shown(c) for c in row] for row in ws.iter_rows()]
        return [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]

    def sheet_values(self) -> dict[str, list[tuple]]:
        wb = load_workbook(self.tracker_path)
        return {ws.title: list(ws.iter_rows(values_only=True)) for ws in wb}

    def edit_tracker(self, title: str, key: str, **values: Any) -> None:
        """Type into the tracker as a manager would (columns by header)."""
        wb = load_workbook(self.tracker_path)
        ws = wb[title]
        header = [c.value for c in ws[1]]
        for row in ws.iter_rows(min_row=2):
            if row[0].value == key or (key == "" and all(c.value is None for c in row)):
                for column, value in values.items():
                    row[header.index(column)].value = value
                break
        else:
            ws.append([values.get(h) for h in header])
        wb.save(self.tracker_path)

    def emails(self) -> list[Path]:
        return sorted((self.folder / "outbox").glob("*.eml"))


def _shown(cell: Any) -> Any:
    """A cell's value; a date as the text its number format shows."""
    if isinstance(cell.value, datetime):
        time = "h" in cell.number_format.lower()
        return cell.value.strftime("%Y-%m-%d %H:%M" if time else "%Y-%m-%d")
    return cell.value
