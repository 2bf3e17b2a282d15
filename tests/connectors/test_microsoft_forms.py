"""The Microsoft Forms response workbook read through Graph: found in each of the four ways
a config can say where it is, remembered, read in the deployment's time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.settings import Workbook
from connectors.errors import SourceError
from connectors.microsoft_forms import MicrosoftFormsGraphSource
from tests.fakes.microsoft import MicrosoftFakeServer
from tests.fakes.microsoft_deployment import HOST, SITE, graph_clients, tenant

HEADER = ["ID", "Start time", "Completion time", "Email", "Name", "What happened?",
          "When did it happen?"]
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def form(tmp_path):
    with MicrosoftFakeServer() as server:
        site = tenant(server, roles=("Files.ReadWrite.All", "Mail.Send"))
        owner = "registered.manager@oakfield-care.example"
        server.graph.add_user(owner)
        personal = server.graph.add_user_drive(owner)
        rows = [[1, datetime(2026, 10, 25, 1, 30), datetime(2026, 10, 25, 1, 40),
                 "kim@example.org", "Kim", "Label mismatch", "20:00"]]
        group = server.graph.forms_workbook(server.graph.drive_of_site(site),
                                            "Forms/Near miss.xlsx", HEADER, rows)
        mine = server.graph.forms_workbook(personal, "Near miss (personal).xlsx", HEADER, rows)
        yield server, graph_clients(server, tmp_path), {"group": group, "personal": mine,
                                                        "owner": owner}
        server.assert_no_violations()


def ways(server: MicrosoftFakeServer, items: dict) -> list[Workbook]:
    item = server.graph.item_json(items["group"])
    return [Workbook(site=HOST + SITE, path="Forms/Near miss.xlsx"),
            Workbook(drive_id=item["parentReference"]["driveId"], item_id=item["id"]),
            Workbook(link=server.graph.share_link(items["group"])),
            Workbook(user=items["owner"], path="Near miss (personal).xlsx")]


def test_the_workbook_is_found_each_way_and_read_the_same(form):
    server, clients, items = form
    pulls = [MicrosoftFormsGraphSource("form", where, clients, LONDON).pull(None)
             for where in ways(server, items)]
    for pulled in pulls:
        (response,) = pulled.responses
        assert response.response_id == "1" and response.respondent_name == "Kim"
        assert response.answers == {"What happened?": "Label mismatch",
                                    "When did it happen?": "20:00"}
        # 01:40 on the night the clocks went back: the first of the two, in summer time
        assert response.submitted_at == pd.Timestamp("2026-10-25 00:40", tz="UTC")
        assert set(pulled.questions) == {"What happened?", "When did it happen?"}


def test_an_unchanged_workbook_costs_one_small_request(form):
    server, clients, items = form
    source = MicrosoftFormsGraphSource("form", ways(server, items)[0], clients, LONDON)
    first = source.pull(None)
    server.requests.clear()
    again = source.pull(first.watermark)
    assert again.unchanged and [r.method_id for r in server.requests] == ["graph.driveItem.get"]
    server.graph.append_rows(items["group"], "Sheet1", [[2, datetime(2026, 11, 2, 9),
                                                         datetime(2026, 11, 2, 9, 5), None,
                                                         None, "Pickup moved", None]])
    later = source.pull(first.watermark)
    assert not later.unchanged and len(later.responses) == 2


def test_a_workbook_that_is_not_a_responses_workbook_is_named(form):
    server, clients, _ = form
    site = next(iter(server.graph.sites))
    server.graph.add_workbook(server.graph.drive_of_site(site), "Budget.xlsx",
                              {"Sheet1": [["Month", "Spend"], ["Jan", 10]]})
    source = MicrosoftFormsGraphSource(
        "form", Workbook(site=HOST + SITE, path="Budget.xlsx"), clients, LONDON)
    with pytest.raises(SourceError) as err:
        source.pull(None)
    assert str(err.value) == ("form: Budget.xlsx has no 'ID', 'Completion time' column: is it "
                              "a Microsoft Forms responses workbook?")


def test_a_wrong_path_says_where_to_look(form):
    _, clients, _ = form
    source = MicrosoftFormsGraphSource(
        "form", Workbook(site=HOST + SITE, path="Nowhere.xlsx"), clients, LONDON)
    with pytest.raises(Exception) as err:
        source.pull(None)
    assert str(err.value) == ("form: reading the Microsoft Forms workbook: the Microsoft "
                              "Forms response workbook was not found: check sources.workbook "
                              "(site, path, ids or link)")


def test_a_question_renamed_on_the_form_comes_under_its_new_title(form):
    """The pipeline names the renamed question and holds the reports that answer it, as
    for every source (tests/jobs/test_pipeline.py): the source only reports it faithfully."""
    server, clients, items = form
    source = MicrosoftFormsGraphSource("form", ways(server, items)[0], clients, LONDON)
    before = source.pull(None)
    server.graph.set_cell(items["group"], "Sheet1", 1, 6, "What went wrong?")
    after = source.pull(before.watermark)
    assert set(after.questions) == {"What went wrong?", "When did it happen?"}
    assert after.responses[0].answers["What went wrong?"] == "Label mismatch"


def test_odd_and_hostile_cells_mark_their_response_and_stop_nothing(form):
    """Another form's titles, text times in US order, control characters, "N/A", an
    error cell, a time nobody can read and a row without an ID: each marks at most its
    own response."""
    server, clients, _ = form
    site = next(iter(server.graph.sites))
    header = ["ID", "Start time", "Completion time", "Email", "Name", "Describe the event",
              "Date of event"]
    rows = [
        [1, "11/3/2026 14:05", "11/13/2026 14:20", "jo@example.org", "Jo",
         "bell\x07 and\x00 nul", "N/A"],
        [2, datetime(2026, 3, 29, 1, 30), datetime(2026, 3, 29, 1, 40), None, None,
         "\u202egnirts desrever", "#N/A"],  # 01:30 on the night the clocks go forward
        [3, "yesterday", "not a time", None, None, "kept anyway", None],
        [None, None, None, None, None, "a row without an ID", None],
    ]
    server.graph.forms_workbook(server.graph.drive_of_site(site), "Other form.xlsx",
                                header, rows)
    pulled = MicrosoftFormsGraphSource(
        "other", Workbook(site=HOST + SITE, path="Other form.xlsx"), clients, LONDON
    ).pull(None)
    by_id = {r.response_id: r for r in pulled.responses}
    assert set(by_id) == {"1", "2", "3"}  # the row without an ID is not a response
    assert by_id["1"].submitted_at == pd.Timestamp("2026-11-13 14:20", tz="UTC")  # US order
    assert by_id["1"].answers["Date of event"] == "N/A"  # an answer, not a blank
    assert "\x07" in by_id["1"].answers["Describe the event"]  # kept as given; marked later
    assert by_id["2"].submitted_at == pd.Timestamp("2026-03-29 01:40", tz="UTC")
    assert by_id["2"].answers == {"Describe the event": "\u202egnirts desrever",
                                  "Date of event": "#N/A"}
    assert by_id["3"].submitted_at is None and by_id["3"].unreadable_timestamp == "not a time"
    assert by_id["3"].answers == {"Describe the event": "kept anyway"}
