"""Google credentials against the fake token endpoint: least-privilege scopes per API, the
delegated subject on Gmail only, one-line errors, the user-token path, the one-time consent,
and the config checks that catch missing credentials before a run.

"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from config.settings import ConfigError, GoogleSettings, load_config
from connectors.errors import ApiError, NearmissError
from connectors.google_auth import SCOPES, GoogleClients, authorise_user
from connectors.google_forms import GoogleFormsSource
from connectors.mail import build_message
from tests.fakes.google import GoogleFakeServer, QuestionSpec
from tests.fakes.google_credentials import (
    FAST,
    KEY_ENV,
    SA_EMAIL,
    write_service_account_key,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "google.example.yaml"
FORMS = set(SCOPES["forms"])
SHEETS = set(SCOPES["sheets"])
GMAIL = set(SCOPES["gmail"])


NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[GoogleFakeServer]:
    with GoogleFakeServer(require_auth=True, seed=3) as srv:
        yield srv


@pytest.fixture
def key_file(tmp_path, server, monkeypatch) -> Path:
    path = write_service_account_key(tmp_path / "sa.json", server.url + "/token")
    monkeypatch.setenv(KEY_ENV, str(path))
    return path


def make_form(server: GoogleFakeServer) -> str:
    form_id = server.forms.create_form("Near-miss report", [
        QuestionSpec("What happened?", "paragraph", question_id="q1")])
    server.forms.add_response(form_id, {"q1": "Wet floor by the lift"})
    return form_id


def send_one(clients: GoogleClients) -> None:
    from connectors.gmail import GmailTransport

    message = build_message({"key": "ack:NM-000001", "recipients": ["kim@example.org"],
                             "subject": "Thanks", "body_text": "Thank you"},
                            "Loop <sender@example.com>", None, NOW)
    with GmailTransport(clients).connect() as send:
        send(message)


def test_each_api_gets_only_its_scopes_and_only_gmail_is_delegated(server, key_file):
    settings = GoogleSettings(key_file_env=KEY_ENV, delegated_user="sender@example.com")
    form_id = make_form(server)
    sheet_id = server.sheets.create_spreadsheet("Tracker", ["Reports"])

    forms_only = GoogleClients.from_settings(settings, ["forms"], endpoint=server.url, **FAST)
    assert forms_only.account == SA_EMAIL
    GoogleFormsSource("form", form_id, forms_only).pull(None)
    (token,) = server.tokens.issued
    assert token.scopes == FORMS and token.subject is None and token.issuer == SA_EMAIL

    everything = GoogleClients.from_settings(settings, ["forms", "sheets", "gmail"],
                                             endpoint=server.url, **FAST)
    GoogleFormsSource("form", form_id, everything).pull(None)
    sheets = everything.service("sheets", "v4")
    everything.call("read", sheets.spreadsheets().get(spreadsheetId=sheet_id).execute)
    send_one(everything)
    data_token, gmail_token = server.tokens.issued[1:]
    assert data_token.scopes == FORMS | SHEETS and data_token.subject is None
    assert gmail_token.scopes == GMAIL and gmail_token.subject == "sender@example.com"
    used = {(u.method_id, frozenset(u.scopes)) for u in server.auth_log}
    assert ("gmail.users.messages.send", frozenset(GMAIL)) in used
    assert ("sheets.spreadsheets.get", frozenset(FORMS | SHEETS)) in used

    sheets_only = GoogleClients.from_settings(settings, ["sheets"], endpoint=server.url, **FAST)
    sheets_only.call("read", sheets_only.service("sheets", "v4").spreadsheets().get(
        spreadsheetId=sheet_id).execute)
    assert server.tokens.issued[-1].scopes == SHEETS
    assert len(server.gmail.sent) == 1
    server.assert_no_violations()


def test_a_forms_token_cannot_send_mail(server, key_file):
    settings = GoogleSettings(key_file_env=KEY_ENV)
    clients = GoogleClients.from_settings(settings, ["forms"], endpoint=server.url, **FAST)
    from connectors.errors import MailError

    clients.gmail_credentials = clients.credentials  # a misuse: Gmail with the Forms token
    with pytest.raises(MailError) as err:
        send_one(clients)
    assert err.value.stop_run and "insufficient authentication scopes" in str(err.value)


def test_credential_problems_are_one_line(tmp_path, monkeypatch):
    settings = GoogleSettings(key_file_env=KEY_ENV)
    monkeypatch.delenv(KEY_ENV, raising=False)
    problems = []
    with pytest.raises(NearmissError, match=f"environment variable {KEY_ENV} is not set"
                       ) as err:
        GoogleClients.from_settings(settings)
    problems.append(err.value)
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(NearmissError, match=r"missing\.json, which does not exist") as err:
        GoogleClients.from_settings(settings)
    problems.append(err.value)
    for content in ("not json at all", json.dumps({"type": "authorized_user",
                                                   "client_id": "x"}), "{}"):
        (tmp_path / "bad.json").write_text(content)
        monkeypatch.setenv(KEY_ENV, str(tmp_path / "bad.json"))
        with pytest.raises(NearmissError, match="is not a service account key file") as err:
            GoogleClients.from_settings(settings)
        problems.append(err.value)
    user = GoogleSettings(auth="user", token_file=tmp_path / "nope.json")
    with pytest.raises(NearmissError, match="run `nearmiss auth google`") as err:
        GoogleClients.from_settings(user)
    problems.append(err.value)
    (tmp_path / "garbage.json").write_text("[1, 2]")
    with pytest.raises(NearmissError, match="is not a Google user token") as err:
        GoogleClients.from_settings(GoogleSettings(auth="user",
                                                   token_file=tmp_path / "garbage.json"))
    problems.append(err.value)
    assert all("\n" not in str(p) and "Traceback" not in str(p) for p in problems)


def test_unreadable_key_and_client_secrets_files_are_one_line(tmp_path, monkeypatch):
    settings = GoogleSettings(auth="user", client_secrets_env="NEARMISS_TEST_SECRETS",
                              token_file=tmp_path / "google-token.json")
    monkeypatch.delenv("NEARMISS_TEST_SECRETS", raising=False)
    with pytest.raises(NearmissError) as err:
        authorise_user(settings)
    assert str(err.value) == ("environment variable NEARMISS_TEST_SECRETS is not set: export "
                              "the path of the OAuth client secrets file")
    secrets = tmp_path / "client_secret.json"
    monkeypatch.setenv("NEARMISS_TEST_SECRETS", str(secrets))
    with pytest.raises(NearmissError, match=r"client_secret\.json, which does not exist$"):
        authorise_user(settings)
    for content in ("not json at all", json.dumps({"type": "service_account"})):
        secrets.write_text(content)
        with pytest.raises(NearmissError, match=f"^{re.escape(str(secrets))} is not an OAuth "
                                                "client file: download the JSON of a 'Desktop "
                                                "app' OAuth client"):
            authorise_user(settings)

    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")  # as for another user's 0600 file

    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account"}))
    monkeypatch.setenv(KEY_ENV, str(key))
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(NearmissError) as err:
        GoogleClients.from_settings(GoogleSettings(key_file_env=KEY_ENV))
    assert str(err.value) == (f"cannot read {key} as JSON (PermissionError): give the user "
                              "that runs nearmiss read access to it")


def test_a_revoked_key_is_one_clear_line(server, key_file):
    clients = GoogleClients.from_settings(GoogleSettings(key_file_env=KEY_ENV), ["forms"],
                                          endpoint=server.url, **FAST)
    server.tokens.fail_next(1, "invalid_grant", "Invalid JWT Signature.")
    with pytest.raises(ApiError, match=r"^source form \(reading the form\): Google refused "
                                       r"the credentials \(invalid_grant: Invalid JWT") as err:
        GoogleFormsSource("form", make_form(server), clients).pull(None)
    assert "\n" not in str(err.value)


def write_user_token(path: Path, server: GoogleFakeServer, refresh_token: str = "1//user",
                     scopes: set[str] = FORMS) -> Path:
    server.tokens.register_refresh_token(refresh_token, client_id="cid.apps",
                                         client_secret="shh", scopes=scopes)
    path.write_text(json.dumps({
        "type": "authorized_user", "client_id": "cid.apps", "client_secret": "shh",
        "refresh_token": refresh_token, "token_uri": server.url + "/token",
        "scopes": sorted(scopes)}))
    return path


def test_user_token_refreshes_through_the_fake(server, tmp_path):
    token = write_user_token(tmp_path / "google-token.json", server)
    clients = GoogleClients.from_settings(GoogleSettings(auth="user", token_file=token),
                                          ["forms"], endpoint=server.url, **FAST)
    pulled = GoogleFormsSource("form", make_form(server), clients).pull(None)
    assert len(pulled.responses) == 1
    (issued,) = server.tokens.issued
    assert issued.grant_type == "refresh_token" and issued.scopes == FORMS
    assert clients.account == "the account that ran `nearmiss auth google`"

    server.tokens.revoke_refresh_token("1//user")
    again = GoogleClients.from_settings(GoogleSettings(auth="user", token_file=token),
                                        ["forms"], endpoint=server.url, **FAST)
    with pytest.raises(ApiError, match=r"Google refused the credentials .*invalid_grant"):
        GoogleFormsSource("form", make_form(server), again).pull(None)
    server.assert_no_violations()


def test_authorise_user_end_to_end(server, tmp_path, monkeypatch, caplog):
    """The installed-app consent: the browser's redirect to the local server is simulated
    with a plain GET carrying the code, then the code is exchanged at the fake."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake speaks plain HTTP
    all_scopes = FORMS | SHEETS | GMAIL
    secrets = tmp_path / "client_secret.json"
    secrets.write_text(json.dumps({"installed": {
        "client_id": "cid.apps", "client_secret": "shh", "project_id": "nearmiss-test",
        "auth_uri": server.url + "/o/oauth2/auth", "token_uri": server.url + "/token",
        "redirect_uris": ["http://localhost"]}}))
    monkeypatch.setenv("NEARMISS_TEST_SECRETS", str(secrets))
    server.tokens.add_authorization_code("4/consent", scopes=all_scopes, client_id="cid.apps",
                                         client_secret="shh")
    settings = GoogleSettings(auth="user", client_secrets_env="NEARMISS_TEST_SECRETS",
                              token_file=tmp_path / "tokens" / "google-token.json")
    caplog.set_level(logging.INFO, logger="google_auth_oauthlib.flow")
    result: dict[str, Any] = {}

    def consent() -> None:
        try:
            result["path"] = authorise_user(settings, timeout_seconds=20)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=consent, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    url = None
    while url is None and time.monotonic() < deadline:
        found = [m for r in caplog.records if (m := re.search(r"(http\S+/o/oauth2/auth\S+)",
                                                              r.getMessage()))]
        url = found[0].group(1) if found else None
        time.sleep(0.02)
    assert url, "the consent URL was never shown"
    query = parse_qs(urlsplit(url).query)
    assert set(query["scope"][0].split()) == all_scopes
    redirect = query["redirect_uri"][0]
    answer = requests.get(redirect, params={"code": "4/consent", "state": query["state"][0],
                                            "scope": " ".join(sorted(all_scopes))}, timeout=10)
    assert answer.status_code == 200
    thread.join(10)
    assert "error" not in result, result.get("error")
    path = result["path"]
    assert path == settings.token_file and (path.stat().st_mode & 0o777) == 0o600
    stored = json.loads(path.read_text())
    assert stored["refresh_token"].startswith("1//fake-refresh-")

    form_id = make_form(server)
    clients = GoogleClients.from_settings(settings, ["forms"], endpoint=server.url, **FAST)
    assert len(GoogleFormsSource("form", form_id, clients).pull(None).responses) == 1
    assert server.tokens.tokens[server.auth_log[-1].access_token].grant_type == (
        "authorization_code")  # the stored access token is still fresh
    stored.pop("token")
    stored.pop("expiry")  # an hour later: the refresh token is used
    path.write_text(json.dumps(stored))
    clients = GoogleClients.from_settings(settings, ["forms"], endpoint=server.url, **FAST)
    assert len(GoogleFormsSource("form", form_id, clients).pull(None).responses) == 1
    assert server.tokens.issued[-1].grant_type == "refresh_token"
    assert server.tokens.issued[-1].scopes == all_scopes
    server.assert_no_violations()


def example(tmp_path: Path) -> Path:
    path = tmp_path / "nearmiss.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def test_the_example_google_config_loads(tmp_path, monkeypatch):
    key = write_service_account_key(tmp_path / "sa.json", "https://oauth2.googleapis.com/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    config = load_config(example(tmp_path))
    s = config.settings
    (source,) = s.sources
    assert source.kind == "google_forms_api" and source.mapping["4a1f09c2"] == "description"
    assert s.tracker.kind == "google_sheets" and s.mail.transport.kind == "gmail"
    assert s.google.delegated_user == "nearmiss@oakfield-care.example"
    mapping = s.mapping_for(source)
    assert mapping["What kind of near miss was it?"] == "category"


def test_config_names_missing_google_credentials(tmp_path, monkeypatch):
    path = example(tmp_path)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [("google.key_file_env", "environment variable "
                                   "GOOGLE_APPLICATION_CREDENTIALS is not set: export the path "
                                   "of the service account's JSON key file in it")]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match=r"gone\.json, which does not exist"):
        load_config(path)

    text = path.read_text().replace("  auth: service_account\n",
                                    "  auth: user\n  token_file: google-token.json\n").replace(
        "  delegated_user: nearmiss@oakfield-care.example\n", "")
    path.write_text(text)
    monkeypatch.delenv("NEARMISS_GOOGLE_CLIENT_SECRETS", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    ((key, message),) = err.value.problems
    assert key == "google.token_file" and "run `nearmiss auth google`" in message
    # `nearmiss auth google` loads the config without this check, to create the token.
    load_config(path, check_credentials=False)
    (tmp_path / "google-token.json").write_text("{}")
    load_config(path)


def test_the_google_endpoint_is_a_setting_that_moves_the_token_endpoint_too(
        server, tmp_path, monkeypatch):
    # The key names Google's own token endpoint; `google.endpoint` sends both elsewhere.
    monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
        tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
    settings = GoogleSettings(key_file_env=KEY_ENV, endpoint=server.url)
    clients = GoogleClients.from_settings(settings, ["forms"], **FAST)
    assert clients.endpoint == server.url
    GoogleFormsSource("form", make_form(server), clients).pull(None)
    assert len(server.tokens.issued) == 1
