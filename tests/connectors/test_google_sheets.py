"""The Google Sheets tracker against the local Sheets fake, over real HTTP.

The contract every tracker keeps is in test_tracker_contract.py; these tests cover what
only the Sheets backend has: request counts, the layout of a new sheet, grid growth,
permission errors and retries. Every request is validated against the discovery document.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests
from google.oauth2 import service_account
from gspread.utils import rowcol_to_a1
from requests.adapters import HTTPAdapter

from connectors.base import SheetWrite
from connectors.errors import ApiError
from connectors.google_auth import HOSTS, SCOPES, GoogleClients
from connectors.google_sheets import GoogleSheetsTracker
from connectors.sheet_layout import MAX_WIDTH, pixels
from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import SA_EMAIL, private_key_pem
from tests.fakes.patterns import long_pattern_rows
from transforms.tracker import (
    ACTIONS,
    DATA_QUALITY,
    PATTERNS,
    REPORTS,
    SHEETS,
    cell_text,
    plan_sheet,
    read_sheet,
)

SERVICE_ACCOUNT = SA_EMAIL
STRUCTURE = "sheets.spreadsheets.batchUpdate"
VALUES = "sheets.spreadsheets.values.batchUpdate"
SEED = 7


@pytest.fixture
def server() -> Iterator[GoogleFakeServer]:
    with GoogleFakeServer() as fake:
        yield fake
        fake.assert_no_violations()  # nothing the real API would have rejected
        assert not fake.handler_errors


@pytest.fixture
def clients(server: GoogleFakeServer) -> GoogleClients:
    return _clients(server)


@pytest.fixture
def sid(server: GoogleFakeServer) -> str:
    return server.sheets.create_spreadsheet("Near-miss tracker", ["Sheet1"])


@pytest.fixture(scope="module")
def key_info() -> dict[str, str]:
    return {"type": "service_account", "project_id": "nearmiss-test",
            "private_key_id": "key-1", "private_key": private_key_pem(),
            "client_email": SERVICE_ACCOUNT, "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token"}


def _clients(server: GoogleFakeServer, credentials: Any = None) -> GoogleClients:
    return GoogleClients(credentials, endpoint=server.url, sleep=lambda s: None,
                         max_requests_per_minute=100000)


def _service_account(server: GoogleFakeServer, info: dict[str, str]) -> Any:
    info = {**info, "token_uri": server.url + "/token"}
    return service_account.Credentials.from_service_account_info(info, scopes=SCOPES["sheets"])


def created(spec: Any, rows: list[list[Any]] | None = None) -> SheetWrite:
    return SheetWrite(spec=spec, create=True, header=dict(enumerate(spec.columns, 1)),
                      append=rows or [])


def rows_for(spec: Any, n: int) -> list[list[Any]]:
    """n full rows: key, then text in every column (a formula-like value among them)."""
    width = len(spec.columns)
    return [[f"K-{i:05d}", *(f"r{i}c{c}" for c in range(2, width)), "=SUM(A1:A2)"]
            for i in range(1, n + 1)]


def values(server: GoogleFakeServer, sid: str, title: str) -> list[list[str]]:
    quoted = "'" + title + "'"
    return server.sheets.get_values(sid, quoted)


def content(server: GoogleFakeServer, sid: str) -> dict[str, list[list[str]]]:
    titles = [s["properties"]["title"] for s in server.sheets.metadata(sid)["sheets"]]
    return {t: values(server, sid, t) for t in titles if t != "Sheet1"}


def counts(server: GoogleFakeServer) -> dict[str, int]:
    return dict(server.counters.by_method)


# -- request counts ------------------------------------------------------------------------


def test_a_read_is_one_metadata_and_one_values_request(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(s, rows_for(s, 50)) for s in SHEETS])
    server.reset_counters()
    got = GoogleSheetsTracker(sid, clients).read(SHEETS)
    print("read of 4 sheets x 50 rows:", counts(server))
    assert server.counters.total == 2
    assert counts(server) == {"sheets.spreadsheets.get": 1,
                              "sheets.spreadsheets.values.batchGet": 1}
    meta = server.requests_for("sheets.spreadsheets.get")[-1]
    assert "gridProperties" in meta.param("fields")  # masked: no theme, no formats
    batch = server.requests_for("sheets.spreadsheets.values.batchGet")[-1]
    assert batch.query["ranges"] == ["'Reports'", "'Patterns'", "'Actions'", "'Data quality'"]
    assert batch.param("valueRenderOption") == "FORMATTED_VALUE"
    assert set(got) == {s.title for s in SHEETS}
    assert [len(got[s.title]) for s in SHEETS] == [51] * 4


def test_missing_sheets_cost_no_values_request(server, clients, sid):
    assert GoogleSheetsTracker(sid, clients).read(SHEETS) == {}
    assert counts(server) == {"sheets.spreadsheets.get": 1}


def test_creating_all_sheets_with_500_rows_is_two_requests(server, clients, sid):
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read(SHEETS)
    server.reset_counters()
    tracker.write([created(s, rows_for(s, 500)) for s in SHEETS])
    sizes = {r.method_id: len(r.body or b"") for r in server.requests[-2:]}
    print("write creating 4 sheets x 500 rows:", counts(server), "bytes:", sizes)
    assert server.counters.total == 2
    assert counts(server) == {STRUCTURE: 1, VALUES: 1}
    assert server.requests_for(VALUES)[-1].json()["valueInputOption"] == "RAW"
    for spec in SHEETS:
        got = values(server, sid, spec.title)
        assert got[0] == spec.columns
        assert got[1:] == [[cell_text(v) for v in row] for row in rows_for(spec, 500)]


def test_twenty_changed_cells_across_sheets_are_one_request(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(s, rows_for(s, 30)) for s in SHEETS])
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read(SHEETS)
    server.reset_counters()
    changes = [SheetWrite(spec=spec, cells={(2 + i * 3, 2 + i): f"changed {spec.title} {i}"
                                            for i in range(5)}) for spec in SHEETS]
    tracker.write(changes)
    print("write of 20 changed cells in 4 sheets:", counts(server))
    assert counts(server) == {VALUES: 1}
    assert server.sheets.get_values(sid, "'Data quality'!F14") == [["changed Data quality 4"]]
    assert server.sheets.get_values(sid, "Reports!B2") == [["changed Reports 0"]]


def test_an_empty_write_sends_nothing(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(REPORTS)])
    server.reset_counters()
    GoogleSheetsTracker(sid, clients).write([SheetWrite(spec=REPORTS), SheetWrite(spec=ACTIONS)])
    assert server.counters.total == 0


def test_two_writes_to_one_sheet_in_a_call_add_it_once(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(ACTIONS, [["A-1"]]),
                                             SheetWrite(spec=ACTIONS, append=[["A-2"]])])
    assert [r[0] for r in values(server, sid, "Actions")] == ["Action ID", "A-1", "A-2"]


def test_a_second_write_appends_after_the_first_without_reading_again(server, clients, sid):
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read(SHEETS)
    tracker.write([created(PATTERNS, [["P-1"]])])
    server.reset_counters()
    tracker.write([SheetWrite(spec=PATTERNS, append=[["P-2"], ["P-3"]])])
    assert counts(server) == {VALUES: 1}
    assert [r[0] for r in values(server, sid, "Patterns")] == ["Pattern ID", "P-1", "P-2", "P-3"]


# -- what a new sheet looks like -----------------------------------------------------------


def test_new_sheet_layout(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(REPORTS, [["NM-1", 1]]),
                                             created(DATA_QUALITY)])
    meta = server.sheets.sheet(sid, "Reports")
    col = {title: i for i, title in enumerate(REPORTS.columns)}  # 0-based, as the API
    assert meta["properties"]["gridProperties"] == {
        "rowCount": 1000, "columnCount": len(REPORTS.columns), "frozenRowCount": 1}
    assert meta["basicFilter"]["range"] == {
        "sheetId": meta["properties"]["sheetId"], "startRowIndex": 0, "endRowIndex": 1000,
        "startColumnIndex": 0, "endColumnIndex": len(REPORTS.columns)}
    assert server.sheets.cell(sid, "Reports!A1").user_entered_format["textFormat"] == {
        "bold": True}

    dropdowns = {v["range"]["startColumnIndex"]: v for v in meta["dataValidations"]}
    assert set(dropdowns) == {col[t] for t in REPORTS.dropdowns}
    rule = dropdowns[col["Triage status"]]["rule"]
    assert [v["userEnteredValue"] for v in rule["condition"]["values"]] == [
        "In review", "Triaged", "Closed"]
    assert rule["condition"]["type"] == "ONE_OF_LIST"
    assert not rule.get("strict")  # a warning: managers may type other text
    assert dropdowns[col["Triage status"]]["range"]["startRowIndex"] == 1  # not the header

    protected = meta["protectedRanges"]
    assert all(p["warningOnly"] for p in protected)
    covered = {c for p in protected
               for c in range(p["range"]["startColumnIndex"], p["range"]["endColumnIndex"])}
    system = {col[t] for t in REPORTS.columns if t not in REPORTS.manager_columns}
    assert covered == system
    assert all("endRowIndex" not in p["range"] for p in protected)  # whole columns

    (rule,) = meta["conditionalFormats"]
    assert rule["ranges"] == [{"sheetId": meta["properties"]["sheetId"], "startRowIndex": 1,
                               "startColumnIndex": col["Overdue"],
                               "endColumnIndex": col["Overdue"] + 1}]
    assert rule["booleanRule"]["condition"] == {"type": "TEXT_EQ",
                                                "values": [{"userEnteredValue": "overdue"}]}
    background = rule["booleanRule"]["format"]["backgroundColor"]
    assert background["red"] > background["green"]

    quality = server.sheets.sheet(sid, "Data quality")
    assert "conditionalFormats" not in quality and quality["dataValidations"] == []
    assert server.sheets.cell(sid, "'Data quality'!L1").user_entered_format[
        "backgroundColor"]  # the managers' Notes column header is shaded


def test_strict_protection_names_the_service_account_and_off_adds_none(key_info):
    with GoogleFakeServer(require_auth=True) as server:
        sid = server.sheets.create_spreadsheet("Tracker")
        clients = _clients(server, _service_account(server, key_info))
        GoogleSheetsTracker(sid, clients, protection="strict").write([created(ACTIONS)])
        GoogleSheetsTracker(sid, clients, protection="off").write([created(PATTERNS)])
        protected = server.sheets.sheet(sid, "Actions")["protectedRanges"]
        assert protected and all(p["editors"] == {"users": [SERVICE_ACCOUNT]}
                                 and not p.get("warningOnly") for p in protected)
        assert "protectedRanges" not in server.sheets.sheet(sid, "Patterns")
        assert {use.method_id for use in server.auth_log} >= {STRUCTURE, VALUES}
        server.assert_no_violations()
    with pytest.raises(ValueError, match="protection"):
        GoogleSheetsTracker("x", GoogleClients(), protection="locked")


# -- values --------------------------------------------------------------------------------


def test_submitted_text_is_stored_as_text_never_as_a_formula(server, clients, sid):
    hostile = ['=HYPERLINK("http://evil.example","click")', "+44 7700 900123", "=1+1", "@x"]
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.write([created(REPORTS, [["NM-1", h] for h in hostile])])
    tracker.write([SheetWrite(spec=REPORTS, cells={(2, 3): "=IMPORTXML(\"http://x\")"})])
    for row, text in enumerate(hostile, start=2):
        cell = server.sheets.cell(sid, f"Reports!B{row}")
        assert cell.formula is None and cell.value == text
    assert server.sheets.cell(sid, "Reports!C2").formula is None
    got = GoogleSheetsTracker(sid, clients).read([REPORTS])["Reports"]
    assert [r[1] for r in got[1:]] == hostile


def test_text_a_cell_cannot_hold_is_sent_safe_and_cut(server, clients, sid):
    note = " … [cut: 100,000 characters; the full text is in the store]"
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.write([created(REPORTS, [["NM-1", "a\x00b\r\nc", "x" * 100_000, "\u202eשלום 😀"]])])
    tracker.write([SheetWrite(spec=REPORTS, cells={(2, 5): "tab\x0bbed\ud800"})])
    sent = [json.loads(r.body)["data"] for r in server.requests_for(VALUES)]
    row = sent[0][-1]["values"][0]
    assert row[1:] == ["a\ufffdb\nc", "x" * (32_767 - len(note)) + note, "\u202eשלום 😀"]
    assert sent[1][0]["values"] == [["tab\ufffdbed\ufffd"]]
    got = GoogleSheetsTracker(sid, clients).read([REPORTS])["Reports"]
    assert got[1][1:5] == [*row[1:], "tab\ufffdbed\ufffd"]


def test_a_pattern_past_the_cell_limit_is_written_once(server, clients, sid):
    """Its "Report IDs" run past the 32,767 characters the trackers keep: the next plan
    compares the cut text it reads back with the cut text it wants, and sends nothing."""
    desired = long_pattern_rows()

    def plan(tracker: GoogleSheetsTracker) -> SheetWrite:
        state = read_sheet(PATTERNS, tracker.read([PATTERNS]).get(PATTERNS.title))
        return plan_sheet(state, desired, {})[0]

    first = GoogleSheetsTracker(sid, clients)
    first.write([plan(first)])
    assert len(server.sheets.get_values(sid, "Patterns!E2")[0][0]) == 32_767
    server.reset_counters()
    again = GoogleSheetsTracker(sid, clients)
    write = plan(again)
    again.write([write])
    assert not write and counts(server) == {"sheets.spreadsheets.get": 1,
                                            "sheets.spreadsheets.values.batchGet": 1}


def test_none_clears_a_cell_and_is_left_empty_in_an_appended_row(server, clients, sid):
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.write([created(PATTERNS, [["P-1", "x", None, "3", "", None, "7"]])])
    tracker.write([SheetWrite(spec=PATTERNS, cells={(2, 2): None, (2, 4): float("nan")})])
    got = GoogleSheetsTracker(sid, clients).read([PATTERNS])["Patterns"]
    assert got[1][:7] == ["P-1", None, None, None, None, None, "7"]
    assert len(got[1]) == len(PATTERNS.columns)  # padded as the XLSX tracker's rows are


def test_sheet_names_are_matched_regardless_of_case(server, clients, sid):
    server.sheets.add_sheet(sid, "reports", rows=10, cols=5)
    server.sheets.set_values(sid, "reports!A1", [["Report ID"], ["NM-1"]])
    tracker = GoogleSheetsTracker(sid, clients)
    assert tracker.read([REPORTS]) == {"Reports": [["Report ID"], ["NM-1"]]}
    tracker.write([SheetWrite(spec=REPORTS, append=[["NM-2"]])])
    assert values(server, sid, "reports") == [["Report ID"], ["NM-1"], ["NM-2"]]


# -- the grid ------------------------------------------------------------------------------


def test_appended_rows_beyond_the_grid_grow_it(server, clients, sid):
    GoogleSheetsTracker(sid, clients).write([created(REPORTS, rows_for(REPORTS, 990))])
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([REPORTS])
    server.reset_counters()
    tracker.write([SheetWrite(spec=REPORTS, append=rows_for(REPORTS, 1020)[990:])])
    assert counts(server) == {STRUCTURE: 1, VALUES: 1}
    structure = server.requests_for(STRUCTURE)[-1]
    kinds = [next(iter(r)) for r in structure.json()["requests"]]
    assert kinds[0] == "appendDimension"
    meta = server.sheets.sheet(sid, "Reports")
    assert meta["properties"]["gridProperties"]["rowCount"] == 1021
    assert meta["basicFilter"]["range"]["endRowIndex"] == 1021  # the filter follows
    assert server.sheets.cell(sid, "Reports!X1021").data_validation is not None  # dropdowns
    got = values(server, sid, "Reports")
    assert len(got) == 1021 and got[-1][0] == "K-01020"
    assert sum(1 for p in meta["protectedRanges"]) == 3  # nothing added twice


def test_a_filter_set_by_a_manager_keeps_its_criteria_when_the_grid_grows(server, clients, sid):
    server.sheets.add_sheet(sid, "Actions", rows=3, cols=len(ACTIONS.columns))
    server.sheets.set_values(sid, "Actions!A1", [ACTIONS.columns, ["A-0001"]])
    sheet_id = server.sheets.sheet(sid, "Actions")["properties"]["sheetId"]
    spec = {"range": {"sheetId": sheet_id}, "sortSpecs": [
        {"dimensionIndex": 1, "sortOrder": "DESCENDING"}]}
    requests.post(f"{server.url}/v4/spreadsheets/{sid}:batchUpdate", timeout=5,
                  json={"requests": [{"setBasicFilter": {"filter": spec}}]}).raise_for_status()
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([ACTIONS])
    tracker.write([SheetWrite(spec=ACTIONS, append=[["A-0002"], ["A-0003"], ["A-0004"]],
                              header={len(ACTIONS.columns) + 1: "Manager notes"})])
    meta = server.sheets.sheet(sid, "Actions")
    assert meta["properties"]["gridProperties"] == {"rowCount": 5,
                                                    "columnCount": len(ACTIONS.columns) + 1}
    assert meta["basicFilter"]["range"]["endRowIndex"] == 5
    assert meta["basicFilter"]["range"]["endColumnIndex"] == len(ACTIONS.columns) + 1
    assert meta["basicFilter"]["sortSpecs"] == spec["sortSpecs"]
    last = len(ACTIONS.columns) + 1
    assert server.sheets.cell(sid, f"Actions!{rowcol_to_a1(1, last)}").user_entered_format == {
        "textFormat": {"bold": True}}


# -- errors --------------------------------------------------------------------------------


def test_a_spreadsheet_not_shared_names_the_service_account(key_info):
    with GoogleFakeServer(require_auth=True) as server:
        sid = server.sheets.create_spreadsheet("Tracker")
        server.sheets.denied.add(sid)
        tracker = GoogleSheetsTracker(sid, _clients(server, _service_account(server, key_info)))
        with pytest.raises(ApiError) as err:
            tracker.read(SHEETS)
        message = str(err.value)
        print(message)
        assert f"the service account {SERVICE_ACCOUNT} cannot open spreadsheet {sid}" in message
        assert message.endswith(f"share it with {SERVICE_ACCOUNT} as an editor")
        assert "\n" not in message and err.value.status == 403
        assert server.counters.by_api["sheets"] == 1  # a 403 is not retried
        server.assert_no_violations()


def test_other_refusals_say_what_to_fix(server, clients, sid, key_info):
    server.sheets.denied.add(sid)
    with pytest.raises(ApiError) as err:
        GoogleSheetsTracker(sid, clients).read(SHEETS)  # user credentials: no email to name
    assert str(err.value).endswith(f"the account that ran `nearmiss auth google` cannot open "
                                   f"spreadsheet {sid}: share it with that account as an editor")
    with GoogleFakeServer(require_auth=True) as strict:
        other = strict.sheets.create_spreadsheet("Tracker")
        info = {**key_info, "token_uri": strict.url + "/token"}
        forms_only = service_account.Credentials.from_service_account_info(
            info, scopes=SCOPES["forms"])
        with pytest.raises(ApiError, match="lack the spreadsheets scope"):
            GoogleSheetsTracker(other, _clients(strict, forms_only)).read(SHEETS)
    disabled = ApiError("reading: HTTP 403: Google Sheets API has not been used in project 12 "
                        "before or it is disabled.", 403)
    assert "not enabled" in (GoogleSheetsTracker(sid, clients)._explain(disabled) or "")


def test_an_unknown_spreadsheet_names_the_setting(server, clients):
    tracker = GoogleSheetsTracker("1NoSuchSpreadsheet", clients)
    with pytest.raises(ApiError) as err:
        tracker.write([created(REPORTS)])
    print(err.value)
    assert str(err.value).endswith(
        "spreadsheet 1NoSuchSpreadsheet not found: check tracker.spreadsheet_id")


def test_a_browser_url_is_taken_for_its_id(server, clients, sid):
    url = f"https://docs.google.com/spreadsheets/d/{sid}/edit#gid=0"
    assert GoogleSheetsTracker(url, clients).spreadsheet_id == sid


# -- retries -------------------------------------------------------------------------------


def _run_all(tracker_for: Any) -> None:
    """Create, update and append, as three runs of the pipeline would."""
    tracker = tracker_for()
    tracker.read(SHEETS)
    tracker.write([created(s, rows_for(s, 40)) for s in SHEETS])
    tracker = tracker_for()
    tracker.read(SHEETS)
    tracker.write([SheetWrite(spec=s, cells={(3, 2): "updated", (5, 4): None},
                              append=rows_for(s, 45)[40:]) for s in SHEETS])
    tracker = tracker_for()
    tracker.read(SHEETS)
    tracker.write([SheetWrite(spec=REPORTS, append=rows_for(REPORTS, 1000)[45:])])


def test_injected_failures_end_in_the_same_sheets(server, clients, sid):
    _run_all(lambda: GoogleSheetsTracker(sid, clients))
    expected = content(server, sid)

    retried = server.sheets.create_spreadsheet("Retried", ["Sheet1"])
    server.faults.fail_next(2, 429, retry_after=1, only="sheets.spreadsheets.get")
    server.faults.fail_next(1, 503, only="sheets.spreadsheets.values.batchGet")
    server.faults.fail_next(2, 500, only=STRUCTURE)
    server.faults.fail_next(1, 429, only=VALUES)
    _run_all(lambda: GoogleSheetsTracker(retried, clients))
    assert len(server.faults.injected) == 6
    assert content(server, retried) == expected

    flaky = server.sheets.create_spreadsheet("Flaky", ["Sheet1"])
    server.reset_counters()
    server.faults.reset()
    server.faults.set_rate(0.3, statuses=(429, 500, 503), seed=SEED)
    _run_all(lambda: GoogleSheetsTracker(flaky, clients))
    injected = len(server.faults.injected)
    server.faults.reset()
    print(f"3 runs at a 30% fault rate: {injected} faults injected,", counts(server))
    assert injected > 0
    assert content(server, flaky) == expected
    assert len(server.sheets.metadata(flaky)["sheets"]) == 5


class _LoseAnswer(HTTPAdapter):
    """Sends to the fake, then loses the answer of the first structural batchUpdate: Google
    applied it, the client saw a dropped connection."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.lost = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        request.url = request.url.replace(HOSTS["sheets"], self.target, 1)
        response = super().send(request, **kwargs)
        if request.url.split("?")[0].endswith(":batchUpdate") and "/values" not in (
                request.url) and not self.lost:
            self.lost += 1
            raise requests.ConnectionError("connection reset by peer")
        return response


class _LosingClients(GoogleClients):
    def __init__(self, server: GoogleFakeServer) -> None:
        super().__init__(endpoint=server.url, sleep=lambda s: None,
                         max_requests_per_minute=100000)
        self.adapter = _LoseAnswer(server.url)

    def session(self, api: str = "sheets") -> requests.Session:
        session = requests.Session()
        session.mount(HOSTS[api], self.adapter)
        return session


def test_a_retried_structural_batch_does_not_add_a_sheet_twice(server, sid):
    clients = _LosingClients(server)
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read(SHEETS)
    tracker.write([created(s, rows_for(s, 3)) for s in (REPORTS, ACTIONS)])
    assert clients.adapter.lost == 1
    # the retry re-read the sheets, found the batch applied and sent nothing more
    assert server.counters[STRUCTURE] == 1
    assert server.counters["sheets.spreadsheets.get"] == 2
    titles = [s["properties"]["title"] for s in server.sheets.metadata(sid)["sheets"]]
    assert titles == ["Sheet1", "Reports", "Actions"]
    assert len(server.sheets.sheet(sid, "Reports")["protectedRanges"]) == 3
    assert len(values(server, sid, "Actions")) == 4


def test_a_lost_answer_to_a_grid_growth_does_not_grow_it_twice(server, sid):
    server.sheets.add_sheet(sid, "Patterns", rows=2, cols=len(PATTERNS.columns))
    server.sheets.set_values(sid, "Patterns!A1", [PATTERNS.columns, ["P-1"]])
    clients = _LosingClients(server)
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([PATTERNS])
    tracker.write([SheetWrite(spec=PATTERNS, append=[["P-2"], ["P-3"]])])
    grid = server.sheets.sheet(sid, "Patterns")["properties"]["gridProperties"]
    assert grid["rowCount"] == 4
    assert [r[0] for r in values(server, sid, "Patterns")] == ["Pattern ID", "P-1", "P-2", "P-3"]


def test_request_bodies_are_json_the_api_accepts(server, clients, sid):
    """Numbers stay numbers, dates go as serial days; odd Python values become text rather
    than a crash."""
    import numpy as np

    tracker = GoogleSheetsTracker(sid, clients)
    tracker.write([created(PATTERNS, [["P-1", np.int64(3), 2.5, dt.date(2026, 11, 20),
                                       pd.Timestamp("2026-11-20 10:05"), np.bool_(True)]])])
    (data,) = server.requests_for(VALUES)
    row = json.loads(data.body)["data"][-1]["values"][0]
    assert row == ["P-1", 3, 2.5, 46346, pytest.approx(46346 + 605 / 1440), True]
    assert values(server, sid, "Patterns")[1] == [
        "P-1", "3", "2.5", "2026-11-20", "2026-11-20 10:05", "TRUE"]


# -- dates and column widths ---------------------------------------------------------------


def date_rows() -> list[list[Any]]:
    """Reports rows with the system's date cells (a time, midnight, a missing one) and a
    long description."""
    at = pd.Timestamp("2026-11-20 10:07")
    rows = [["NM-000001", 1, at, (at - pd.Timedelta(hours=2)).to_pydatetime()],
            ["NM-000002", 1, pd.Timestamp("2026-11-21 00:00"), None],
            ["NM-000003", 2, at, at]]
    what = REPORTS.columns.index("What happened")
    rows[2] += [None] * (what - 4) + ["MAR unsigned " * 20]
    return rows


def test_dates_are_sheet_dates_that_read_back_as_written(server, clients, sid):
    """A date is a serial number in a cell with a date format: the read (FORMATTED_VALUE)
    gives the text the plan compares, so a second plan writes nothing."""
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([REPORTS])
    tracker.write([created(REPORTS, date_rows())])
    cell = server.sheets.cell(sid, "Reports!C2")
    assert cell.value == pytest.approx(46346 + 607 / 1440)
    assert cell.user_entered_format["numberFormat"] == {"type": "DATE_TIME",
                                                        "pattern": "yyyy-mm-dd hh:mm"}
    # One format request per date column: the empty cell between two dates joins the run.
    structure = server.requests_for(STRUCTURE)[-1].json()["requests"]
    dated = [r["repeatCell"]["range"] for r in structure if "numberFormat" in str(r)]
    assert [(d["startColumnIndex"], d["startRowIndex"], d["endRowIndex"]) for d in dated] == [
        (2, 1, 4), (3, 1, 4)]
    read = GoogleSheetsTracker(sid, clients).read([REPORTS])["Reports"]
    assert [r[2:4] for r in read[1:]] == [["2026-11-20 10:07", "2026-11-20 08:07"],
                                         ["2026-11-21 00:00", None],
                                         ["2026-11-20 10:07", "2026-11-20 10:07"]]
    desired = pd.DataFrame([r[:4] for r in date_rows()],
                           columns=["Report ID", "Version", "Submitted", "Occurred"]
                           ).set_index("Report ID", drop=False)
    state = read_sheet(REPORTS, read)
    write, added, restored = plan_sheet(state, desired, {})
    assert not write and not added and not restored

    # Changed dates and appended rows are formatted in the same structural request.
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([REPORTS])
    server.reset_counters()
    tracker.write([SheetWrite(spec=REPORTS, cells={(3, 4): dt.date(2026, 11, 22)},
                              append=[["NM-000004", 1, pd.Timestamp("2026-11-23 09:00")]])])
    assert counts(server) == {STRUCTURE: 1, VALUES: 1}
    assert values(server, sid, "Reports")[2][3] == "2026-11-22"
    assert values(server, sid, "Reports")[4][2] == "2026-11-23 09:00"


def test_a_new_sheet_has_columns_sized_to_its_content_and_long_text_wrapped(server, clients,
                                                                            sid):
    GoogleSheetsTracker(sid, clients).write([created(REPORTS, date_rows())])
    sizes = server.sheets.sheet(sid, "Reports")["dimensionProperties"]["COLUMNS"]
    widths = {i + 1: entry.get("pixelSize", 100) for i, entry in sizes.items()}
    titles = dict(enumerate(REPORTS.columns, 1))
    submitted = REPORTS.columns.index("Submitted") + 1
    what = REPORTS.columns.index("What happened") + 1
    assert widths[submitted] >= 16 * 7  # "2026-11-20 10:07" in full
    assert widths[what] == pixels(MAX_WIDTH)  # capped
    for col, title in titles.items():
        assert widths[col] >= len(title) * 7  # never narrower than its header
    wrapped = server.sheets.cell(sid, f"Reports!{rowcol_to_a1(4, what)}")
    assert wrapped.user_entered_format["wrapStrategy"] == "WRAP"
    assert "wrapStrategy" not in server.sheets.cell(sid, "Reports!C3").user_entered_format


def test_a_large_first_write_is_split_into_requests_under_two_megabytes(server, clients, sid):
    tracker = GoogleSheetsTracker(sid, clients)
    tracker.read([REPORTS])
    rows = [[f"NM-{i:06d}", 1, "x" * 300] for i in range(1, 8001)]
    tracker.write([SheetWrite(spec=REPORTS, create=True,
                              header=dict(enumerate(REPORTS.columns, 1)), append=rows)])
    sizes = [len(r.body) for r in server.requests
             if r.method_id == "sheets.spreadsheets.values.batchUpdate"]
    assert len(sizes) >= 2 and max(sizes) < 2_100_000
    got = server.sheets.get_values(sid, "Reports!A:A")
    assert len(got) == 8001 and got[-1] == ["NM-008000"]
    server.assert_no_violations()
