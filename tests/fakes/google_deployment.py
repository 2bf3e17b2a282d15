"""Deployments on the Google fakes: a Google Form behind the Forms API, and optionally the
tracker in Google Sheets and mail through Gmail, with the pipeline run against them."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from openpyxl import load_workbook

from config import Config, load_config
from connectors.store import Store
from jobs.pipeline import RunSummary, run
from jobs.wiring import build
from tests.fakes.deployment import DEMO, MEDICATION, Q, answers
from tests.fakes.google import GoogleFakeServer, QuestionSpec
from tests.fakes.google_credentials import KEY_ENV, fake_clients

SOURCE = "near-miss-form"
NOW = "2026-11-23 09:00"


def qid(field: str) -> str:
    return f"q-{field.replace('_', '-')}"


class GoogleDeployment:
    """A deployment whose one source is a Google Form behind the Forms API fake."""

    def __init__(self, folder: Path, server: GoogleFakeServer) -> None:
        self.folder, self.server = folder, server
        factors = yaml.safe_load((DEMO.parent / "rules.yaml").read_text())["taxonomy"][
            "contributing_factors"]
        specs = [QuestionSpec(title, "checkbox" if field == "contributing_factors" else "text",
                              options=list(factors.values())
                              if field == "contributing_factors" else (),
                              question_id=qid(field)) for field, title in Q.items()]
        self.form_id = server.forms.create_form("Near-miss report", specs,
                                                collect_email="VERIFIED")
        self.ids = {title: qid(field) for field, title in Q.items()}
        data = yaml.safe_load(DEMO.read_text())
        data["sources"] = [{"name": SOURCE, "kind": "google_forms_api",
                            "form_id": self.form_id}]
        data["mail"]["recent_days"] = 3650
        data["mail"]["learning_briefs"] = []
        # Generated histories are many reports at once, a share of them incomplete: each
        # email sent as itself, not held or digested (tests/jobs/test_closed_loop.py).
        data["mail"]["hold_requests"] = None
        data["mail"]["digest_alerts_above"] = None
        data["governance"] = {"summary_sheet": False}  # tests/jobs/test_governance.py
        data["google"] = {"auth": "service_account", "key_file_env": KEY_ENV}
        self.data = data
        self.clients = fake_clients(server)

    def add(self, at: str, extra: dict[str, Any] | None = None, **fields: Any) -> str:
        by_title = answers(MEDICATION, **fields)
        given = {self.ids[title]: value for title, value in by_title.items()}
        made = self.server.forms.add_response(
            self.form_id, {**given, **(extra or {})}, email="kim@example.org",
            at=pd.Timestamp(at, tz="UTC").to_pydatetime())
        return made["responseId"]

    def config(self) -> Config:
        path = self.folder / "nearmiss.yaml"
        path.write_text(yaml.safe_dump(copy.deepcopy(self.data), sort_keys=False))
        return load_config(path)

    def run(self, now: str = NOW) -> RunSummary:
        config = self.config()
        return run(config, now=pd.Timestamp(now, tz="UTC").to_pydatetime(),
                   connectors=build(config, google=self.clients))

    def sheet(self, title: str = "Reports") -> dict[str, dict[str, Any]]:
        rows = list(load_workbook(self.folder / "tracker.xlsx")[title].iter_rows(
            values_only=True))
        return {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}

    @property
    def store(self) -> Store:
        return Store.open(self.folder / "nearmiss.db")


class WorkspaceDeployment(GoogleDeployment):
    """Form, tracker and mail all on Google."""

    def __init__(self, folder, server: GoogleFakeServer) -> None:
        super().__init__(folder, server)
        self.sheet_id = server.sheets.create_spreadsheet("Near-miss tracker", ["Sheet1"])
        self.data["tracker"] = {"kind": "google_sheets", "spreadsheet_id": self.sheet_id}
        self.data["mail"]["transport"] = {"kind": "gmail"}
        self.data["mail"]["max_per_run"] = 5000
        self.data["google"]["delegated_user"] = "nearmiss@oakfield-care.example"

    def rows(self, title: str = "Reports") -> list[list[Any]]:
        return self.server.sheets.get_values(self.sheet_id, f"'{title}'")

    def records(self, title: str = "Reports") -> dict[str, dict[str, Any]]:
        header, *body = self.rows(title)
        return {r[0]: dict(zip(header, r, strict=False)) for r in body}

    def type_into(self, key: str, **values: str) -> None:
        """A manager types into the Reports sheet, in the browser."""
        header, *body = self.rows()
        row = next(i for i, r in enumerate(body, start=2) if r and r[0] == key)
        for column, value in values.items():
            col = header.index(column)
            letter = chr(65 + col) if col < 26 else "A" + chr(65 + col - 26)
            self.server.sheets.set_values(self.sheet_id, f"Reports!{letter}{row}", [[value]],
                                          value_input_option="USER_ENTERED")

    def final_state(self) -> tuple:
        emails = Counter(str(m["X-Nearmiss-Key"]) for m in self.server.gmail.sent)
        tracker = {title: self.rows(title) for title in ("Reports", "Patterns",
                                                         "Data quality")}
        return tracker, emails
