import json

import pandas as pd
from hypothesis import example, given
from hypothesis import strategies as st

from checks.quality import OUTPUT_COLUMNS, check_reports
from domain.times import decide_order, order_proofs
from tests.transforms.test_normalize import MAPPING, responses
from transforms import normalize as n
from transforms import results
from transforms.triage import COLUMNS, triage


def view(rules, tz, now, *rows: dict) -> pd.DataFrame:
    """Reports with their checks and triage, as a run computes them."""
    mapped = n.map_answers(responses(*rows), {"g": MAPPING}, rules, tz)
    links = mapped.responses[["source", "response_id"]].assign(
        report_id=[f"NM-{i:06d}" for i in (1, 2, 5001)][:len(mapped.responses)], how="new")
    reports = n.combine(mapped.responses, links, rules)
    out = reports.join(check_reports(reports, rules, now).drop(columns=["report_id"]))
    out = out.join(triage(reports, rules, tz).drop(columns=["report_id"]))
    out["completed_at"] = pd.Series([None, "2026-11-20 10:30", None][:len(out)], dtype=object,
                                    index=out.index)
    return out


def test_the_results_columns_are_those_the_checks_and_triage_compute():
    assert [c for c in [*OUTPUT_COLUMNS, *COLUMNS] if c != "report_id"] == results.COMPUTED


def test_a_view_comes_back_from_its_parts_as_it_was_computed(rules, tz, now):
    computed = view(rules, tz, now, {
        "What kind of near miss was it?": "Medication",
        "When did it happen?": "14/09/2026 21:40:00",
        "What contributed? (tick all that apply)": "Handover, Made up",
        "Your email, if you would like to hear the outcome": "kim@example.org",
    }, {"What kind of near miss was it?": "Falls", "When did it happen?": "not a date"},
        {"Medication name": "Amlodipine", "When did it happen?": "2026-11-23 12:00"})
    parts = results.to_parts(computed)
    assert list(parts) == ["000000", "000001"]  # NM-005001 starts the second part
    reports, kept = results.from_parts(parts.values(), rules)
    own = [c for c in computed.columns if c not in results.DTYPES]
    pd.testing.assert_frame_equal(reports, computed[own])
    expected = computed.set_index(pd.Index(computed["report_id"], dtype="str"))[
        list(results.DTYPES)]
    pd.testing.assert_frame_equal(kept, expected.astype(results.DTYPES))
    assert list(results.to_parts(computed, ["NM-005001"])) == ["000001"]
    # a report dated ahead of when its results were computed is checked again
    assert results.ahead(reports, rules, now).tolist() == [False, False, True]


def test_a_held_report_has_no_results_to_keep(rules, tz, now):
    computed = view(rules, tz, now, {"What kind of near miss was it?": "Medication"},
                    {"What kind of near miss was it?": "Falls"})
    held = computed.iloc[[1]][[c for c in computed.columns if c not in results.DTYPES]]
    both = pd.concat([computed.iloc[[0]], held], ignore_index=True)
    reports, kept = results.from_parts(results.to_parts(both).values(), rules)
    assert reports["report_id"].tolist() == ["NM-000001", "NM-000002"]
    assert kept.index.tolist() == ["NM-000001"]


dates = st.builds(lambda a, b, y: f"{a}/{b}/{y}", st.integers(1, 31), st.integers(1, 31),
                  st.sampled_from(["2025", "26"]))


@given(st.lists(st.one_of(dates, st.none(), st.just("2026-11-20 10:00")), max_size=30),
       st.integers(0, 30), st.booleans())
def test_a_column_read_in_two_parts_proves_what_it_proves_whole(texts, cut, dayfirst):
    cut = min(cut, len(texts))
    whole = order_proofs(texts)
    assert order_proofs(texts[cut:], order_proofs(texts[:cut])) == whole
    # kept results hold when the newer answers leave the order and its contradiction
    before, after = order_proofs(texts[:cut]), whole
    was, now = decide_order(before, dayfirst), decide_order(after, dayfirst)
    assert results.orders_hold({"g": {"f": before}}, {"g": {"f": after}}, dayfirst) == (
        was[0] == now[0] and (was[1] is None) == (now[1] is None))


def test_unmapped_counts_add_up_per_question():
    a = pd.DataFrame([("g", "Q1", 2), ("m", "Q", 1)], columns=["source", "question", "responses"])
    b = pd.DataFrame([("g", "Q1", 1), ("g", "Q0", 4)], columns=a.columns)
    assert n.add_counts(a, b).values.tolist() == [["g", "Q0", 4], ["g", "Q1", 3], ["m", "Q", 1]]
    assert n.add_counts(a.iloc[:0], a.iloc[:0]).empty


@given(st.lists(st.none() | st.sampled_from(["Oak House", "", "N/A", "\x00", "\u202e"])
                | st.text(max_size=5), max_size=60)
       | st.lists(st.none() | st.booleans() | st.integers() | st.lists(st.text(max_size=3)),
                  max_size=10),
       st.integers(0, 70_000))
@example([], 70_000)  # codes wider than 16 bits
def test_a_column_comes_back_from_its_stored_form_as_it_went_in(values, distinct):
    # many distinct values need wider codes
    values = values + [f"v{i}" for i in range(distinct)] * 2 if distinct > 65_000 else values
    stored = json.loads(json.dumps(results._coded(values)))
    assert results._decoded(stored).tolist() == values
