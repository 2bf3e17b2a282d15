"""`nearmiss doctor`: one line per check, the fix on every failure, nothing changed.

Local connectors run on real files and a local SMTP server; Google connectors against the
fake over real HTTP with a service-account key whose token endpoint is the fake.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
import yaml

from config import Config, load_config
from config.settings import Source, Transport
from config.settings import Tracker as TrackerKind
from connectors.google_auth import SCOPES, GoogleClients
from jobs.cli import main
from jobs.doctor import CHECKS, doctor
from jobs.wiring import CONNECTORS
from tests.fakes.deployment import DEMO, Deployment, Q
from tests.fakes.google import GoogleFakeServer, QuestionSpec
from tests.fakes.google_credentials import (
    FAST,
    KEY_ENV,
    SA_EMAIL,
    write_service_account_key,
)
from tests.fakes.smtp import SmtpServer


def run_doctor(config: Config, clients: GoogleClients | None = None) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    problems = doctor(config, clients=clients, out=lines.append)
    assert all(line.split(":")[0] in {"ok", "warn", "FAIL", "skip", "doctor"} for line in lines)
    return problems, lines


# -- local connectors -------------------------------------------------------------------------


def test_a_healthy_local_deployment_has_no_problems_and_changes_nothing(tmp_path):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-16 10:00")
    config = dep.config()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    problems, lines = run_doctor(config)
    assert problems == []
    assert [line.split(": ")[1] for line in lines if line.startswith("ok")] == [
        "store", "source google-form", "source microsoft-form", "tracker", "mail"]
    assert "source google-form: exports/near-miss-google-form.csv is readable" in (
        "\n".join(lines).replace(str(tmp_path) + "/", ""))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert lines[-1] == "doctor: everything the config needs is in place"


def test_clock_change_hours_and_dates_in_both_orders_are_warnings_not_a_crash(tmp_path):
    dep = Deployment(tmp_path)
    for occurred in ["25/10/2026 10:00", "10/18/2026 10:00", "3/4/2026 10:00"]:
        dep.add_google("2026-11-01 10:00", occurred_at=occurred)
    dep.google_rows[0]["Timestamp"] = "2026/10/25 1:30:00 AM"  # the autumn hour, twice
    dep.google_rows[1]["Timestamp"] = ""
    dep.write_exports()
    problems, lines = run_doctor(dep.config())
    assert problems == []
    assert "warn: source google-form: when it happened: dates in both day orders " \
        "('25/10/2026 10:00' is day-first but '10/18/2026 10:00' is month-first); the " \
        "ambiguous ones are marked" in lines


def test_missing_export_and_unusable_folders_fail_with_the_fix(tmp_path):
    dep = Deployment(tmp_path)
    (tmp_path / "exports" / "near-miss-microsoft-form.xlsx").unlink()
    (tmp_path / "not-a-folder").write_text("x")
    dep.data["mail"]["transport"] = {"kind": "eml_folder", "path": "not-a-folder/outbox"}
    (tmp_path / "tracker.xlsx").write_text("this is not a workbook")
    problems, lines = run_doctor(dep.config())
    assert len(problems) == 3
    missing = next(p for p in problems if p.startswith("source microsoft-form"))
    assert missing == (f"source microsoft-form: export file not found: {tmp_path}/exports/"
                       "near-miss-microsoft-form.xlsx — fix: save the form's responses export "
                       "there, or correct sources[1].path")
    assert any(p.startswith("tracker: the tracker") and "not a readable Excel workbook" in p
               for p in problems)
    assert any(p.startswith(f"mail: {tmp_path}/not-a-folder is not a folder — fix:")
               for p in problems)
    assert f"FAIL: {missing}" in lines


def test_unmapped_questions_are_a_warning(tmp_path):
    dep = Deployment(tmp_path)
    dep.google_rows.append({"Timestamp": "2026/11/20 10:00:00 AM GMT",
                            "Was anyone else nearby?": "No"})
    dep.write_exports()
    problems, lines = run_doctor(dep.config())
    assert problems == []
    assert ("warn: source google-form: 1 question(s) not in the mapping (reports that answer "
            "them are held until mapped): 'Was anyone else nearby?'") in lines


def test_option_texts_no_value_covers_are_a_warning_naming_the_fix(tmp_path):
    dep = Deployment(tmp_path)
    for shift in ("Nights (20:00-08:00)", "Nights (20:00-08:00)", "Late (2pm-10pm)"):
        dep.add_google("2026-11-20 10:00", shift=shift)
    problems, lines = run_doctor(dep.config())
    assert problems == []
    assert ("warn: source google-form: 2 answer(s) to 'shift' match no value: "
            "'Nights (20:00-08:00)' (2); map them under value_maps.shift (`nearmiss fields` "
            "lists the values)") in lines
    dep.data["value_maps"] = {"shift": {"Nights (20:00-08:00)": "night"}}
    problems, lines = run_doctor(dep.config())
    assert not any("match no value" in line for line in lines)


def test_smtp_connects_logs_in_and_quits(tmp_path, monkeypatch):
    monkeypatch.setenv("NEARMISS_TEST_SMTP", "right")
    with SmtpServer(username="loop", password="right") as server:
        dep = Deployment(tmp_path)
        dep.data["mail"]["transport"] = {
            "kind": "smtp", "host": "127.0.0.1", "port": server.port, "security": "none",
            "username": "loop", "password_env": "NEARMISS_TEST_SMTP", "timeout_seconds": 5}
        problems, lines = run_doctor(dep.config())
        assert problems == []
        assert any(line.startswith(f"ok: mail: SMTP server 127.0.0.1:{server.port} accepted "
                                   "the connection and the login of loop (NOOP 250)")
                   for line in lines)
        monkeypatch.setenv("NEARMISS_TEST_SMTP", "wrong")
        problems, _ = run_doctor(dep.config())
        assert problems == [f"mail: the SMTP server 127.0.0.1:{server.port} refused the login "
                            "of loop: check the user and the password variable"]
        assert server.messages == []


def test_cli_exit_code(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.config()
    config = str(tmp_path / "nearmiss.yaml")
    assert main(["--config", config, "doctor"]) == 0
    (tmp_path / "exports" / "near-miss-google-form.csv").unlink()
    assert main(["--config", config, "doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: source google-form: export file not found" in out
    assert out.strip().endswith("doctor: 1 problem(s)")


# -- Google connectors -------------------------------------------------------------------------


def google_config(folder: Path, form_id: str, spreadsheet_id: str) -> Config:
    data = yaml.safe_load(DEMO.read_text())
    data["sources"] = [{"name": "near-miss-form", "kind": "google_forms_api",
                        "form_id": form_id}]
    data["tracker"] = {"kind": "google_sheets", "spreadsheet_id": spreadsheet_id}
    data["mail"]["sender"] = "Nearmiss Loop <sender@example.com>"
    data["mail"]["transport"] = {"kind": "gmail"}
    data["google"] = {"auth": "service_account", "key_file_env": KEY_ENV,
                      "delegated_user": "sender@example.com"}
    path = folder / "nearmiss.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(data), sort_keys=False))
    return load_config(path)


@pytest.fixture
def google(tmp_path, monkeypatch) -> Iterator[tuple[GoogleFakeServer, Config]]:
    with GoogleFakeServer(require_auth=True, seed=9) as server:
        monkeypatch.setenv(KEY_ENV, str(write_service_account_key(tmp_path / "sa.json",
                                                                  server.url + "/token")))
        form_id = server.forms.create_form("Near-miss report", [
            QuestionSpec(title, question_id=f"q{i}") for i, title in enumerate(Q.values())])
        sheet_id = server.sheets.create_spreadsheet("Near-miss tracker", ["Reports"])
        yield server, google_config(tmp_path, form_id, sheet_id)


def clients_for(server: GoogleFakeServer, config: Config) -> GoogleClients:
    return GoogleClients.from_settings(config.settings.google, ["forms", "sheets", "gmail"],
                                       endpoint=server.url, **FAST)


def test_google_deployment_is_checked_without_changing_anything(google):
    server, config = google
    sheet_id = config.settings.tracker.spreadsheet_id
    before = server.sheets.metadata(sheet_id)
    problems, lines = run_doctor(config, clients_for(server, config))
    assert problems == [], lines
    text = "\n".join(lines)
    assert f"ok: Google credentials: {SA_EMAIL} obtained a token for forms, sheets" in text
    assert (f"ok: source near-miss-form: form 'Near-miss report' ({len(Q)} questions) is "
            f"readable by {SA_EMAIL} and has no responses yet") in text
    assert (f"ok: tracker: spreadsheet 'Near-miss tracker' is readable and editable by "
            f"{SA_EMAIL} (sheets: Reports)") in text
    assert ("ok: mail: a gmail.send token for sender@example.com was issued (nothing was "
            "sent)") in text
    assert server.sheets.metadata(sheet_id) == before and server.gmail.sent == []
    assert server.counters["sheets.spreadsheets.batchUpdate"] == 1
    assert server.counters["forms.forms.responses.list"] == 1
    assert [r.param("pageSize") for r in server.requests
            if r.method_id == "forms.forms.responses.list"] == ["1"]
    data, mail = server.tokens.issued
    assert data.scopes == set(SCOPES["forms"] + SCOPES["sheets"]) and data.subject is None
    assert mail.scopes == set(SCOPES["gmail"]) and mail.subject == "sender@example.com"
    server.assert_no_violations()


def test_unshared_form_and_sheet_print_the_fix(google):
    server, config = google
    server.sheets.denied.add(config.settings.tracker.spreadsheet_id)
    server.forms.denied.add(config.settings.sources[0].form_id)
    problems, lines = run_doctor(config, clients_for(server, config))
    form_id, sheet_id = config.settings.sources[0].form_id, config.settings.tracker.spreadsheet_id
    assert problems == [
        f"source near-miss-form: the account {SA_EMAIL} cannot read form {form_id} — fix: "
        "share the form with it (or add it as a collaborator)",
        f"tracker: the account {SA_EMAIL} cannot open spreadsheet {sheet_id} — fix: share the "
        f"spreadsheet with {SA_EMAIL} as an Editor"]
    assert f"FAIL: {problems[1]}" in lines
    server.sheets.denied.clear()
    server.forms.denied.clear()
    server.sheets.spreadsheets.pop(sheet_id)
    problems, _ = run_doctor(config, clients_for(server, config))
    assert problems == [f"tracker: spreadsheet {sheet_id} not found — fix: check "
                        "tracker.spreadsheet_id (the id between /d/ and /edit in the sheet's "
                        "address)"]


def test_gmail_without_delegation_prints_the_fix(google):
    server, config = google
    key = GoogleClients.from_settings(config.settings.google, ["gmail"], **FAST)
    clients = GoogleClients(None, gmail_credentials=key.gmail_credentials, endpoint=server.url,
                            delegated_user="sender@example.com", **FAST)
    server.tokens.fail_next(1, "unauthorized_client")
    problems, _ = run_doctor(config, clients)
    assert [p for p in problems if p.startswith("mail:")] == [
        "mail: no gmail.send token for sender@example.com (Gmail credentials: Google refused "
        "the credentials (unauthorized_client: Client is unauthorized to retrieve access "
        "tokens using this method, or client not authorized for any of the scopes "
        "requested.): check the key file, or run `nearmiss auth google` again) — fix: grant "
        "the gmail.send scope to the service account's domain-wide delegation for "
        "sender@example.com (Admin console > Security > API controls > Domain-wide "
        "delegation)"]


def test_credentials_are_checked_first_and_their_failure_skips_google(google, monkeypatch):
    server, config = google
    monkeypatch.delenv(KEY_ENV)
    problems, lines = run_doctor(config)  # no clients given: from the config's google section
    assert problems == [f"Google credentials: environment variable {KEY_ENV} is not set — "
                        f"fix: export {KEY_ENV}=/path/to/service-account-key.json"]
    assert "skip: source near-miss-form: not tried without working Google credentials" in lines
    assert server.counters.total == 0
    monkeypatch.setenv(KEY_ENV, str(Path(config.path).parent / "client_secret.json"))
    Path(config.path).with_name("client_secret.json").write_text('{"installed": {}}')
    problems, _ = run_doctor(config)
    assert problems == [f"Google credentials: {config.path.parent}/client_secret.json is not "
                        "a service account key file — fix: download a JSON key for the "
                        "service account (not an OAuth client file)"]


def test_a_key_file_that_is_not_json_fails_with_the_fix(google, monkeypatch):
    server, config = google
    key = Path(config.path).with_name("truncated.json")
    key.write_text('{"type": "service_acc')
    monkeypatch.setenv(KEY_ENV, str(key))
    problems, lines = run_doctor(config)
    assert problems == [f"Google credentials: cannot read {key} as JSON (JSONDecodeError) — "
                        "fix: download the service account's JSON key again"]
    assert "skip: tracker: not tried without working Google credentials" in lines
    assert "skip: mail: not tried without working Google credentials" in lines
    assert server.counters.total == 0


# -- one registry of kinds --------------------------------------------------------------------


def test_every_kind_of_the_config_is_built_by_wiring_and_checked_by_doctor():
    kinds = {model for part in (Source, TrackerKind, Transport)
             for model in get_args(get_args(part)[0])}
    assert set(CONNECTORS) == kinds
    assert set(CHECKS) == kinds


# -- Microsoft 365 ---------------------------------------------------------------------------


def microsoft(tmp_path: Path, roles: tuple[str, ...], grant: bool = True):
    from tests.fakes.microsoft import MicrosoftFakeServer
    from tests.fakes.microsoft_deployment import MicrosoftDeployment

    server = MicrosoftFakeServer().start()
    dep = MicrosoftDeployment(tmp_path, server)
    server.identity.apps[dep.data["microsoft"]["client_id"]].roles = roles
    if not grant:
        for site in server.graph.sites:
            server.graph.grant_site(site, dep.data["microsoft"]["client_id"], roles=())
    return server, dep


def test_a_healthy_microsoft_deployment_names_its_permissions_and_writes_nothing(tmp_path):
    server, dep = microsoft(tmp_path, ("Sites.Selected", "Mail.Send"))
    with server:
        dep.add("2026-11-16 10:00")
        before = server.graph.item_json(dep.tracker)["cTag"]
        lines: list[str] = []
        problems = doctor(dep.config(), out=lines.append, graph=dep.clients)
        assert problems == [], lines
        assert any("application permissions: Mail.Send, Sites.Selected" in line
                   for line in lines)
        assert any("source near-miss-form: the response workbook is readable (1 responses"
                   in line for line in lines)
        assert server.graph.item_json(dep.tracker)["cTag"] == before
        assert not server.graph.sent and not server.graph.open_sessions()
        server.assert_no_violations()


def test_doctor_names_the_site_grant_a_sites_selected_app_lacks(tmp_path):
    server, dep = microsoft(tmp_path, ("Sites.Selected", "Mail.Send"), grant=False)
    with server:
        lines: list[str] = []
        problems = doctor(dep.config(), out=lines.append, graph=dep.clients)
        assert [p.split(":")[0] for p in problems] == ["source near-miss-form", "tracker"]
        assert all("— fix: an admin grants the app" in p and "/permissions" in p
                   for p in problems)
        assert "Grant-PnPAzureADAppSitePermission" in problems[0]


def test_doctor_names_a_missing_permission_with_the_consent_link(tmp_path):
    server, dep = microsoft(tmp_path, ("Files.ReadWrite.All",))
    with server:
        lines: list[str] = []
        problems = doctor(dep.config(), out=lines.append, graph=dep.clients)
        assert len(problems) == 1 and problems[0].startswith("mail: the token lacks a "
                                                            "permission to send as nearmiss@")
        assert f"/adminconsent?client_id={dep.data['microsoft']['client_id']}" in problems[0]


def test_doctor_names_a_wrong_client_secret(tmp_path, monkeypatch):
    from tests.fakes.microsoft_deployment import SECRET_ENV

    server, dep = microsoft(tmp_path, ("Sites.Selected", "Mail.Send"))
    with server:
        monkeypatch.setenv(SECRET_ENV, "not-the-secret")
        lines: list[str] = []
        problems = doctor(dep.config(), out=lines.append)  # the real wiring, from the config
        assert problems[0].startswith("Microsoft credentials: Microsoft sign-in refused: "
                                      "the client secret is wrong or expired")
        assert "skip: tracker: not tried without working Microsoft credentials" in lines
