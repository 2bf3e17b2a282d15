"""GoogleFormsSource against the Forms fake over real HTTP: paging, the incremental filter
with its overlap under both readings of "submitted after", dedupe, edits, drift, errors and
injected faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from connectors.errors import ApiError
from connectors.google_forms import (
    PAGE_SIZE,
    GoogleFormsSource,
    answer_value,
    form_questions,
    parse_time,
    zulu,
)
from connectors.store import Store
from tests.fakes.google import GoogleFakeServer, QuestionSpec
from tests.fakes.google_credentials import fake_clients

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
LIST = "forms.forms.responses.list"


def questions() -> list[QuestionSpec]:
    """Fresh specs for each form: the fake renames a question by changing its spec."""
    return [
        QuestionSpec("What happened?", "paragraph", required=True, question_id="q-what"),
        QuestionSpec("Which service?", "dropdown", options=["Oak House", "Riverside"],
                     question_id="q-service"),
        QuestionSpec("What contributed? (tick all that apply)", "checkbox",
                     options=["Handover", "Time pressure", "Staffing levels"],
                     question_id="q-factors"),
        QuestionSpec("When did it happen?", "date", settings={"includeTime": True},
                     question_id="q-when"),
        QuestionSpec("How bad could it have been?", "scale", question_id="q-harm"),
    ]


@pytest.fixture
def server(request) -> Iterator[GoogleFakeServer]:
    """A fake filtering on `lastSubmittedTime`, or on the `filter_on` the test is
    parametrized with (the API does not say which timestamp it compares)."""
    with GoogleFakeServer(filter_on=getattr(request, "param", "lastSubmittedTime"),
                          seed=11) as srv:
        yield srv


both_readings = pytest.mark.parametrize("server", ["lastSubmittedTime", "createTime"],
                                        indirect=True)


@pytest.fixture
def form_id(server) -> str:
    return server.forms.create_form("Near-miss report", questions(), collect_email="VERIFIED")


def source(server: GoogleFakeServer, form_id: str, **kwargs) -> GoogleFormsSource:
    return GoogleFormsSource("near-miss", form_id, fake_clients(server), **kwargs)


def add(server: GoogleFakeServer, form_id: str, text: str, at: datetime, **answers) -> str:
    return server.forms.add_response(form_id, {"q-what": text, **answers}, at=at,
                                     email="kim@example.org")["responseId"]


def filters(server: GoogleFakeServer) -> list[str | None]:
    return [r.param("filter") for r in server.requests if r.method_id == LIST]


def test_answers_times_and_questions(server, form_id):
    rid = add(server, form_id, "Label mismatch", T0, **{
        "q-service": "Oak House", "q-factors": ["Handover"],
        "q-when": datetime(2026, 11, 15, 20, 10), "q-harm": 4})
    pulled = source(server, form_id).pull(None)
    (r,) = pulled.responses
    assert r.response_id == rid and r.source == "near-miss"
    assert r.submitted_at == pd.Timestamp(T0) and str(r.submitted_at.tz) == "UTC"
    assert r.answers == {"q-what": "Label mismatch", "q-service": "Oak House",
                         "q-factors": ["Handover"],  # a checkbox answer is always a list
                         "q-when": "2026-11-15 20:10", "q-harm": "4"}
    assert r.respondent_email == "kim@example.org"
    assert pulled.questions == {q.question_id: q.title for q in questions()}
    assert r.titles == {q: pulled.questions[q] for q in r.answers}
    assert pulled.watermark == server.forms.responses(form_id)[0]["lastSubmittedTime"]
    assert filters(server) == [None]
    server.assert_no_violations()


def test_grid_rows_file_uploads_and_grades_from_the_documented_shapes():
    form = {"items": [
        {"itemId": "i1", "title": "Checks done", "questionGroupItem": {
            "grid": {"columns": {"type": "CHECKBOX", "options": [{"value": "Am"},
                                                                 {"value": "Pm"}]}},
            "questions": [{"questionId": "g1", "rowQuestion": {"title": "Fridge"}},
                          {"questionId": "g2", "rowQuestion": {"title": "Freezer"}}]}},
        {"itemId": "i2", "title": "Section 2", "pageBreakItem": {}},
        {"itemId": "i3", "textItem": {}},
        {"itemId": "i4", "title": "Photo", "questionItem": {"question": {
            "questionId": "f1", "fileUploadQuestion": {"folderId": "x", "maxFiles": 5}}}},
        {"itemId": "i5", "questionItem": {"question": {"questionId": "u1",
                                                       "textQuestion": {}}}},
    ]}
    titles, multi = form_questions(form)
    assert titles == {"g1": "Checks done [Fridge]", "g2": "Checks done [Freezer]",
                      "f1": "Photo", "u1": "untitled question u1"}
    assert multi == {"g1", "g2"}
    upload = {"questionId": "f1", "fileUploadAnswers": {"answers": [
        {"fileId": "1a", "fileName": "floor.jpg", "mimeType": "image/jpeg"},
        {"fileId": "1b", "fileName": "lift.jpg", "mimeType": "image/jpeg"}]}}
    assert answer_value(upload, False) == ["floor.jpg", "lift.jpg"]
    graded = {"questionId": "q", "grade": {"score": 1, "correct": True},
              "textAnswers": {"answers": [{"value": "Yes"}]}}
    assert answer_value(graded, False) == "Yes"
    assert answer_value({"questionId": "q", "grade": {"score": 0}}, False) is None


def test_timestamps_in_every_precision_and_the_filter_form():
    for text in ("2026-11-16T09:00:00Z", "2026-11-16T09:00:00.123Z",
                 "2026-11-16T09:00:00.123456Z", "2026-11-16T09:00:00.123456789Z"):
        assert parse_time(text).tz_convert("UTC").floor("s") == pd.Timestamp(T0)
    assert parse_time("2026-11-16T09:00:00.5Z") > parse_time("2026-11-16T09:00:00Z")
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert zulu(parse_time("2026-11-16T09:00:00.123456789Z")) == (
        "2026-11-16T09:00:00.123456789Z")


def test_paging_at_the_real_page_cap():
    with GoogleFakeServer(seed=5) as server:
        form_id = server.forms.create_form("Near-miss report", questions()[:1])
        for i in range(2 * PAGE_SIZE + 1):
            server.forms.add_response(form_id, {"q-what": f"report {i}"})
        pulled = source(server, form_id).pull(None)
        assert len({r.response_id for r in pulled.responses}) == 2 * PAGE_SIZE + 1
        lists = [r for r in server.requests if r.method_id == LIST]
        assert [r.param("pageSize") for r in lists] == [str(PAGE_SIZE)] * 3
        assert [bool(r.param("pageToken")) for r in lists] == [False, True, True]
        server.assert_no_violations()


@both_readings
def test_incremental_pull_with_overlap_and_dedupe(server, form_id):
    src = source(server, form_id, page_size=2)  # small pages: the filter rides every page
    first_ids = [add(server, form_id, f"early {i}", T0 + timedelta(hours=i)) for i in range(5)]
    first = src.pull(None)
    assert sorted(r.response_id for r in first.responses) == sorted(first_ids)
    mark = parse_time(first.watermark)
    assert mark == pd.Timestamp(T0 + timedelta(hours=4))

    # A response stamped just before the watermark that the first read did not see yet
    # (the API is eventually consistent), a new one, and an edit of a recent one.
    late = add(server, form_id, "late arrival", T0 + timedelta(hours=4, minutes=-5))
    new = add(server, form_id, "new", T0 + timedelta(hours=6))
    server.forms.edit_response(form_id, first_ids[4], {"q-what": "early 4, with more"},
                               at=T0 + timedelta(hours=7))
    server.requests.clear()
    second = src.pull(first.watermark)
    ids = [r.response_id for r in second.responses]
    assert len(ids) == len(set(ids))  # deduplicated
    assert {late, new, first_ids[4]} <= set(ids)
    assert first_ids[0] not in ids  # hours before the overlap
    edited = next(r for r in second.responses if r.response_id == first_ids[4])
    assert edited.answers["q-what"] == "early 4, with more"
    assert edited.submitted_at == pd.Timestamp(T0 + timedelta(hours=7))
    assert second.watermark == zulu(pd.Timestamp(T0 + timedelta(hours=7))).replace(
        ".000000000", "")
    expected = f"timestamp >= {zulu(mark - timedelta(minutes=10))}"
    assert set(filters(server)) == {expected}
    server.assert_no_violations()


@both_readings
def test_an_edit_of_an_old_response_and_which_timestamp_is_filtered(server, form_id):
    """Under `createTime` filtering an incremental read cannot see an edit to a response
    created before the overlap; a full read (no watermark) always does."""
    old = add(server, form_id, "old", T0)
    add(server, form_id, "a day later", T0 + timedelta(days=1))
    src = source(server, form_id)
    mark = src.pull(None).watermark
    server.forms.edit_response(form_id, old, {"q-what": "old, corrected"},
                               at=T0 + timedelta(days=2))
    seen = {r.response_id: r for r in src.pull(mark).responses}
    if server.forms.filter_on == "lastSubmittedTime":
        assert seen[old].answers["q-what"] == "old, corrected"
    else:
        assert old not in seen
    full = {r.response_id: r for r in src.pull(mark, full=True).responses}
    assert full[old].answers["q-what"] == "old, corrected"


@both_readings
def test_a_steady_state_run_reads_one_page(server, form_id):
    for i in range(30):
        add(server, form_id, f"report {i}", T0 + timedelta(minutes=i))
    src = source(server, form_id)
    mark = src.pull(None).watermark
    server.counters.reset()
    again = src.pull(mark)
    assert server.counters[LIST] == 1 and server.counters["forms.forms.get"] == 1
    assert again.watermark == mark
    assert len(again.responses) == 11  # the ten-minute overlap, stored already: no-ops


def test_nothing_new_keeps_the_watermark_and_bad_marks_read_everything(server, form_id):
    src = source(server, form_id)
    assert src.pull(None).watermark is None  # an empty form: nothing to resume from
    assert src.pull("2026-11-20T10:00:00Z").watermark == "2026-11-20T10:00:00Z"
    add(server, form_id, "one", T0)
    assert src.pull("2026-11-20T10:00:00Z").watermark == "2026-11-20T10:00:00Z"  # not back
    assert len(src.pull("not a time").responses) == 1
    assert filters(server)[-1] is None


def test_an_edited_response_keeps_its_id_with_new_content_and_time(server, form_id):
    rid = add(server, form_id, "Pickup moved", T0, **{"q-factors": ["Handover"]})
    src = source(server, form_id)
    before = src.pull(None)
    server.forms.edit_response(form_id, rid, {"q-what": "Pickup moved, nobody told us",
                                              "q-factors": ["Handover", "Time pressure"]},
                               at=T0 + timedelta(minutes=30))
    after = src.pull(before.watermark)
    (r,) = after.responses
    assert r.response_id == rid
    assert r.answers["q-factors"] == ["Handover", "Time pressure"]
    assert r.submitted_at == before.responses[0].submitted_at + timedelta(minutes=30)
    assert r.payload() != before.responses[0].payload()


def test_drift_names_added_and_renamed_questions(server, form_id):
    add(server, form_id, "before", T0, **{"q-service": "Oak House"})
    src = source(server, form_id)
    before = src.pull(None)
    new_q = server.forms.add_question(form_id, "Was anyone else nearby?", "radio",
                                      options=["Yes", "No"])
    server.forms.rename_question(form_id, "q-service", "Which service or house?")
    add(server, form_id, "after", T0 + timedelta(hours=1),
        **{"q-service": "Riverside", new_q: "No"})
    after = src.pull(before.watermark)
    assert before.questions["q-service"] == "Which service?"
    assert after.questions["q-service"] == "Which service or house?"
    assert after.questions[new_q] == "Was anyone else nearby?"
    latest = next(r for r in after.responses if r.answers["q-what"] == "after")
    assert latest.titles[new_q] == "Was anyone else nearby?"
    assert latest.titles["q-service"] == "Which service or house?"


def test_refusals_say_what_to_do(server, form_id):
    clients = fake_clients(server)
    server.forms.denied.add(form_id)
    with pytest.raises(ApiError) as err:
        GoogleFormsSource("near-miss", form_id, clients).pull(None)
    assert str(err.value) == (
        f"source near-miss (reading the form): the account {clients.account} cannot read "
        f"form {form_id}: share the form with it (or add it as a collaborator)")
    assert err.value.status == 403
    with pytest.raises(ApiError, match=r"form nope not found: check sources\[\.\.\]\.form_id"):
        GoogleFormsSource("near-miss", "nope", clients).pull(None)
    server.faults.fail_next(1, 400, only=LIST)
    server.forms.denied.clear()
    with pytest.raises(ApiError, match=r"listing responses\): HTTP 400"):
        GoogleFormsSource("near-miss", form_id, clients).pull(None)


def test_faults_at_30_percent_still_store_each_response_once(server, form_id, tmp_path):
    store = Store.open(tmp_path / "nearmiss.db")
    src = source(server, form_id, page_size=3)
    server.faults.set_rate(0.3, statuses=(429, 500), seed=2026)
    ids = [add(server, form_id, f"report {i}", T0 + timedelta(minutes=7 * i))
           for i in range(30)]
    mark = None
    for batch in range(3):  # three runs, more responses arriving between them
        pulled = src.pull(mark)
        store.add_raw(pulled.responses, T0 + timedelta(days=1, hours=batch))
        mark = pulled.watermark
        ids += [add(server, form_id, f"later {batch}.{i}",
                    T0 + timedelta(hours=4 + batch, minutes=i)) for i in range(6)]
    store.add_raw(src.pull(mark).responses, T0 + timedelta(days=2))
    assert len(server.faults.injected) >= 5
    assert {f.status for f in server.faults.injected} == {429, 500}
    latest = store.latest_responses()
    assert sorted(latest["response_id"]) == sorted(ids)
    assert (latest["version"] == 1).all()
    server.assert_no_violations()
