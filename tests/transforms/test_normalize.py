from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms import normalize as n
from transforms.normalize import local_time, local_times

MAPPING = {
    "What kind of near miss was it?": "category",
    "When did it happen?": "occurred_at",
    "What contributed? (tick all that apply)": "contributing_factors",
    "How bad could it have been?": "potential_harm",
    "When was it due?": "scheduled_time",
    "Medication name": "medication_name",
    "Your email, if you would like to hear the outcome": "reporter_email",
    "Your name (leave blank to stay anonymous)": "reporter_name",
    "Adding to an earlier report? Its reference (e.g. NM-000123)": "report_reference",
    "Staff notes": "ignore",
}
T0 = pd.Timestamp("2026-11-20 10:00", tz="UTC")


def responses(*rows: dict) -> pd.DataFrame:
    """Rows as the store returns them (latest version of each response)."""
    out = []
    for i, row in enumerate(rows):
        at = row.pop("_at", T0 + pd.Timedelta(minutes=i))
        meta = {k: row.pop(k) for k in ("respondent_email", "respondent_name",
                                        "unreadable_timestamp", "titles") if k in row}
        out.append({"source": row.pop("_source", "g"), "response_id": row.pop("_id", f"r{i}"),
                    "version": row.pop("_version", 1), "submitted_at": at,
                    "first_submitted_at": at, "payload": {"answers": row, **meta}})
    return pd.DataFrame(out)


def mapped(rules, tz, *rows: dict) -> pd.DataFrame:
    return n.map_answers(responses(*rows), {"g": MAPPING, "m": MAPPING}, rules, tz).responses


def test_labels_become_keys_and_types_are_coerced(rules, tz):
    out = mapped(rules, tz, {
        "What kind of near miss was it?": "mealtime / NUTRITION",
        "When did it happen?": "14/09/2026 21:40:00",
        "What contributed? (tick all that apply)": "Handover, Time pressure, Made up",
        "How bad could it have been?": "Moderate",
        "When was it due?": "9.30pm",
    }).iloc[0]
    assert out["category"] == "mealtime"
    assert out["occurred_at"] == pd.Timestamp("2026-09-14 20:40", tz="UTC")  # BST
    assert out["contributing_factors"] == ["handover", "time_pressure", "Made up"]
    assert out["potential_harm"] == "moderate"
    assert out["scheduled_time"] == "21:30"
    assert out["invalid_fields"] == [] and out["held"] is None


def test_a_forms_own_option_texts_map_through_value_maps(rules, tz):
    """Option labels of a provider's own form: matched ignoring case and spacing, per
    source over the deployment's, "n/a" as no answer; the taxonomy's own still work."""
    maps = {"potential_harm": {"3 - Serious": "severe", "n/a": None},
            "contributing_factors": {"Shift handover": "handover", "Not sure": None}}
    rows = responses(
        {"How bad could it have been?": "3  -  SERIOUS",
         "What contributed? (tick all that apply)": "shift handover, Not sure, Staffing levels"},
        {"How bad could it have been?": "N/A"},
        {"How bad could it have been?": "Low", "_source": "m"},
        {"How bad could it have been?": "3 - Serious", "_source": "m"})
    out = n.map_answers(rows, {"g": MAPPING, "m": MAPPING}, rules, tz,
                        value_maps={"g": maps, "m": {"potential_harm": {
                            "3 - serious": "moderate"}}}).responses
    assert out["potential_harm"].tolist() == ["severe", None, "low", "moderate"]
    assert out["contributing_factors"].iloc[0] == ["handover", "staffing"]


def test_one_question_can_fill_several_fields(rules, tz):
    mapping = {**MAPPING, "What did you do straight away, and who reviewed it?": [
        "immediate_action", "staff_involved"]}
    out = n.map_answers(responses(
        {"What did you do straight away, and who reviewed it?": "Held the dose; the nurse",
         "_source": "g"}), {"g": mapping}, rules, tz).responses.iloc[0]
    assert out["immediate_action"] == out["staff_involved"] == "Held the dose; the nurse"
    assert out["held"] is None


def test_microsoft_multiselect_and_unknown_choice_kept_as_typed(rules, tz):
    out = mapped(rules, tz, {"What contributed? (tick all that apply)": "Equipment;Handover;",
                             "What kind of near miss was it?": "Paperwork"}).iloc[0]
    assert out["contributing_factors"] == ["equipment", "handover"]
    assert out["category"] == "Paperwork"  # the checks flag it; nothing is dropped


def test_unreadable_values_are_marked_not_dropped(rules, tz):
    out = mapped(rules, tz, {"When did it happen?": "yesterday teatime",
                             "When was it due?": "25:99",
                             "unreadable_timestamp": "garbled"}).iloc[0]
    assert pd.isna(out["occurred_at"])
    assert out["invalid_fields"] == ["occurred_at", "scheduled_time"]
    assert any("'yesterday teatime' is not a date and time" in p for p in out["problems"])
    assert "invalid: Submitted: 'garbled' could not be read; dated by when it was first " \
        "received" in out["problems"]


def test_unmapped_questions_are_reported_and_hold_the_response(rules, tz):
    result = n.map_answers(responses(
        {"What kind of near miss was it?": "Medication", "Mystery": "x", "Staff notes": "y"},
        {"What kind of near miss was it?": "Medication"}), {"g": MAPPING}, rules, tz)
    assert result.unmapped.to_dict("records") == [
        {"source": "g", "question": "Mystery", "responses": 1}]
    assert "Mystery" in result.responses["held"][0]
    assert result.responses["held"][1] is None


def test_api_answers_are_mapped_by_id_or_by_title_at_submission(rules, tz):
    out = n.map_answers(responses(
        {"q1": "Medication", "q2": "Paracetamol",
         "titles": {"q1": "What kind of near miss was it?", "q2": "Medicine"}}),
        {"g": {**MAPPING, "q2": "medication_name"}}, rules, tz).responses.iloc[0]
    assert out["category"] == "medication" and out["medication_name"] == "Paracetamol"


def test_respondent_fields_stand_in_for_blank_questions(rules, tz):
    out = mapped(rules, tz, {"respondent_email": " Kim@X.org ", "respondent_name": "Kim"},
                 {"Your email, if you would like to hear the outcome": "me@x.org",
                  "respondent_email": "other@x.org"})
    assert out["reporter_email"].tolist() == ["kim@x.org", "me@x.org"]
    assert out["reporter_name"].tolist()[0] == "Kim"


@pytest.mark.parametrize("text,expected", [("NM-000123", "NM-000123"), ("nm 45", "NM-000045"),
                                           ("ref: NM000007 thanks", "NM-000007"),
                                           ("none", None), (None, None)])
def test_references(text, expected):
    assert n.normalise_reference(text) == expected


def link_all(m: pd.DataFrame, start: int = 1) -> pd.DataFrame:
    """What the pipeline does with the store: number new ones, then join follow-ups."""
    plan = n.plan_links(m, pd.DataFrame(columns=["source", "response_id", "report_id", "how"]))
    links = plan.needs_number.assign(
        report_id=[n.report_id(i) for i in range(start, start + len(plan.needs_number))],
        how="new")
    joined, orphans = n.resolve_follow_ups(plan.follow_ups, set(links["report_id"]))
    orphans = orphans.assign(report_id=[n.report_id(start + len(links) + i)
                                        for i in range(len(orphans))], how="new")
    return pd.concat([links, joined, orphans], ignore_index=True)


def test_follow_up_quoting_a_reference_completes_the_report(rules, tz):
    m = mapped(rules, tz,
               {"What kind of near miss was it?": "Medication", "_at": T0,
                "respondent_email": "a@x.org"},
               {"Adding to an earlier report? Its reference (e.g. NM-000123)": "nm-1",
                "Medication name": "Amlodipine", "_at": T0 + pd.Timedelta(days=1)},
               {"Adding to an earlier report? Its reference (e.g. NM-000123)": "NM-000099",
                "What kind of near miss was it?": "Transport",
                "_at": T0 + pd.Timedelta(days=2)})
    links = link_all(m)
    reports = n.combine(m, links, rules).set_index("report_id")
    assert list(reports.index) == ["NM-000001", "NM-000002"]
    first = reports.loc["NM-000001"]
    assert first["medication_name"] == "Amlodipine" and first["category"] == "medication"
    assert first["version"] == 2 and first["submitted_at"] == T0
    assert first["updated_at"] == T0 + pd.Timedelta(days=1)
    assert not first["anonymous"]
    orphan = reports.loc["NM-000002"]
    assert any("'NM-000099' was not found" in p for p in orphan["problems"])
    assert orphan["anonymous"]


def test_ids_follow_submission_order_across_sources(rules, tz):
    m = mapped(rules, tz, {"_source": "m", "_id": "7", "_at": T0 + pd.Timedelta(hours=1)},
               {"_source": "g", "_id": "g-a", "_at": T0})
    links = link_all(m)
    assert dict(zip(links["response_id"], links["report_id"], strict=True)) == {
        "g-a": "NM-000001", "7": "NM-000002"}


def test_invalid_field_clears_when_a_readable_answer_arrives(rules, tz):
    m = mapped(rules, tz, {"When did it happen?": "soon", "_at": T0},
               {"Adding to an earlier report? Its reference (e.g. NM-000123)": "NM-000001",
                "When did it happen?": "2026-11-19 10:00", "_at": T0 + pd.Timedelta(hours=1)})
    report = n.combine(m, link_all(m), rules).iloc[0]
    assert report["invalid_fields"] == []
    assert report["occurred_at"] == pd.Timestamp("2026-11-19 10:00", tz="UTC")


def test_records_are_json_ready(rules, tz):
    m = mapped(rules, tz, {"When did it happen?": "2026-11-19 10:00",
                           "What contributed? (tick all that apply)": "Handover"})
    record = n.to_records(n.combine(m, link_all(m), rules))[0]
    assert record["occurred_at"] == "2026-11-19T10:00:00+00:00"
    assert record["contributing_factors"] == ["handover"]
    assert record["medication_name"] is None and isinstance(record["version"], int)


@given(st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime(1900, 1, 1),
                                                  max_value=datetime(2100, 12, 31))),
                max_size=20),
       st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]))
def test_a_column_of_local_times_reads_as_each_one_does(values, zone):
    tz = ZoneInfo(zone)
    column = pd.Series([None if v is None else pd.Timestamp(v, tz="UTC") for v in values],
                       dtype="datetime64[us, UTC]")
    assert list(local_times(column, tz)) == [local_time(v, tz) for v in column]
