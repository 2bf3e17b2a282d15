"""Tests of the Google fakes themselves.

1. Recorded interactions (tests/fakes/recorded) are replayed against the fakes and the
   answers compared with the recorded bodies (exactly where the fake is deterministic,
   with server-generated ids masked; by JSON shape otherwise).
2. The real client libraries (google-api-python-client, gspread, google-auth) talk to the
   fakes over real sockets.
3. The discovery-based validator rejects what the real API would reject.
4. Fault injection: 429 with Retry-After, 5xx, dropped connections, slow answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google.auth.transport.requests
import gspread
import httplib2
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import RefreshError
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.fakes.google import (
    GoogleFakeServer,
    QuestionSpec,
    apply_field_mask,
    column_index,
    column_letters,
    parse_field_mask,
    quote_sheet_title,
    rewrite_adapter,
)
from tests.fakes.google_discovery import DiscoveryValidator
from tests.fakes.http import FakeHTTPServer

RECORDED = Path(__file__).parent / "recorded"
SHEETS_HOST = "https://sheets.googleapis.com"
FORMS_SCOPES = [
    "https://www.googleapis.com/auth/forms.body.readonly",
    "https://www.googleapis.com/auth/forms.responses.readonly",
]


def recorded(name: str) -> dict[str, dict[str, Any]]:
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


SHEETS = recorded("sheets")
FORMS = recorded("forms")
GMAIL = recorded("gmail")
TOKEN = recorded("google_oauth_token")


@pytest.fixture
def server() -> Iterator[GoogleFakeServer]:
    with GoogleFakeServer(seed=7) as srv:
        yield srv


def service(server: GoogleFakeServer, name: str, version: str, credentials: Any = None,
            http: httplib2.Http | None = None) -> Any:
    """A googleapiclient service pointed at the fake (api_endpoint replaces the host)."""
    auth: dict[str, Any] = {"http": http} if http else {
        "credentials": credentials or AnonymousCredentials()}
    return build(name, version, client_options={"api_endpoint": server.url + "/"},
                 static_discovery=True, cache_discovery=False, **auth)


def gspread_client(server: GoogleFakeServer,
                   http_client: type[gspread.HTTPClient] = gspread.HTTPClient) -> gspread.Client:
    session = requests.Session()
    session.mount(SHEETS_HOST, rewrite_adapter(SHEETS_HOST, server.url))
    return gspread.Client(auth=None, session=session, http_client=http_client)


_UNSET: Any = object()


def replay(server: GoogleFakeServer, entry: dict[str, Any],
           body: Any = _UNSET) -> requests.Response:
    """Send a recorded request to the fake (same method, path and query)."""
    parts = urlsplit(entry["uri"])
    payload = entry["request_body"] if body is _UNSET else body
    if parts.path.endswith("/token"):
        return requests.post(server.url + "/token", data=payload, timeout=5)
    url = server.url + parts.path + (f"?{parts.query}" if parts.query else "")
    kwargs = {"json": payload} if payload is not None else {}
    return requests.request(entry["method"], url, timeout=5, **kwargs)


def spreadsheet_id(entry: dict[str, Any]) -> str:
    m = re.search(r"/v4/spreadsheets/([^/:?]+)", entry["uri"])
    assert m
    return m.group(1)


def mask(value: Any, keys: frozenset[str]) -> Any:
    """Replace server-generated ids with a placeholder naming their JSON type."""
    if isinstance(value, dict):
        return {k: (f"<{type(v).__name__}>" if k in keys else mask(v, keys))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, keys) for v in value]
    return value


def assert_shape(actual: Any, expected: Any, *, subset: bool = False, path: str = "$") -> None:
    """Same keys (or, with ``subset``, no key the recording lacks), same JSON types."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected object, got {actual!r}"
        extra = set(actual) - set(expected)
        assert not extra, f"{path}: keys not in the recording: {sorted(extra)}"
        if not subset:
            missing = set(expected) - set(actual)
            assert not missing, f"{path}: keys missing: {sorted(missing)}"
        for key in set(actual) & set(expected):
            assert_shape(actual[key], expected[key], subset=subset, path=f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected array, got {actual!r}"
        if not subset:
            assert len(actual) == len(expected), f"{path}: {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
            assert_shape(a, e, subset=subset, path=f"{path}[{i}]")
    else:
        assert _json_type(actual) == _json_type(expected), f"{path}: {actual!r} vs {expected!r}"


def _json_type(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# 1. Replays of recorded interactions
# ---------------------------------------------------------------------------------------

Setup = Callable[[GoogleFakeServer, str], Any]


@dataclass(frozen=True)
class Override:
    """A setup's replacement for the recorded request body (ids the fake generated)."""

    body: Any


def _batch(server: GoogleFakeServer, sid: str, *requests_: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.url}/v4/spreadsheets/{sid}:batchUpdate",
                             json={"requests": list(requests_)}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def _sheet(title: str = "Untitled", sheets: Any = ("Sheet1",)) -> Setup:
    def setup(server: GoogleFakeServer, sid: str) -> None:
        server.sheets.create_spreadsheet(title, sheets, spreadsheet_id=sid)
    return setup


def _with_values(a1: str, rows: list[list[Any]], sheets: Any = ("Sheet1",),
                 option: str = "RAW") -> Setup:
    def setup(server: GoogleFakeServer, sid: str) -> None:
        server.sheets.create_spreadsheet("Values", sheets, spreadsheet_id=sid)
        server.sheets.set_values(sid, a1, rows, value_input_option=option)
    return setup


def _then(first: Setup, then: Callable[[GoogleFakeServer, str], Any]) -> Setup:
    def setup(server: GoogleFakeServer, sid: str) -> Any:
        first(server, sid)
        result = then(server, sid)
        return result if isinstance(result, Override) else None
    return setup


def _add_named(server: GoogleFakeServer, sid: str) -> str:
    reply = _batch(server, sid, SHEETS["batch_update_add_named_range"]["request_body"]
                   ["requests"][0])
    return reply["replies"][0]["addNamedRange"]["namedRange"]["namedRangeId"]


def _substitute(entry_name: str, old: str, new_id: Callable[[GoogleFakeServer, str], Any]
                ) -> Callable[[GoogleFakeServer, str], Any]:
    def then(server: GoogleFakeServer, sid: str) -> Any:
        text = json.dumps(SHEETS[entry_name]["request_body"])
        return Override(json.loads(text.replace(old, str(new_id(server, sid)))))
    return then


def _hidden_sheets(hidden: bool) -> Setup:
    def setup(server: GoogleFakeServer, sid: str) -> None:
        server.sheets.create_spreadsheet(
            "Test SpreadsheetTest test_worksheets_exclude_hidden", spreadsheet_id=sid)
        server.sheets.add_sheet(sid, "finances", rows=100, cols=100, sheet_id=1613166149)
        server.sheets.add_sheet(sid, "gacha", rows=100, cols=100, sheet_id=755875121,
                                hidden=hidden)
    return setup


def _protected(server: GoogleFakeServer, sid: str) -> None:
    server.sheets.owner_email = "redacted-user@example.com"
    _batch(server, sid, SHEETS["batch_update_add_protected_range"]["request_body"]["requests"][0])


def _add_protected_id(server: GoogleFakeServer, sid: str) -> int:
    reply = _batch(server, sid, SHEETS["batch_update_add_protected_range"]["request_body"]
                   ["requests"][0])
    return reply["replies"][0]["addProtectedRange"]["protectedRange"]["protectedRangeId"]


_DATES = [["=4/2", "2020-01-01", "string", "53"], ["=3/2", "0.12", "1999-01-02"]]
_ID_KEYS = frozenset({"protectedRangeId", "namedRangeId"})

SHEETS_REPLAYS: dict[str, Setup] = {
    "get_basic": _sheet("Test CellTest test_a1_value"),
    "get_multiple_sheets": _then(
        _sheet("Test SpreadsheetTest test_add_del_worksheet"),
        lambda s, sid: [s.sheets.add_sheet(sid, f"test_add_del_worksheet {i}", rows=1, cols=1,
                                           sheet_id=n)
                        for i, n in enumerate((1877059582, 580173816, 1396229743), 1)]),
    "get_protected_ranges": _then(_sheet("Test WorksheetTest test_add_protected_range_normal"),
                                  _protected),
    "get_fields_named_ranges": _then(_sheet(), _add_named),
    "get_merges": _then(_sheet("Test CellTest test_merge_cells"),
                        lambda s, sid: _batch(s, sid, SHEETS["batch_update_merge_cells"]
                                              ["request_body"]["requests"][0])),
    "get_basic_filter": _then(_sheet("Test WorksheetTest test_basic_filters",
                                     [("Sheet1", 20, 20)]),
                              lambda s, sid: _batch(s, sid, {"setBasicFilter": {
                                  "filter": {"range": {"sheetId": 0}}}})),
    "get_hidden_sheet": _hidden_sheets(hidden=True),
    "get_frozen": _then(_sheet("Test WorksheetTest test_freeze"), lambda s, sid: _batch(
        s, sid, {"updateSheetProperties": {
            "properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 2,
                                                            "frozenColumnCount": 1}},
            "fields": "gridProperties.frozenRowCount,gridProperties.frozenColumnCount"}})),
    "get_fields_tab_color": _then(_sheet(), lambda s, sid: _batch(s, sid, {
        "updateSheetProperties": {"properties": {"sheetId": 0, "tabColorStyle": {
            "rgbColor": {"red": 1, "blue": 0.49803922}}}, "fields": "tabColorStyle"}})),
    "get_not_found": lambda s, sid: None,
    "get_permission_denied": _then(_sheet(), lambda s, sid: s.sheets.denied.add(sid)),
    "update_invalid_values_type": _sheet(),
    "batch_update_hide_all_sheets": _sheet(),
    "values_get_empty_cell": _sheet(),
    "values_get_whole_sheet": _with_values("Sheet1!B1", [["Dummy"]]),
    "values_get_cell": _with_values("Sheet1!A1", [["test_equality 1"]]),
    "values_batch_get_quoted_names": _with_values(
        "'🌵 test_values_batch_get 1'!A1", [["🍇", "🍉", "🍋"], ["🍐", "🍎", "🍓"]],
        sheets=[("🌵 test_values_batch_get 1", 10, 26)]),
    "values_get_empty_range": _sheet(),
    "values_get_columns": _with_values(
        "Sheet1!A1", [[f"test_delete_cols {n}"] for n in (1, 5, 9, 13, 17, 21)]),
    "values_get_unformatted": _with_values(
        "Sheet1!A1", [["A", "", "C", "3_1_0"], ["1.5", "0.12", "", "3_2_1"]],
        sheets=[("Sheet1", 2, 4)], option="USER_ENTERED"),
    **{name: _with_values("Sheet1!A1", _DATES, sheets=[("Sheet1", 2, 4)], option="USER_ENTERED")
       for name in ("values_get_formula", "values_get_unformatted_serial",
                    "values_get_unformatted_date_strings", "values_get_formatted_serial",
                    "values_get_formatted_date_strings")},
    "values_update_user_entered": _sheet(),
    "values_update_raw": _sheet(),
    "values_clear": _with_values("Sheet1!A1", [["x"]]),
    "values_append_empty_sheet": _sheet(),
    "values_append_table_detection": _with_values("Sheet1!A1", [[
        "test_append_row_with_empty_value 1", "", "test_append_row_with_empty_value 3"]]),
    "values_batch_clear": _with_values("Sheet1!A1", [["a", "b"], ["", "", "c", "d"]]),
    "values_batch_update": _sheet(),
    "values_append_columns": _with_values("Sheet1!A1", [["a"], ["b"], ["c"]]),
    "batch_update_add_named_range": _sheet(),
    "batch_update_delete_named_range": _then(
        _sheet(), _substitute("batch_update_delete_named_range", "220755387", _add_named)),
    "batch_update_merge_cells": _sheet(),
    "batch_update_unmerge_cells": _sheet(),
    "batch_update_update_named_range": _then(
        _sheet(), _substitute("batch_update_update_named_range", "1450817762", _add_named)),
    "batch_update_add_sheet": _sheet(),
    "batch_update_delete_sheet": _then(_sheet(), lambda s, sid: s.sheets.add_sheet(
        sid, "test_add_del_worksheet 1", rows=1, cols=1, sheet_id=1877059582)),
    "batch_update_update_spreadsheet_properties": _sheet(),
    "batch_update_update_sheet_properties": _hidden_sheets(hidden=False),
    "batch_update_add_protected_range": _sheet(),
    "batch_update_set_data_validation": _sheet(),
    "batch_update_set_basic_filter": _sheet(sheets=[("Sheet1", 20, 20)]),
    "batch_update_clear_basic_filter": _sheet(),
    "batch_update_delete_dimension": _sheet(),
    "batch_update_delete_protected_range": _then(_sheet(), _substitute(
        "batch_update_delete_protected_range", "2028942746", _add_protected_id)),
    "batch_update_repeat_cell": _sheet(),
    "batch_update_update_cells": _sheet(),
    "batch_update_update_dimension_properties": _sheet(),
    "batch_update_insert_dimension": _sheet(),
    "batch_update_add_protected_range_warning_only": _sheet(),
    "values_batch_get_interior_blank": _then(_with_values("Sheet1!A1", [["A1", "B1"]]),
                                             lambda s, sid: s.sheets.set_values(
                                                 sid, "Sheet1!B4", [["B4", "", "D4"]])),
}


def test_every_recorded_sheets_entry_has_a_replay() -> None:
    assert set(SHEETS) - {"quota_exceeded_write"} == set(SHEETS_REPLAYS)


@pytest.mark.parametrize("name", sorted(SHEETS_REPLAYS))
def test_sheets_replay(server: GoogleFakeServer, name: str) -> None:
    entry = SHEETS[name]
    sid = spreadsheet_id(entry)
    override = SHEETS_REPLAYS[name](server, sid)
    body = override.body if isinstance(override, Override) else entry["request_body"]
    response = replay(server, entry, body)
    assert response.status_code == entry["status"], response.text
    assert response.headers["Content-Type"] == entry["response_headers"]["content-type"]
    keys = _ID_KEYS | ({"sheetId"} if name == "batch_update_add_sheet" else set())
    expected = mask(entry["response_body"], keys)
    actual = mask(response.json(), keys)
    assert_shape(actual, expected)
    assert actual == expected
    if name == "update_invalid_values_type":
        assert [v.violations[0].kind for v in server.violations] == ["invalid_value"]
    else:
        server.assert_no_violations()


def test_sheets_replay_quota_error(server: GoogleFakeServer) -> None:
    entry = SHEETS["quota_exceeded_write"]
    server.project_number = "PROJECT_NUMBER"
    server.faults.fail_next(1, 429, only="sheets.spreadsheets.values.update")
    response = replay(server, entry)
    assert response.status_code == 429
    assert response.json() == entry["response_body"]
    assert server.faults.injected[0].method_id == "sheets.spreadsheets.values.update"


def _forms_response_key(response: dict[str, Any]) -> str:
    return response["createTime"]


def _normalise_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(mask(body["responses"], frozenset({"responseId"})), key=_forms_response_key)


def _replay_responses(server: GoogleFakeServer, form_id: str,
                      recorded_responses: list[dict[str, Any]],
                      before: Callable[[int], None] = lambda i: None) -> None:
    ordered = sorted(recorded_responses, key=_forms_response_key)
    for i, response in enumerate(ordered):
        before(i)
        at = dt.datetime.fromisoformat(response["lastSubmittedTime"].replace("Z", "+00:00"))
        answers = {qid: [a["value"] for a in answer["textAnswers"]["answers"]]
                   for qid, answer in response["answers"].items()}
        server.forms.add_response(form_id, answers, at=at)


def _list(server: GoogleFakeServer, form_id: str) -> requests.Response:
    return requests.get(f"{server.url}/v1/forms/{form_id}/responses", timeout=5)


def test_forms_replay_responses_list(server: GoogleFakeServer) -> None:
    for name in ("responses_list_timestamps", "responses_list_single_page"):
        expected = FORMS[name]["response_body"]
        qids = {qid for r in expected["responses"] for qid in r["answers"]}
        form_id = server.forms.create_form(
            name, [QuestionSpec(f"Q {q}", question_id=q) for q in sorted(qids)])
        _replay_responses(server, form_id, expected["responses"])
        body = _list(server, form_id).json()
        assert_shape(body, expected)
        assert _normalise_responses(body) == _normalise_responses(expected)
        for response in body["responses"]:
            assert re.fullmatch(r"ACYDBN[A-Za-z0-9_-]{65}", response["responseId"])
    many = FORMS["responses_list_timestamps"]["response_body"]["responses"]
    body = _list(server, server.forms.create_form("again", [
        QuestionSpec("a", question_id="1fbbe6ef"), QuestionSpec("b", question_id="7835c942")]))
    assert body.json() == {}  # no responses: both keys omitted
    listed = _list(server, next(iter(server.forms.forms))).json()["responses"]
    assert [r["createTime"] for r in listed] != sorted(r["createTime"] for r in many)


def test_forms_replay_drift_and_edit(server: GoogleFakeServer) -> None:
    expected = FORMS["responses_list_drift"]["response_body"]
    form_id = server.forms.create_form("drift", [
        QuestionSpec("Who", "checkbox", ["laptopen", "Migsjälv", "Person G", "Bananer"],
                     question_id="5c529686"),
        QuestionSpec("Source", question_id="0f3196bb"),
        QuestionSpec("Done", question_id="3c16edf2"),
    ])

    def drift(i: int) -> None:
        if i == 2:  # two questions were added after the first two responses
            server.forms.add_question(form_id, "Where", question_id="5226eaad", index=0)
            server.forms.add_question(form_id, "Learned", "paragraph", question_id="63f7a573")

    _replay_responses(server, form_id, expected["responses"], before=drift)
    body = _list(server, form_id).json()
    assert _normalise_responses(body) == _normalise_responses(expected)

    edited = FORMS["response_edited"]["response_body"]
    form_id = server.forms.create_form("edit", [
        QuestionSpec("Code", question_id="36a632fc"),
        QuestionSpec("Pick", "radio", ["Option 1", "Option 2"], question_id="0979c0ae"),
    ])
    created = server.forms.add_response(form_id, {"36a632fc": "x", "0979c0ae": "Option 2"},
                                        at=dt.datetime(2023, 5, 29, 4, 48, 4, 163000))
    server.forms.edit_response(form_id, created["responseId"],
                               {"36a632fc": "BBBASCACW", "0979c0ae": "Option 1"},
                               at=dt.datetime(2023, 5, 29, 4, 48, 19, 994759))
    (listed,) = _list(server, form_id).json()["responses"]
    ids = frozenset({"responseId"})
    assert mask(listed, ids) == mask(edited, ids)
    single = requests.get(f"{server.url}/v1/forms/{form_id}/responses/{created['responseId']}",
                          timeout=5).json()
    assert single == {"formId": form_id, **listed}
    server.assert_no_violations()


@pytest.mark.parametrize("name", ["get_quiz", "get_doc_example"])
def test_forms_replay_get(server: GoogleFakeServer, name: str) -> None:
    expected = FORMS[name]["response_body"]
    questions = []
    for item in expected["items"]:
        if "questionItem" not in item:
            continue
        question = item["questionItem"]["question"]
        options = [o["value"] for o in question["choiceQuestion"]["options"] if "value" in o]
        questions.append(QuestionSpec(item["title"], "radio", options,
                                      required=question.get("required", False),
                                      question_id=question["questionId"],
                                      item_id=item["itemId"]))
    form_id = server.forms.create_form(expected["info"]["title"], questions,
                                       form_id=expected["formId"],
                                       document_title=expected["info"]["documentTitle"],
                                       description=expected["info"].get("description"))
    response = requests.get(f"{server.url}/v1/forms/{form_id}", timeout=5)
    body = response.json()
    questions_only = {**expected, "items": [i for i in expected["items"] if "questionItem" in i]}
    assert_shape(body, questions_only, subset=True)
    assert {"formId", "info", "revisionId", "responderUri", "items"} <= set(body)
    assert body["info"] == expected["info"]
    assert re.fullmatch(r"[0-9a-f]{8}", body["revisionId"])
    assert re.fullmatch(r"https://docs\.google\.com/forms/d/e/[\w-]+/viewform",
                        body["responderUri"])
    ours = [i["questionItem"]["question"] for i in body["items"]]
    theirs = [i["questionItem"]["question"] for i in expected["items"] if "questionItem" in i]
    assert [("required" in q) for q in ours] == [("required" in q) for q in theirs]


def _raw(message: EmailMessage) -> str:
    return base64.urlsafe_b64encode(message.as_bytes()).decode()


def _message(to: str | None = "someone@example.org", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.com"
    if to is not None:
        message["To"] = to
    for name, value in headers.items():
        message[name] = value
    message["Subject"] = "Near miss NM-1"
    message.set_content("Thanks for the report.")
    return message


def test_gmail_replays(server: GoogleFakeServer) -> None:
    ok = GMAIL["send_to_self"]
    response = replay(server, ok, {"raw": _raw(_message("sender@example.com"))})
    ids = frozenset({"id", "threadId"})
    assert response.status_code == 200
    assert mask(response.json(), ids) == mask(ok["response_body"], ids)

    for name, body in (("send_no_recipient", {"raw": _raw(_message(None))}),
                       ("send_invalid_to", {"raw": _raw(_message("not an address"))})):
        response = replay(server, GMAIL[name], body)
        assert response.status_code == 400
        assert response.json() == GMAIL[name]["response_body"]

    legacy = GMAIL["send_missing_raw"]  # 2018 body: no status/errors yet
    response = replay(server, legacy)
    assert response.status_code == 400
    error = response.json()["error"]
    assert {k: error[k] for k in legacy["response_body"]["error"]} == \
        legacy["response_body"]["error"]
    assert error["status"] == "INVALID_ARGUMENT"

    server.gmail.insufficient_scope = True
    scope = GMAIL["insufficient_permission_legacy"]
    response = requests.post(f"{server.url}/gmail/v1/users/me/messages/send",
                             json={"raw": _raw(_message())}, timeout=5)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["errors"] == scope["response_body"]["error"]["errors"]
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["status"] == "PERMISSION_DENIED"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert len(server.gmail.sent) == 1
    server.assert_no_violations()


def test_token_replays(server: GoogleFakeServer) -> None:
    server.tokens.register_refresh_token("known", client_id="other-client")
    revoked = TOKEN["refresh_revoked"]
    response = replay(server, revoked)
    assert (response.status_code, response.json()) == (400, revoked["response_body"])
    assert response.headers["Content-Type"] == revoked["response_headers"]["content-type"]

    server.tokens.register_refresh_token("***", client_id="other-client")
    unknown_client = TOKEN["refresh_unknown_client"]
    response = replay(server, unknown_client)
    assert (response.status_code, response.json()) == (401, unknown_client["response_body"])

    jwt = TOKEN["jwt_unauthorized_client"]
    server.tokens.fail_next(error="unauthorized_client")
    response = replay(server, jwt)
    assert (response.status_code, response.json()) == (401, jwt["response_body"])
    assert server.counters["oauth2.token"] == 3


# ---------------------------------------------------------------------------------------
# 2. Real client libraries over HTTP
# ---------------------------------------------------------------------------------------


def _nearmiss_form(server: GoogleFakeServer, **kwargs: Any) -> str:
    return server.forms.create_form("Near-miss report", [
        QuestionSpec("What happened?", "paragraph", required=True, question_id="q_what"),
        QuestionSpec("Severity", "radio", ["Low", "Medium", "High"], question_id="q_sev"),
        QuestionSpec("Factors", "checkbox", ["Lighting", "Staffing", "Equipment"],
                     question_id="q_factors"),
        QuestionSpec("When", "date", question_id="q_when", settings={"includeTime": True}),
    ], **kwargs)


def test_forms_client_get_list_paging_and_filters(server: GoogleFakeServer) -> None:
    form_id = _nearmiss_form(server, collect_email="VERIFIED")
    base = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC)
    created = [
        server.forms.add_response(
            form_id, {"q_what": f"report {i}", "q_sev": "High",
                      "q_factors": ["Lighting", "Staffing"] if i % 2 else None,
                      "q_when": dt.datetime(2025, 1, 5, 14, 30)},
            email=f"carer{i}@example.org", at=base + dt.timedelta(minutes=i, microseconds=i))
        for i in range(12)
    ]
    forms = service(server, "forms", "v1")
    form = forms.forms().get(formId=form_id).execute()
    assert [i["questionItem"]["question"]["questionId"] for i in form["items"]] == [
        "q_what", "q_sev", "q_factors", "q_when"]
    assert form["items"][0]["questionItem"]["question"] == {
        "questionId": "q_what", "required": True, "textQuestion": {"paragraph": True}}
    assert "required" not in form["items"][1]["questionItem"]["question"]
    assert form["settings"] == {"emailCollectionType": "VERIFIED"}

    request = forms.forms().responses().list(formId=form_id, pageSize=5)
    pages = []
    while request is not None:
        page = request.execute()
        pages.append(page)
        request = forms.forms().responses().list_next(request, page)
    assert [len(p.get("responses", [])) for p in pages] == [5, 5, 2]
    assert "nextPageToken" not in pages[-1]
    listed = [r for p in pages for r in p["responses"]]
    assert sorted(r["responseId"] for r in listed) == sorted(r["responseId"] for r in created)
    assert [r["createTime"] for r in listed] != sorted(r["createTime"] for r in listed)
    sample = next(r for r in listed if r["answers"]["q_what"]["textAnswers"]["answers"][0]
                  ["value"] == "report 1")
    assert "formId" not in sample
    assert sample["respondentEmail"] == "carer1@example.org"
    assert sample["answers"]["q_factors"]["textAnswers"]["answers"] == [
        {"value": "Lighting"}, {"value": "Staffing"}]
    assert sample["answers"]["q_when"]["textAnswers"]["answers"] == [
        {"value": "2025-01-05 14:30"}]
    assert sample["createTime"] == "2025-01-06T09:01:00Z"
    assert sample["lastSubmittedTime"] == "2025-01-06T09:01:00.000001Z"
    assert "q_factors" not in next(r for r in listed if r["responseId"] ==
                                   created[0]["responseId"])["answers"]

    boundary = created[6]["lastSubmittedTime"]
    ge = forms.forms().responses().list(formId=form_id, filter=f"timestamp >= {boundary}")
    gt = forms.forms().responses().list(formId=form_id, filter=f"timestamp > {boundary}")
    assert len(ge.execute()["responses"]) == 6
    assert len(gt.execute()["responses"]) == 5

    for bad in ("timestamp >= 2025-01-06", "createTime > 2025-01-06T09:00:00Z",
                "timestamp < 2025-01-06T09:00:00Z"):
        with pytest.raises(HttpError) as err:
            forms.forms().responses().list(formId=form_id, filter=bad).execute()
        assert err.value.status_code == 400
    first = forms.forms().responses().list(formId=form_id, pageSize=5).execute()
    with pytest.raises(HttpError) as err:
        forms.forms().responses().list(formId=form_id, pageSize=5, pageToken=first[
            "nextPageToken"], filter=f"timestamp > {boundary}").execute()
    assert err.value.status_code == 400

    with pytest.raises(HttpError) as err:
        forms.forms().get(formId="missing").execute()
    assert (err.value.status_code, err.value.reason) == (404, "Requested entity was not found.")
    server.forms.denied.add(form_id)
    with pytest.raises(HttpError) as err:
        forms.forms().responses().list(formId=form_id).execute()
    assert err.value.status_code == 403
    assert server.counters["forms.forms.responses.list"] == 11
    assert server.counters.by_api["forms"] == 13
    server.assert_no_violations()


def test_forms_filter_on_create_time_vs_last_submitted() -> None:
    start = dt.datetime(2025, 2, 1, 8, 0, tzinfo=dt.UTC)
    watermark = "2025-02-01T09:00:00Z"
    results = {}
    for filter_on in ("lastSubmittedTime", "createTime"):
        with GoogleFakeServer(filter_on=filter_on) as server:
            form_id = _nearmiss_form(server)
            old = server.forms.add_response(form_id, {"q_what": "a"}, at=start)
            server.forms.add_response(form_id, {"q_what": "b"}, at=start)
            server.forms.edit_response(form_id, old["responseId"], {"q_sev": "Low"},
                                       at=start + dt.timedelta(hours=2))
            forms = service(server, "forms", "v1")
            found = forms.forms().responses().list(
                formId=form_id, filter=f"timestamp >= {watermark}").execute()
            results[filter_on] = [r["responseId"] for r in found.get("responses", [])]
            edited = server.forms.responses(form_id)[0]
            assert edited["createTime"] == "2025-02-01T08:00:00Z"
            assert edited["lastSubmittedTime"] == "2025-02-01T10:00:00Z"
            assert {"q_what", "q_sev"} <= set(edited["answers"])
    assert len(results["lastSubmittedTime"]) == 1
    assert results["createTime"] == []


def test_forms_page_size_default_and_cap(server: GoogleFakeServer) -> None:
    form_id = server.forms.create_form("big", [QuestionSpec("Q", question_id="q")])
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for i in range(5001):
        server.forms.add_response(form_id, {"q": str(i)}, at=at + dt.timedelta(seconds=i))
    url = f"{server.url}/v1/forms/{form_id}/responses"
    for params in ({}, {"pageSize": 0}, {"pageSize": 9999}):
        page = requests.get(url, params=params, timeout=10).json()
        assert len(page["responses"]) == 5000 and "nextPageToken" in page
    rest = requests.get(url, params={"pageToken": page["nextPageToken"]}, timeout=10).json()
    assert len(rest["responses"]) == 1 and "nextPageToken" not in rest
    assert requests.get(url, params={"pageSize": -1}, timeout=10).status_code == 400


def test_forms_drift_helpers(server: GoogleFakeServer) -> None:
    form_id = _nearmiss_form(server)
    server.forms.add_response(form_id, {"q_what": "before drift", "q_sev": "Low"})
    revision = server.forms.form_json(form_id)["revisionId"]
    server.forms.rename_question(form_id, "q_sev", "How serious?")
    new_id = server.forms.add_question(form_id, "Location", "dropdown", options=["Kitchen", "Hall"])
    server.forms.remove_question(form_id, "q_sev")
    form = server.forms.form_json(form_id)
    assert form["revisionId"] > revision
    assert [i["questionItem"]["question"]["questionId"] for i in form["items"]] == [
        "q_what", "q_factors", "q_when", new_id]
    assert form["items"][-1]["questionItem"]["question"]["choiceQuestion"] == {
        "type": "DROP_DOWN", "options": [{"value": "Kitchen"}, {"value": "Hall"}]}
    server.forms.add_response(form_id, {"q_what": "after drift", new_id: "Hall"})
    stored = server.forms.responses(form_id)
    assert "q_sev" in stored[0]["answers"]  # old answers survive a deleted question
    with pytest.raises(KeyError):
        server.forms.add_response(form_id, {"q_what": "x", "q_sev": "Low"})
    with pytest.raises(ValueError, match="required"):
        server.forms.add_response(form_id, {new_id: "Hall"})


def test_forms_client_retries_injected_429(server: GoogleFakeServer) -> None:
    form_id = _nearmiss_form(server)
    server.forms.add_response(form_id, {"q_what": "x"})
    forms = service(server, "forms", "v1")
    server.faults.fail_next(2, 429, retry_after=3, only="forms.forms.responses.list")
    request = forms.forms().responses().list(formId=form_id)
    sleeps: list[float] = []
    request._sleep = sleeps.append
    assert len(request.execute(num_retries=3)["responses"]) == 1
    assert len(sleeps) == 2
    assert server.counters["forms.forms.responses.list"] == 3
    assert [f.status for f in server.faults.injected] == [429, 429]

    server.faults.fail_next(1, 429)
    with pytest.raises(HttpError) as err:
        forms.forms().responses().list(formId=form_id).execute()
    assert err.value.status_code == 429
    assert "Quota exceeded for quota metric 'Read requests'" in err.value.reason
    assert err.value.error_details[0]["reason"] == "RATE_LIMIT_EXCEEDED"


def test_gspread_against_sheets_fake(server: GoogleFakeServer) -> None:
    sid = server.sheets.create_spreadsheet("Near-miss tracker", ["Tracker", "Audit log"])
    server.sheets.set_values(sid, "Tracker!A1", [["id", "description", "status", "owner"]])
    gc = gspread_client(server)
    sh = gc.open_by_key(sid)
    assert sh.title == "Near-miss tracker"
    ws = sh.worksheet("Tracker")
    assert (ws.row_count, ws.col_count) == (1000, 26)

    ws.append_rows([["NM-1", "=HYPERLINK(\"http://evil\")", "Open", "cy"],
                    ["NM-2", "Wet floor", "Open", "007"]], value_input_option="USER_ENTERED")
    ws.append_rows([["NM-3", "=1+1", "Open", "0012"]], value_input_option="RAW")
    sh.values_batch_update({"valueInputOption": "RAW", "data": [
        {"range": "'Tracker'!C2", "values": [["Closed"]]},
        {"range": "'Audit log'!A1:B1", "values": [["NM-1", "closed"]]}]})
    got = sh.values_batch_get(["Tracker!A1:D", "'Audit log'", "Tracker!Z1"])
    ranges = got["valueRanges"]
    assert [r["range"] for r in ranges] == ["Tracker!A1:D1000", "'Audit log'!A1:Z1000",
                                            "Tracker!Z1"]
    assert ranges[0]["values"] == [
        ["id", "description", "status", "owner"], ["NM-1", "#NAME?", "Closed", "cy"],
        ["NM-2", "Wet floor", "Open", "7"], ["NM-3", "=1+1", "Open", "0012"]]
    assert "values" not in ranges[2]
    injected = server.sheets.cell(sid, "Tracker!B2")
    assert injected.formula == '=HYPERLINK("http://evil")'
    assert server.sheets.cell(sid, "Tracker!B4").formula is None
    assert ws.get("B2:B4", value_render_option="FORMULA") == [
        ['=HYPERLINK("http://evil")'], ["Wet floor"], ["=1+1"]]
    assert ws.get("D3", value_render_option="UNFORMATTED_VALUE") == [[7]]

    sh.batch_update({"requests": [
        {"updateSheetProperties": {"properties": {"sheetId": ws.id, "gridProperties": {
            "frozenRowCount": 1}}, "fields": "gridProperties.frozenRowCount"}},
        {"setBasicFilter": {"filter": {"range": {"sheetId": ws.id, "endColumnIndex": 4}}}},
        {"setDataValidation": {"range": {"sheetId": ws.id, "startRowIndex": 1,
                                         "startColumnIndex": 2, "endColumnIndex": 3},
                               "rule": {"condition": {"type": "ONE_OF_LIST", "values": [
                                   {"userEnteredValue": "Open"},
                                   {"userEnteredValue": "Closed"}]}, "strict": True}}},
        {"addProtectedRange": {"protectedRange": {"range": {
            "sheetId": ws.id, "startColumnIndex": 0, "endColumnIndex": 2},
            "description": "system columns", "warningOnly": True}}},
        {"addConditionalFormatRule": {"rule": {"ranges": [{"sheetId": ws.id,
                                                           "startColumnIndex": 2,
                                                           "endColumnIndex": 3}],
                                               "booleanRule": {"condition": {
                                                   "type": "TEXT_EQ", "values": [
                                                       {"userEnteredValue": "Open"}]},
                                                   "format": {"textFormat": {"bold": True}}}},
                                      "index": 0}},
        {"repeatCell": {"range": {"sheetId": ws.id, "endRowIndex": 1},
                        "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                        "fields": "userEnteredFormat.textFormat.bold"}},
        {"appendDimension": {"sheetId": ws.id, "dimension": "ROWS", "length": 10}},
        {"insertDimension": {"range": {"sheetId": ws.id, "dimension": "COLUMNS",
                                       "startIndex": 4, "endIndex": 5}}},
        {"updateDimensionProperties": {"range": {"sheetId": ws.id, "dimension": "COLUMNS",
                                                 "startIndex": 1, "endIndex": 2},
                                       "properties": {"pixelSize": 300}, "fields": "pixelSize"}},
        {"autoResizeDimensions": {"dimensions": {"sheetId": ws.id, "dimension": "COLUMNS",
                                                 "startIndex": 0, "endIndex": 4}}},
        {"addSheet": {"properties": {"title": "Archive"}}},
    ]})
    meta = server.sheets.sheet(sid, "Tracker")
    grid = meta["properties"]["gridProperties"]
    assert grid == {"rowCount": 1010, "columnCount": 27, "frozenRowCount": 1}
    assert meta["basicFilter"] == {"range": {"startRowIndex": 0, "endRowIndex": 1000,
                                             "startColumnIndex": 0, "endColumnIndex": 4}}
    assert meta["protectedRanges"][0]["warningOnly"] is True
    assert meta["conditionalFormats"][0]["ranges"] == [{"startColumnIndex": 2,
                                                        "endColumnIndex": 3}]
    assert meta["dataValidations"][0]["rule"]["condition"]["type"] == "ONE_OF_LIST"
    assert server.sheets.cell(sid, "Tracker!C5").data_validation is not None
    assert server.sheets.cell(sid, "Tracker!C1").data_validation is None
    assert server.sheets.cell(sid, "Tracker!A1").user_entered_format == {
        "textFormat": {"bold": True}}
    assert meta["dimensionProperties"]["COLUMNS"] == {1: {"pixelSize": 300}}
    assert [s.title for s in gc.open_by_key(sid).worksheets()] == [
        "Tracker", "Audit log", "Archive"]
    full = requests.get(f"{server.url}/v4/spreadsheets/{sid}", params={
        "includeGridData": "true", "ranges": "Tracker!C1:C2",
        "fields": "sheets(properties(title),data)"}, timeout=5).json()
    (sheet,) = full["sheets"]
    assert sheet["properties"] == {"title": "Tracker"}
    assert sheet["data"][0]["rowData"][1]["values"][0]["dataValidation"]["strict"] is True
    counts = server.counters
    assert (counts["sheets.spreadsheets.values.append"], counts["sheets.spreadsheets.batchUpdate"],
            counts["sheets.spreadsheets.values.batchUpdate"]) == (2, 1, 1)
    assert counts.by_api["sheets"] == 12  # gspread: one request per call, metadata re-read
    server.assert_no_violations()


def test_gspread_backoff_client_retries_429(server: GoogleFakeServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sid = server.sheets.create_spreadsheet("T")
    monkeypatch.setattr(gspread.http_client.time, "sleep", lambda s: None)
    gc = gspread_client(server, gspread.BackOffHTTPClient)
    server.faults.fail_next(1, 429, only="sheets.spreadsheets.get")
    assert gc.open_by_key(sid).id == sid
    assert server.counters["sheets.spreadsheets.get"] == 2
    plain = gspread_client(server)
    server.faults.fail_next(1, 503)
    with pytest.raises(gspread.exceptions.APIError) as err:
        plain.open_by_key(sid)
    assert err.value.code == 503


def test_gmail_send_through_googleapiclient(server: GoogleFakeServer) -> None:
    gmail = service(server, "gmail", "v1")
    message = _message("Manager <manager@example.org>", Cc="lead@example.org",
                       Bcc="audit@example.org")
    sent = gmail.users().messages().send(userId="me", body={"raw": _raw(message)}).execute()
    assert sent["labelIds"] == ["SENT"]
    assert re.fullmatch(r"[0-9a-f]{16}", sent["id"]) and sent["threadId"] == sent["id"]
    (received,) = server.gmail.sent
    assert received["To"] == "Manager <manager@example.org>"
    assert received["Bcc"] == "audit@example.org"
    assert received.get_content().strip() == "Thanks for the report."
    reply = gmail.users().messages().send(userId="me", body={
        "raw": _raw(_message("manager@example.org")), "threadId": sent["threadId"]}).execute()
    assert reply["threadId"] == sent["threadId"] and reply["id"] > sent["id"]
    with pytest.raises(HttpError) as err:
        gmail.users().messages().send(userId="me", body={"raw": _raw(_message(None))}).execute()
    assert (err.value.status_code, err.value.reason) == (400, "Recipient address required")
    with pytest.raises(HttpError) as err:
        gmail.users().messages().send(userId="me", body={}).execute()
    assert err.value.status_code == 400
    assert len(server.gmail.messages) == 2
    server.assert_no_violations()


def test_gmail_upload_endpoint(server: GoogleFakeServer) -> None:
    # googleapiclient keeps "https" for media uploads when api_endpoint is overridden, so
    # the /upload/ path is driven with requests here.
    url = f"{server.url}/upload/gmail/v1/users/me/messages/send"
    first = requests.post(url, params={"uploadType": "media"}, data=_message().as_bytes(),
                          headers={"Content-Type": "message/rfc822"}, timeout=5).json()
    boundary = "fake-boundary"
    related = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
               + json.dumps({"threadId": first["threadId"]})
               + f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").encode()
    related += _message().as_bytes() + f"\r\n--{boundary}--".encode()
    second = requests.post(url, params={"uploadType": "multipart"}, data=related, headers={
        "Content-Type": f'multipart/related; boundary="{boundary}"'}, timeout=5).json()
    assert second["threadId"] == first["threadId"]
    assert [m["Subject"] for m in server.gmail.sent] == ["Near miss NM-1"] * 2
    server.assert_no_violations()


@pytest.fixture(scope="module")
def service_account_info() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "nearmiss-test",
            "private_key_id": "key-1", "private_key": pem,
            "client_email": "nearmiss@nearmiss-test.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token"}


def test_service_account_token_and_scopes(service_account_info: dict[str, str]) -> None:
    with GoogleFakeServer(require_auth=True) as server:
        form_id = _nearmiss_form(server)
        info = {**service_account_info, "token_uri": server.url + "/token"}
        creds = service_account.Credentials.from_service_account_info(info, scopes=FORMS_SCOPES)
        creds.refresh(google.auth.transport.requests.Request())
        (issued,) = server.tokens.issued
        assert issued.scopes == set(FORMS_SCOPES)
        assert issued.issuer == info["client_email"] and issued.subject is None
        assert creds.token == issued.access_token

        forms = service(server, "forms", "v1", credentials=creds)
        assert forms.forms().get(formId=form_id).execute()["formId"] == form_id
        assert server.auth_log[-1].scopes == set(FORMS_SCOPES)
        assert server.auth_log[-1].method_id == "forms.forms.get"

        gmail = service(server, "gmail", "v1", credentials=creds)
        with pytest.raises(HttpError) as err:
            gmail.users().messages().send(userId="me", body={"raw": _raw(_message())}).execute()
        assert (err.value.status_code, err.value.reason) == (
            403, "Request had insufficient authentication scopes.")

        delegated = service_account.Credentials.from_service_account_info(
            info, scopes=["https://www.googleapis.com/auth/gmail.send"],
        ).with_subject("sender@example.com")
        gmail = service(server, "gmail", "v1", credentials=delegated)
        gmail.users().messages().send(userId="me", body={"raw": _raw(_message())}).execute()
        assert server.tokens.issued[-1].subject == "sender@example.com"
        assert server.tokens.scopes_issued() == set(FORMS_SCOPES) | {
            "https://www.googleapis.com/auth/gmail.send"}

        anonymous = service(server, "forms", "v1", http=httplib2.Http())
        with pytest.raises(HttpError) as err:
            anonymous.forms().get(formId=form_id).execute()
        assert err.value.status_code == 401
        assert json.loads(err.value.content)["error"]["status"] == "UNAUTHENTICATED"
        server.assert_no_violations()


def test_user_credentials_refresh_grant(server: GoogleFakeServer) -> None:
    scope = "https://www.googleapis.com/auth/spreadsheets"
    server.tokens.register_refresh_token("1//refresh", client_id="cid", client_secret="sec",
                                         scopes=[scope])
    creds = user_credentials.Credentials(None, refresh_token="1//refresh", client_id="cid",
                                         client_secret="sec", token_uri=server.url + "/token",
                                         scopes=[scope])
    creds.refresh(google.auth.transport.requests.Request())
    assert server.tokens.issued[-1].scopes == {scope}
    assert server.tokens.tokens[creds.token].grant_type == "refresh_token"
    server.tokens.revoke_refresh_token("1//refresh")
    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(google.auth.transport.requests.Request())


# ---------------------------------------------------------------------------------------
# Sheets semantics worth pinning down
# ---------------------------------------------------------------------------------------


def test_sheets_grid_limits_ranges_and_errors(server: GoogleFakeServer) -> None:
    sid = server.sheets.create_spreadsheet("Grid", [("Small", 3, 2), ("It's mine", 5, 5)])
    base = f"{server.url}/v4/spreadsheets/{sid}/values"

    def put(a1: str, values: list[list[Any]]) -> requests.Response:
        return requests.put(f"{base}/{requests.utils.quote(a1, safe='')}",
                            params={"valueInputOption": "RAW"}, json={"values": values},
                            timeout=5)

    response = put("Small!A4", [["x"]])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Range (Small!A4) exceeds grid limits. Max rows: 3, max columns: 2")
    assert put("Small!B1", [["x", "y"]]).status_code == 400
    response = put("Small!A1:B1", [["x"], ["y"]])
    assert response.json()["error"]["message"] == (
        "Requested writing within range [Small!A1:B1], but tried writing to row [2]")
    assert put("'It''s mine'!B2", [["q"]]).json()["updatedRange"] == "'It''s mine'!B2"
    clipped = requests.get(f"{base}/Small!A1:Z99", timeout=5).json()
    assert clipped == {"range": "Small!A1:B3", "majorDimension": "ROWS"}
    beyond = requests.get(f"{base}/Small!C1", timeout=5)
    assert beyond.json()["error"]["message"].startswith("Range (Small!C1) exceeds grid limits")
    unknown = requests.get(f"{base}/Nope!A1", timeout=5)
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {"code": 400, "message": "Unable to parse range: Nope!A1",
                                       "status": "INVALID_ARGUMENT"}
    missing_option = requests.put(f"{base}/Small!A1", json={"values": [["x"]]}, timeout=5)
    assert missing_option.json()["error"]["message"] == (
        "'valueInputOption' is required but not specified")
    appended = requests.post(f"{base}/Small:append", params={
        "valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
        json={"values": [["a", "b", "c"]] * 4}, timeout=5).json()
    assert appended["updates"]["updatedRange"] == "Small!A1:C4"
    props = server.sheets.sheet(sid, "Small")["properties"]["gridProperties"]
    assert (props["rowCount"], props["columnCount"]) == (7, 3)
    again = requests.post(f"{base}/Small!A1:append", params={"valueInputOption": "RAW"},
                          json={"values": [["d"]]}, timeout=5).json()
    assert (again["tableRange"], again["updates"]["updatedRange"]) == ("Small!A1:C4", "Small!A5")
    rows = server.sheets.get_values(sid, "Small!2:5")
    assert rows == [["a", "b", "c"]] * 3 + [["d"]]
    assert server.sheets.get_values(sid, "Small!A:A") == [["a"]] * 4 + [["d"]]
    assert requests.get(f"{base}/Small!2:5", timeout=5).json()["range"] == "Small!A2:C5"
    requests.post(f"{base}:batchClear", json={"ranges": ["Small!B1:C5"]}, timeout=5)
    assert server.sheets.get_values(sid, "Small") == [["a"]] * 4 + [["d"]]
    server.assert_no_violations()


def test_sheets_user_entered_parsing(server: GoogleFakeServer) -> None:
    sid = server.sheets.create_spreadsheet("Parse")
    server.sheets.set_values(sid, "Sheet1!A1", [[
        "=2^3", "1,234.5", "12%", "TRUE", "'=not a formula", "2025-01-05", "=1/0", 42, True, "",
        " 7 "]], value_input_option="USER_ENTERED")
    server.sheets.set_values(sid, "Sheet1!A2", [["=2^3", "1,234.5", 3.0]])
    assert server.sheets.get_values(sid, "Sheet1!1:2") == [
        ["8", "1,234.5", "12%", "TRUE", "=not a formula", "2025-01-05", "#DIV/0!", "42", "TRUE",
         "", "7"],
        ["=2^3", "1,234.5", "3"]]
    assert server.sheets.get_values(sid, "Sheet1!1:2", render="UNFORMATTED_VALUE") == [
        [8, 1234.5, 0.12, True, "=not a formula", 45662, "#DIV/0!", 42, True, "", 7],
        ["=2^3", "1,234.5", 3]]
    assert server.sheets.get_values(sid, "Sheet1!A1:B1", render="FORMULA") == [["=2^3", 1234.5]]


def test_a1_and_field_mask_helpers() -> None:
    assert [column_letters(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]
    assert [column_index(s) for s in ("A", "z", "AA", "ZZ")] == [0, 25, 26, 701]
    assert [quote_sheet_title(t) for t in ("Sheet1", "Audit log", "A1", "It's", "true")] == [
        "Sheet1", "'Audit log'", "'A1'", "'It''s'", "'true'"]
    tree = parse_field_mask("spreadsheetId,sheets(properties(title,sheetId)),sheets.data")
    assert tree == {"spreadsheetId": {}, "sheets": {"properties": {"title": {}, "sheetId": {}},
                                                    "data": {}}}
    doc = {"spreadsheetId": "x", "properties": {}, "sheets": [
        {"properties": {"title": "a", "sheetId": 0, "index": 0}, "merges": []}]}
    assert apply_field_mask(doc, tree) == {"spreadsheetId": "x", "sheets": [
        {"properties": {"title": "a", "sheetId": 0}}]}


# ---------------------------------------------------------------------------------------
# 3. Validation against the discovery documents
# ---------------------------------------------------------------------------------------


def test_validator_rejects_unknown_field_missing_parameter_and_unknown_path(
    server: GoogleFakeServer,
) -> None:
    sid = server.sheets.create_spreadsheet("V")
    response = requests.post(f"{server.url}/v4/spreadsheets/{sid}:batchUpdate", json={
        "requests": [{"addSheet": {"properties": {"titel": "typo"}}}]}, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == ('Invalid JSON payload received. Unknown name "titel" at '
                                "'requests[0].add_sheet.properties': Cannot find field.")
    assert error["details"][0]["fieldViolations"][0]["field"] == (
        "requests[0].add_sheet.properties")
    assert len(server.sheets.metadata(sid)["sheets"]) == 1  # nothing applied

    response = requests.get(f"{server.url}/v4/spreadsheets//values/A1", timeout=5)
    assert response.status_code == 400
    response = requests.get(f"{server.url}/v4/spreadsheets/{sid}/values/A1",
                            params={"valueRenderOption": "formatted", "foo": "1"}, timeout=5)
    assert response.status_code == 400
    response = requests.get(f"{server.url}/v4/spreadsheets/{sid}/charts", timeout=5)
    assert response.status_code == 400
    response = requests.get(f"{server.url}/v4/spreadsheets/{sid}:batchUpdate", timeout=5)
    assert response.status_code == 400
    kinds = [[v.kind for v in record.violations] for record in server.violations]
    assert kinds == [["unknown_field"], ["missing_parameter"],
                     ["invalid_parameter", "unknown_parameter"], ["unknown_path"],
                     ["method_not_allowed"]]
    assert server.counters["unknown"] == 2
    with pytest.raises(AssertionError, match="titel"):
        server.assert_no_violations()


def test_validator_directly() -> None:
    validator = DiscoveryValidator()
    ok = validator.validate(
        "POST", "/v4/spreadsheets/abc/values/%27Sheet%201%27%21A1%3AB2:append",
        {"valueInputOption": ["USER_ENTERED"], "includeValuesInResponse": ["False"],
         "alt": ["json"], "$.xgafv": ["2"]},
        json.dumps({"values": [["a", 1, True, None]], "majorDimension": None}).encode())
    assert ok.method_id == "sheets.spreadsheets.values.append" and ok.ok
    assert ok.path_params == {"spreadsheetId": "abc", "range": "'Sheet 1'!A1:B2"}
    nested = validator.validate("POST", "/v4/spreadsheets/abc:batchUpdate", {}, json.dumps({
        "requests": [{"repeatCell": {"range": {"sheetId": "5"}, "cell": {
            "userEnteredFormat": {"textFormat": {"bold": "yes"}}}, "fields": "*"}}]}).encode())
    assert [v.kind for v in nested.violations] == ["invalid_value"]
    assert "requests[0].repeat_cell.cell.user_entered_format.text_format.bold" in \
        nested.violations[0].message
    upload = validator.validate("POST", "/upload/gmail/v1/users/me/messages/send",
                                {"uploadType": ["media"]}, b"To: a@example.org\r\n\r\nhi")
    assert upload.method_id == "gmail.users.messages.send" and upload.is_upload and upload.ok
    repeated = validator.validate("GET", "/v1/forms/F/responses", {"pageSize": ["1", "2"]}, b"")
    assert [v.kind for v in repeated.violations] == ["invalid_parameter"]
    body_on_get = validator.validate("GET", "/v1/forms/F", {}, b'{"x": 1}')
    assert [v.kind for v in body_on_get.violations] == ["unexpected_body"]


# ---------------------------------------------------------------------------------------
# 4. Fault injection (and the base server's own routing)
# ---------------------------------------------------------------------------------------


def test_base_server_routes_log_and_counts() -> None:
    with FakeHTTPServer() as fake:
        fake.add_route("POST", r"/items/(\w+)", lambda req, m: {"id": m.group(1),
                                                                "got": req.json()},
                       method_id="items.create", api="items")
        response = requests.post(f"{fake.url}/items/a1?x=1&x=2", json={"k": "v"},
                                 headers={"X-Test": "yes"}, timeout=5)
        assert response.json() == {"id": "a1", "got": {"k": "v"}}
        assert requests.get(f"{fake.url}/nowhere", timeout=5).status_code == 404
        first = fake.requests[0]
        assert (first.method, first.path, first.query, first.method_id) == (
            "POST", "/items/a1", {"x": ["1", "2"]}, "items.create")
        assert first.header("x-test") == "yes" and first.json() == {"k": "v"}
        assert fake.counters["items.create"] == 1 and fake.counters["items"] == 1
        fake.faults.fail_next(1, 503, only="items")
        assert requests.post(f"{fake.url}/items/b", json={}, timeout=5).status_code == 503
        assert fake.requests_for("/items") == fake.requests[0:1] + fake.requests[2:3]
        assert fake.handler_errors == []



def test_fault_injection(server: GoogleFakeServer) -> None:
    sid = server.sheets.create_spreadsheet("F")
    url = f"{server.url}/v4/spreadsheets/{sid}"

    server.faults.fail_next(1, 429, retry_after=7, only="/v4/spreadsheets")
    response = requests.get(url, timeout=5)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("Quota exceeded for quota metric 'Read requests' and "
                                       "limit 'Read requests per minute per user'")
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"

    server.faults.fail_next(1, 500, only="sheets.spreadsheets.values")
    assert requests.get(url, timeout=5).status_code == 200  # not targeted
    response = requests.get(f"{url}/values/A1", timeout=5)
    assert response.json()["error"] == {"code": 500, "message": "Internal error encountered.",
                                        "status": "INTERNAL"}

    server.faults.drop_next(1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=5)
    assert requests.get(url, timeout=5).status_code == 200

    server.faults.set_delay(0.5, only="sheets.spreadsheets.get")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.1)
    server.faults.set_delay(0)

    assert requests.post(server.url + "/token", data={
        "grant_type": "refresh_token", "refresh_token": "r"}, timeout=5).status_code == 200
    server.faults.fail_next(1, 503, only="oauth2.token")
    token_error = requests.post(server.url + "/token", data={}, timeout=5)
    assert token_error.status_code == 503 and "error" in token_error.json()

    assert server.counters["sheets.spreadsheets.get"] == 5
    assert server.counters.by_api["oauth2"] == 2
    server.reset_counters()
    assert server.counters.total == 0

    def statuses(seed: int) -> list[int]:
        with GoogleFakeServer(seed=seed) as other:
            other_id = other.sheets.create_spreadsheet("R")
            other.faults.set_rate(0.3, seed=seed)
            return [requests.get(f"{other.url}/v4/spreadsheets/{other_id}", timeout=5)
                    .status_code for _ in range(30)]

    first = statuses(3)
    assert first == statuses(3)
    assert {429, 500, 503} & set(first) and first.count(200) >= 12


def test_forms_create_takes_a_title_only_and_batch_update_is_all_or_nothing(
        server: GoogleFakeServer) -> None:
    forms = service(server, "forms", "v1").forms()
    with pytest.raises(HttpError) as err:
        forms.create(body={"info": {"title": "x", "description": "d"}}).execute()
    assert err.value.resp.status == 400 and "batchUpdate" in str(err.value)
    form = forms.create(body={"info": {"title": "Near-miss report"}}).execute()
    good = {"createItem": {"item": {"title": "Shift", "questionItem": {"question": {
        "choiceQuestion": {"type": "RADIO", "options": [{"value": "Early"}]}}}},
        "location": {"index": 0}}}
    for bad in ({"createItem": {"item": {"title": "Q", "questionItem": {"question": {
                    "choiceQuestion": {"type": "RADIO", "options": [{"valu": "x"}]}}}},
                    "location": {"index": 0}}},  # refused by the discovery document
                {"createItem": {"item": {"title": "Q", "questionItem": {"question": {
                    "choiceQuestion": {"type": "RADIO", "options": []}}}},
                    "location": {"index": 0}}}):  # refused as Forms refuses it
        with pytest.raises(HttpError) as err:
            forms.batchUpdate(formId=form["formId"], body={"requests": [good, bad]}).execute()
        assert err.value.resp.status == 400
    assert "items" not in forms.get(formId=form["formId"]).execute()  # nothing of either
    done = forms.batchUpdate(formId=form["formId"], body={
        "requests": [good], "includeFormInResponse": True}).execute()
    [item] = done["form"]["items"]
    assert done["replies"][0]["createItem"]["itemId"] == item["itemId"]
    assert item["questionItem"]["question"]["choiceQuestion"]["options"] == [{"value": "Early"}]
