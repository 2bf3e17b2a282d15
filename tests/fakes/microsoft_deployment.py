"""Deployments on the Microsoft 365 fakes: a Microsoft Form's response workbook in
SharePoint, the tracker as an Excel workbook beside it and mail through Exchange Online,
all reached through Graph with a real msal token from the identity fake."""

from __future__ import annotations

import copy
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from config import Config, load_config
from config.settings import MicrosoftSettings
from connectors.graph import GraphClients
from connectors.store import Store
from jobs.pipeline import RunSummary, run
from jobs.wiring import build
from tests.fakes.deployment import DEMO, MEDICATION, TZ, Q, answers
from tests.fakes.microsoft import MicrosoftFakeServer

CLIENT_ID = "5f0c7d1e-2a4b-4c6d-8e0f-1a2b3c4d5e6f"
SECRET_ENV, SECRET = "NEARMISS_TEST_MS_SECRET", "fake-client-secret"
HOST, SITE = "oakfieldcare.sharepoint.com", "/sites/quality"
SENDER = "nearmiss@oakfield-care.example"
FORMS_PATH, TRACKER_PATH = "Near miss report.xlsx", "Near miss tracker.xlsx"
META = ["ID", "Start time", "Completion time", "Email", "Name"]
NOW = "2026-11-23 09:00"


def tenant(server: MicrosoftFakeServer, roles: tuple[str, ...] = ("Sites.Selected",
                                                                  "Mail.Send")) -> str:
    """The app registered with a secret and `roles` consented, a SharePoint site it was
    granted, and the mailbox it sends as. Returns the site's id."""
    server.identity.register_app(CLIENT_ID, secret=SECRET, roles=roles)
    site = server.graph.add_site(HOST, SITE)
    server.graph.grant_site(site, CLIENT_ID)
    server.graph.add_user(SENDER)
    return site


def microsoft_section(server: MicrosoftFakeServer, folder: Path, **more: Any) -> dict[str, Any]:
    """The config's `microsoft:` section for the fake: both endpoints are settings."""
    return {"tenant": server.identity.tenant_id, "client_id": CLIENT_ID,
            "client_secret_env": SECRET_ENV, "token_cache": str(folder / "ms-token.json"),
            "graph_endpoint": server.url, "login_endpoint": server.url, **more}


def graph_clients(server: MicrosoftFakeServer, folder: Path, **options: Any) -> GraphClients:
    """The clients a run builds from the config (real msal, real office365), with no
    waiting between retries."""
    os.environ[SECRET_ENV] = SECRET
    settings = MicrosoftSettings.model_validate(microsoft_section(server, folder))
    return GraphClients.from_settings(settings, **{"sleep": lambda s: None, **options})


def form_row(n: int, at: datetime, values: dict[str, Any], email: str | None = None
             ) -> list[Any]:
    """One row as Forms writes it: local wall-clock times, ticked options ending in ";"."""
    local = pd.Timestamp(at).tz_convert(TZ).tz_localize(None).to_pydatetime()
    cells = [";".join(v) + ";" if isinstance(v, list) else v for v in values.values()]
    return [n, local, local, email or "anonymous", None, *cells]


class MicrosoftDeployment:
    """Form, tracker and mail all on Microsoft 365."""

    def __init__(self, folder: Path, server: MicrosoftFakeServer) -> None:
        self.folder, self.server = folder, server
        site = tenant(server)
        drive = server.graph.drive_of_site(site)
        self.questions = list(Q.values())
        self.form = server.graph.forms_workbook(drive, FORMS_PATH, META + self.questions, [])
        self.tracker = server.graph.add_workbook(drive, TRACKER_PATH, {"Sheet1": []})
        self.responses = 0
        data = yaml.safe_load(DEMO.read_text())
        place = {"site": HOST + SITE}
        data["sources"] = [{"name": "near-miss-form", "kind": "microsoft_forms_graph",
                            "workbook": {**place, "path": FORMS_PATH}}]
        data["tracker"] = {"kind": "excel_graph", "workbook": {**place, "path": TRACKER_PATH}}
        data["mail"].update({"sender": f"Nearmiss Loop <{SENDER}>", "recent_days": 3650,
                             "learning_briefs": [], "hold_requests": None,
                             "digest_alerts_above": None, "max_per_run": 5000,
                             "transport": {"kind": "graph_mail"}})
        data["governance"] = {"summary_sheet": False}  # tests/jobs/test_governance.py
        data["microsoft"] = microsoft_section(server, folder)
        self.data = data
        self.clients = graph_clients(server, folder)

    def add(self, at: str, **fields: Any) -> None:
        self.responses += 1
        values = {title: answers(MEDICATION, **fields).get(title) for title in self.questions}
        self.server.graph.append_rows(self.form, "Sheet1", [form_row(
            self.responses, pd.Timestamp(at, tz="UTC"), values, "kim@example.org")])

    def config(self) -> Config:
        path = self.folder / "nearmiss.yaml"
        path.write_text(yaml.safe_dump(copy.deepcopy(self.data), sort_keys=False))
        return load_config(path)

    def run(self, now: str = NOW) -> RunSummary:
        config = self.config()
        return run(config, now=pd.Timestamp(now, tz="UTC").to_pydatetime(),
                   connectors=build(config, microsoft=self.clients))

    def rows(self, title: str = "Reports") -> list[list[Any]]:
        return self.server.graph.cells(self.tracker, title)

    def records(self, title: str = "Reports") -> dict[str, dict[str, Any]]:
        header, *body = self.rows(title)
        return {r[0]: dict(zip(header, r, strict=False)) for r in body}

    def type_into(self, key: str, **values: str) -> None:
        """A manager types into the Reports sheet, in Excel."""
        header, *body = self.rows()
        row = next(i for i, r in enumerate(body, start=2) if r and r[0] == key)
        for column, value in values.items():
            self.server.graph.set_cell(self.tracker, "Reports", row, header.index(column) + 1,
                                       value)

    def final_state(self) -> tuple:
        emails = Counter(str(m.message["X-Nearmiss-Key"]) for m in self.server.graph.sent)
        tracker = {title: self.rows(title) for title in ("Reports", "Patterns",
                                                         "Data quality")}
        return tracker, emails

    @property
    def store(self) -> Store:
        return Store.open(self.folder / "nearmiss.db")


def write_certificate(path: Path) -> str:
    """A self-signed certificate and its private key in one PEM file, as the README says to
    make one; returns its SHA-1 thumbprint (hex), as the app registration shows it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nearmiss")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime(2026, 1, 1)).not_valid_after(datetime(2028, 1, 1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    return cert.fingerprint(hashes.SHA1()).hex().upper()
