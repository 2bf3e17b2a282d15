"""Data-quality checks: the great-expectations suite built from the rules, flags per report.

A GX run costs about a second whatever the row count, so most scenarios are checked together
in one module-scoped run (which also shows that reports in one batch do not affect each other);
tests that need their own rules, clock or frame shape run alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from checks import quality
from checks.quality import OUTPUT_COLUMNS, check_reports, suite_description
from config import Rules
from config.rules import RequiredSet

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")
SUBMITTED = pd.Timestamp("2026-11-22 18:30", tz="UTC")
OCCURRED = pd.Timestamp("2026-11-22 17:45", tz="UTC")

MINIMUM = {
    "category": "medication",
    "description": "Evening dose nearly given twice",
    "immediate_action": "Dose withheld, MAR checked",
    "service": "Oak House",
    "setting": "supported_living",
    "occurred_at": OCCURRED,
    "shift": "late",
    "person_ref": "P-104",
    "potential_harm": "moderate",
    "conditions": "Two staff on the round, MAR not signed",
    "contributing_factors": ["handover", "documentation"],
    "workflow_stage": "delivery",
    "staff_involved": "Two support workers",
}
MEDICATION = {
    "medication_name": "Sertraline 50mg",
    "scheduled_time": "18:00",
    "record_discrepancy": "MAR unsigned for 17:00 dose",
    "clinical_advice": "not_required",
    "supervisor_notified": "yes",
}
TRANSPORT = {
    "appointment_time": "10:30",
    "transport_change": "Taxi cancelled",
    "staffing_allocation": "No escort rostered",
    "person_impact": "Nearly missed dialysis",
    "communication_source": "Phone call from taxi firm",
    "immediate_mitigation": "Manager drove",
    "case_manager_notified": "yes",
}


def report(rid: str = "NM-000001", **fields: Any) -> dict[str, Any]:
    """A complete medication report, changed by `fields` (extra columns are ignored)."""
    return {"report_id": rid, "submitted_at": SUBMITTED, **MINIMUM, **MEDICATION,
            "invalid_fields": [], "source": "google_forms", "held": None, **fields}


def transport(rid: str = "NM-000002", **fields: Any) -> dict[str, Any]:
    """A complete transport report: none of the medication fields."""
    base = {k: v for k, v in report(rid).items() if k not in MEDICATION}
    return {**base, **TRANSPORT, "category": "transport", "workflow_stage": "transition",
            **fields}


def frame(rules: Rules, *rows: dict[str, Any], index: list[Any] | None = None) -> pd.DataFrame:
    """Reports typed as normalisation types them: every rules field present, UTC datetimes."""
    df = pd.DataFrame(list(rows))
    for name, spec in rules.fields.items():
        if name not in df.columns:
            df[name] = pd.Series([None] * len(df), dtype=object)
        if spec.type == "datetime":
            df[name] = pd.to_datetime(df[name], utc=True)
    df["submitted_at"] = pd.to_datetime(df["submitted_at"], utc=True)
    if index is not None:
        df.index = index
    return df


LATER = pd.Timedelta(days=30)
SCENARIOS: dict[str, dict[str, Any]] = {
    "complete": report(),
    "no_medication_name": report(medication_name=None),
    "three_missing": report(scheduled_time=None, medication_name="  ", staff_involved=None),
    "transport": transport(),
    "transport_no_appointment": transport(appointment_time=None),
    "unknown_category": report(category="Paperwork"),
    "unknown_harm": report(potential_harm="Quite bad"),
    "unknown_factor": report(contributing_factors=["handover", "Weather"]),
    "unknown_factors": report(contributing_factors=["Weather", "handover", "Luck"]),
    "factors_empty": report(contributing_factors=[]),
    "factors_none": report(contributing_factors=None),
    "factors_blank": report(contributing_factors=["  "]),
    "after_submission": report(occurred_at=SUBMITTED + pd.Timedelta(hours=2)),
    "at_submission": report(occurred_at=SUBMITTED),
    "future": report(occurred_at=NOW + LATER, submitted_at=NOW + LATER + pd.Timedelta(days=1)),
    "future_and_after": report(occurred_at=NOW + pd.Timedelta(days=1)),
    "unreadable": report(occurred_at=pd.NaT, scheduled_time=None,
                         invalid_fields=["scheduled_time", "occurred_at", "not_a_field"]),
    "bad_email": report(reporter_email="sam at example"),
    "good_email": report(reporter_email="sam.c@care.example.org"),
    "blank_email": report(reporter_email="  "),
    "bad_time": report(scheduled_time="25:00"),
    "many_problems": report(medication_name=None, supervisor_notified="maybe", person_ref=None,
                            occurred_at=pd.NaT, invalid_fields=["occurred_at"]),
}


@pytest.fixture(scope="module")
def checked(rules: Rules) -> pd.DataFrame:
    """Every scenario in one run, indexed by scenario name."""
    return check_reports(frame(rules, *SCENARIOS.values(), index=list(SCENARIOS)), rules, NOW)


def test_complete_medication_report_is_complete(checked):
    out = checked.loc["complete"]
    assert out["dq_status"] == "complete"
    assert out["missing"] == [] and out["invalid"] == [] and out["dq_messages"] == []
    assert out["blocked"] is None


def test_medication_report_without_medication_name_is_incomplete(checked):
    out = checked.loc["no_medication_name"]
    assert out["dq_status"] == "incomplete"
    assert out["missing"] == ["medication_name"]
    assert out["invalid"] == []
    assert out["dq_messages"] == ["medication name: missing (medication)"]
    assert out["blocked"] == "cannot proceed without: medication name"


def test_missing_fields_come_in_rules_order_and_once(checked):
    out = checked.loc["three_missing"]
    # staff involved is required twice (minimum dataset and medication): reported once;
    # a blank answer counts as missing
    assert out["missing"] == ["staff_involved", "medication_name", "scheduled_time"]
    assert out["dq_messages"] == ["staff involved: missing (minimum dataset)",
                                  "medication name: missing (medication)",
                                  "scheduled time: missing (medication)"]
    assert out["blocked"] == ("cannot proceed without: staff involved, medication name, "
                              "scheduled time")


def test_transport_report_does_not_need_medication_fields(checked):
    assert checked.loc["transport", "dq_status"] == "complete"
    assert checked.loc["transport_no_appointment", "missing"] == ["appointment_time"]


def test_unknown_category_is_invalid_kept_and_quoted(checked):
    out = checked.loc["unknown_category"]
    assert out["dq_status"] == "incomplete"
    assert out["invalid"] == ["category"] and out["missing"] == []
    assert out["dq_messages"] == ["category: 'Paperwork' is not a known value"]
    assert out["blocked"] == "cannot proceed without: category"


def test_unknown_ordinal_level_is_invalid(checked):
    out = checked.loc["unknown_harm"]
    assert out["invalid"] == ["potential_harm"]
    assert out["dq_messages"] == ["potential harm: 'Quite bad' is not a known value"]


def test_multi_field_with_unknown_items_is_invalid(checked):
    one, two = checked.loc["unknown_factor"], checked.loc["unknown_factors"]
    assert one["invalid"] == ["contributing_factors"] and one["missing"] == []
    assert one["dq_messages"] == ["contributing factors: 'Weather' is not a known value"]
    assert two["dq_messages"] == [
        "contributing factors: 'Weather', 'Luck' are not known values"]


@pytest.mark.parametrize("scenario", ["factors_empty", "factors_none", "factors_blank"])
def test_empty_multi_answer_is_missing(checked, scenario):
    out = checked.loc[scenario]
    assert out["missing"] == ["contributing_factors"] and out["invalid"] == []
    assert out["dq_messages"] == ["contributing factors: missing (minimum dataset)"]


def test_occurred_after_submission_is_invalid(checked):
    out = checked.loc["after_submission"]
    assert out["invalid"] == ["occurred_at"]
    assert out["dq_messages"] == ["when it happened: after the report was submitted"]
    assert out["blocked"] == "cannot proceed without: when it happened"
    assert checked.loc["at_submission", "dq_status"] == "complete"


def test_occurred_in_the_future_is_invalid(checked):
    out = checked.loc["future"]
    assert out["invalid"] == ["occurred_at"]
    assert out["dq_messages"] == ["when it happened: in the future"]
    both = checked.loc["future_and_after"]
    assert both["invalid"] == ["occurred_at"]
    assert both["dq_messages"] == ["when it happened: in the future",
                                   "when it happened: after the report was submitted"]


def test_unreadable_field_is_invalid_not_missing(checked):
    out = checked.loc["unreadable"]
    assert out["missing"] == []
    assert out["invalid"] == ["occurred_at", "scheduled_time"]
    assert out["dq_messages"] == ["when it happened: the answer could not be read",
                                  "scheduled time: the answer could not be read"]
    assert out["blocked"] == "cannot proceed without: when it happened, scheduled time"


def test_bad_email_is_invalid_and_no_email_is_fine(checked):
    out = checked.loc["bad_email"]
    assert out["invalid"] == ["reporter_email"]
    assert out["dq_messages"] == ["reporter email: 'sam at example' is not an email address"]
    assert checked.loc["good_email", "dq_status"] == "complete"
    assert checked.loc["blank_email", "dq_status"] == "complete"


def test_bad_time_is_invalid(checked):
    out = checked.loc["bad_time"]
    assert out["invalid"] == ["scheduled_time"]
    assert out["dq_messages"] == ["scheduled time: '25:00' is not a time of day (HH:MM)"]


def test_messages_use_labels_not_keys(checked):
    out = checked.loc["many_problems"]
    assert out["missing"] == ["person_ref", "medication_name"]
    assert out["invalid"] == ["occurred_at", "supervisor_notified"]
    text = " ".join([*out["dq_messages"], out["blocked"]])
    for key in ("medication_name", "supervisor_notified", "person_ref", "occurred_at"):
        assert key not in text
    for label in ("medication name", "supervisor notified", "person affected (reference)",
                  "when it happened"):
        assert label in text


def test_every_scenario_is_kept_in_order(checked):
    assert checked.index.tolist() == list(SCENARIOS)
    assert checked.columns.tolist() == OUTPUT_COLUMNS
    assert checked["report_id"].tolist() == [s["report_id"] for s in SCENARIOS.values()]
    incomplete = checked["dq_status"] == "incomplete"
    assert (incomplete == checked["blocked"].notna()).all()


def test_reports_are_never_dropped_and_a_duplicate_index_is_kept(rules):
    rows = [report("NM-000010"), report("NM-000011", category="Paperwork"),
            transport("NM-000012", appointment_time=None), report("NM-000013", shift=None)]
    reports = frame(rules, *rows, index=[40, 7, 7, 2])
    out = check_reports(reports, rules, NOW)
    assert len(out) == len(reports)
    assert out.index.tolist() == [40, 7, 7, 2]
    assert out["report_id"].tolist() == ["NM-000010", "NM-000011", "NM-000012", "NM-000013"]
    assert out["dq_status"].tolist() == ["complete", "incomplete", "incomplete", "incomplete"]
    assert out["missing"].tolist() == [[], [], ["appointment_time"], ["shift"]]
    assert out["blocked"].iloc[0] is None


def test_no_reports_gives_an_empty_table(rules):
    out = check_reports(frame(rules, report()).iloc[:0], rules, NOW)
    assert out.empty and out.columns.tolist() == OUTPUT_COLUMNS


def test_missing_columns_count_as_unanswered_and_naive_now_is_utc(rules):
    reports = frame(rules, report(occurred_at=NOW + pd.Timedelta(minutes=1),
                                  submitted_at=NOW + pd.Timedelta(minutes=2)))
    reports = reports.drop(columns=["medication_name", "invalid_fields"])
    out = check_reports(reports, rules, NOW.tz_localize(None)).iloc[0]
    assert out["missing"] == ["medication_name"]
    assert out["invalid"] == ["occurred_at"]
    assert out["dq_messages"] == ["when it happened: in the future",
                                  "medication name: missing (medication)"]


def test_required_sets_come_from_the_rules(rules):
    """A deployment's own required set, with an `at_least` condition, is enforced as written."""
    extra = RequiredSet.model_validate({
        "name": "serious harm",
        "when": [{"field": "potential_harm", "at_least": "severe"}],
        "fields": ["supervisor_review"],
    })
    custom = rules.model_copy(update={"required": [*rules.required, extra]})
    reports = frame(custom, report("NM-1", potential_harm="severe"),
                    report("NM-2", potential_harm="low"))
    out = check_reports(reports, custom, NOW)
    assert out["missing"].tolist() == [["supervisor_review"], []]
    assert out["dq_messages"].iloc[0] == ["supervisor review: missing (serious harm)"]
    assert (
        "supervisor review: required when potential harm is at least severe (serious harm)"
        in suite_description(custom)
    )


def test_suite_description_has_one_line_per_expectation(rules):
    import great_expectations as gx

    lines = suite_description(rules)
    suite = quality._build_suite(gx, quality._plan(rules), rules, NOW)
    assert len(lines) == len(suite.expectations) == len(set(lines))
    assert "category: required (minimum dataset)" in lines
    assert "medication name: required when category is medication (medication)" in lines
    assert "when it happened: not after the report was submitted" in lines
    assert any(line.startswith("category: one of medication, transport") for line in lines)


def test_suite_description_does_not_import_great_expectations():
    code = ("import sys; from config import load_rules; from checks.quality import "
            "suite_description; assert suite_description(load_rules()); "
            "assert 'great_expectations' not in sys.modules")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_a_required_entry_may_accept_any_of_several_fields(rules):
    """A form asking one question for what the rules ask in two: either answer will do."""
    sets = [req.model_copy(update={"fields": [
        ["immediate_action", "staff_involved"] if f == "immediate_action" else f
        for f in req.fields if f != "staff_involved"]}) for req in rules.required]
    either = rules.model_copy(update={"required": sets})
    out = check_reports(frame(either, report("NM-1", staff_involved=None),
                              report("NM-2", immediate_action=None),
                              report("NM-3", immediate_action=None, staff_involved=" ")),
                        either, NOW)
    assert out["dq_status"].tolist() == ["complete", "complete", "incomplete"]
    assert out.iloc[2]["missing"] == ["immediate_action|staff_involved"]
    assert out.iloc[2]["blocked"] == ("cannot proceed without: immediate action taken or "
                                      "staff involved")
    assert either.label("immediate_action|staff_involved") == (
        "immediate action taken or staff involved")
    assert either.knows("immediate_action|staff_involved") and not either.knows("a|b")
