"""The synthetic data generator and the bundled sample exports (bench/generate.py)."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from openpyxl import load_workbook

from bench import generate as gen
from config import load_config
from connectors.base import RawResponse
from connectors.form_exports import (
    GoogleFormsCsvSource,
    MicrosoftFormsXlsxSource,
    parse_google_timestamp,
)

TZ = ZoneInfo("Europe/London")
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples"
CONFIG = load_config(ROOT / "config" / "demo.yaml")
MAPPING = CONFIG.settings.mapping
RULES = CONFIG.rules
T = gen.title


def pull(folder: Path) -> tuple[list[RawResponse], list[RawResponse], set[str]]:
    """Both exports read by the real connectors, and every question column they hold."""
    google = GoogleFormsCsvSource("google-form", folder / gen.GOOGLE_FILE, TZ).pull()
    microsoft = MicrosoftFormsXlsxSource("microsoft-form", folder / gen.MICROSOFT_FILE,
                                         TZ).pull()
    return google.responses, microsoft.responses, set(google.questions) | set(microsoft.questions)


def fields(resp: RawResponse) -> dict[str, str]:
    """A response's answers keyed by report field (via the demo mapping)."""
    return {MAPPING[q]: v for q, v in resp.answers.items()}


def occurred_day(value: str) -> date:
    if "/" in value:  # Google: 14/09/2026 21:40:00
        return datetime.strptime(value, "%d/%m/%Y %H:%M:%S").date()
    return date.fromisoformat(value[:10])  # Microsoft: a date cell


def required_missing(report: dict[str, str]) -> set[str]:
    """Category-required fields a report leaves unanswered."""
    category = next(k for k, v in RULES.taxonomy["categories"].items()
                    if v == report.get("category"))
    missing: set[str] = set()
    for req in RULES.required:
        if all(c.equals == category for c in req.when):
            missing |= {f for f in req.fields if not report.get(f)}
    return missing


def numbered(responses: list[RawResponse]) -> dict[str, RawResponse]:
    """Report ids as the loop allocates them: by submission time, then source, then id;
    a response quoting a reference is a follow-up and gets no number."""
    ref = T("report_reference")
    order = sorted((r for r in responses if ref not in r.answers),
                   key=lambda r: (r.submitted_at, r.source, r.response_id))
    return {f"NM-{n:06d}": r for n, r in enumerate(order, start=1)}


# -- generate_reports -------------------------------------------------------------------------


def test_same_seed_same_reports_other_seed_other_reports() -> None:
    assert gen.generate_reports(300, seed=3) == gen.generate_reports(300, seed=3)
    assert gen.generate_reports(300, seed=3) != gen.generate_reports(300, seed=4)
    assert gen.generate_reports(0) == []


def test_reports_are_realistic_and_varied() -> None:
    rows = gen.generate_reports(3000, seed=11)
    assert Counter(r[gen.SOURCE] for r in rows)[gen.GOOGLE_SOURCE] == pytest.approx(1500, rel=0.1)
    assert set(r[T("category")] for r in rows) == set(RULES.taxonomy["categories"].values())
    assert set(r[T("service")] for r in rows) == {s.name for s in gen.SERVICES}
    assert set(r[T("shift")] for r in rows) == set(RULES.taxonomy["shifts"].values())
    assert set(r[T("setting")] for r in rows) == set(
        RULES.taxonomy["settings"].values())
    assert sum(r[gen.ANONYMOUS] for r in rows) / len(rows) == pytest.approx(0.2, abs=0.03)
    harm = Counter(r[T("potential_harm")] for r in rows)
    assert (harm["Low"] + harm["Moderate"]) / len(rows) > 0.75
    for r in rows:
        assert re.fullmatch(r"(OH|RS|NG|EC|CO)-\d{3}", r[T("person_ref")])
        assert 1 <= len(r[T("contributing_factors")]) <= 4
        assert r[gen.STARTED] < r[gen.SUBMITTED]
        assert r[T("occurred_at")] < r[gen.SUBMITTED]
        if r[gen.ANONYMOUS]:
            assert gen.REPORTER not in r or r[gen.REPORTER] is None
            assert T("reporter_name") not in r and T("reporter_email") not in r
        shift_hour = r[T("occurred_at")].hour
        expected = "Early" if 7 <= shift_hour < 14 else "Late" if 14 <= shift_hour < 22 else "Night"
        assert r[T("shift")].startswith(expected)
    incomplete = [r for r in rows if required_missing(
        {f: r.get(t) for f, t in gen._form().titles.items()})]
    assert len(incomplete) / len(rows) == pytest.approx(0.15, abs=0.03)
    assert 0 < sum(1 for r in rows if r[gen.EDITED]) < 0.05 * len(rows)
    # day services are closed at night and at weekends
    day_service = [r for r in rows if r[T("service")] == "Elm Court Day Service"]
    assert all(r[T("occurred_at")].weekday() < 5 for r in day_service)
    assert all(7 <= r[T("occurred_at")].hour <= 18 for r in day_service)


def test_shares_are_configurable() -> None:
    rows = gen.generate_reports(500, seed=5, incomplete_share=0.0, anonymous_share=0.0,
                                start=date(2027, 1, 4), weeks=2)
    assert not any(r[gen.ANONYMOUS] for r in rows)
    assert not any(required_missing({f: r.get(t) for f, t in gen._form().titles.items()})
                   for r in rows)
    days = {r[T("occurred_at")].date() for r in rows}
    assert min(days) >= date(2027, 1, 1) and max(days) <= date(2027, 1, 17)


@pytest.mark.parametrize("scenario", gen.SCENARIOS, ids=lambda s: s.name)
def test_every_scenario_formats_and_answers_its_category(scenario: gen.Scenario) -> None:
    import random

    rng = random.Random(1)
    services = [s for s in gen.SERVICES if scenario.fits(s)]
    assert services, f"{scenario.name} fits no service"
    for service in services:
        for _ in range(20):
            draft = gen._draft(rng, category=scenario.category, service=service,
                               day=date(2026, 10, 7), source=gen.GOOGLE_SOURCE, reporter=None,
                               people=20, scenario=scenario)
            report = {f: v for f, v in draft.fields.items()}
            report["category"] = RULES.taxonomy["categories"][scenario.category]
            assert not required_missing(report)
            assert not [v for v in draft.fields.values() if isinstance(v, str) and "{" in v]
            assert draft.fields["setting"] in service.settings
            assert gen._in_hours(service, draft.fields["occurred_at"].hour) or (
                scenario.anchor is not None)


# -- export layouts ---------------------------------------------------------------------------


def _row(**answers: object) -> dict:
    base = {gen.SOURCE: gen.GOOGLE_SOURCE, gen.SUBMITTED: datetime(2026, 9, 14, 9, 41, 12),
            gen.STARTED: datetime(2026, 9, 14, 9, 37, 2), gen.EDITED: None,
            gen.REPORTER: "Tom Hughes", gen.EMAIL: "tom.hughes@oakfield-care.example",
            gen.ANONYMOUS: False, gen.TAG: None}
    return base | answers


def _layout_rows() -> list[dict]:
    return [
        _row(**{T("category"): "Mealtime / nutrition", T("shift"): "Early (7am-2pm)",
                T("contributing_factors"): ["Handover", "Time pressure"],
                T("occurred_at"): datetime(2026, 9, 14, 21, 40),
                T("scheduled_time"): time(21, 30), T("description"): 'Said "no", then, yes'}),
        _row(**{gen.SUBMITTED: datetime(2026, 11, 14, 21, 41, 12),
                gen.STARTED: datetime(2026, 11, 14, 21, 35, 0),
                gen.EDITED: datetime(2026, 11, 14, 22, 5, 0), gen.REPORTER: None,
                gen.EMAIL: None, gen.ANONYMOUS: True, T("category"): "Behaviour"}),
        _row(**{gen.SUBMITTED: datetime(2026, 10, 3, 0, 5, 9),
                gen.STARTED: datetime(2026, 10, 3, 0, 1, 0)}),
    ]


def test_google_timestamp_format() -> None:
    assert gen.google_timestamp(datetime(2026, 9, 14, 9, 41, 12)) == "2026/09/14 9:41:12 AM GMT+1"
    assert gen.google_timestamp(datetime(2026, 11, 14, 21, 41, 2)) == "2026/11/14 9:41:02 PM GMT"
    assert gen.google_timestamp(datetime(2026, 10, 3, 0, 5, 9)) == "2026/10/03 12:05:09 AM GMT+1"
    assert gen.google_timestamp(datetime(2026, 10, 3, 12, 5, 9)) == "2026/10/03 12:05:09 PM GMT+1"


def test_timestamps_round_trip_through_both_readers_across_clock_changes() -> None:
    """Every wall time around both 2026/27 clock changes means the same instant to the
    Google reader (explicit offset) and the Microsoft reader (naive local time)."""
    starts = [datetime(2026, 10, 24, 22, 0), datetime(2027, 3, 27, 22, 0)]
    for start in starts:
        for quarter in range(4 * 8):
            local = gen._real_local(start + timedelta(minutes=15 * quarter, seconds=7))
            expected = pd.Timestamp(gen._utc(local))
            assert parse_google_timestamp(gen.google_timestamp(local), TZ, True) == expected
            ms = pd.Timestamp(local).tz_localize(TZ, ambiguous=True,
                                                 nonexistent="shift_forward").tz_convert("UTC")
            assert ms == expected


def test_google_csv_layout(tmp_path: Path) -> None:
    path = gen.write_google_csv(_layout_rows(), tmp_path / "g.csv")
    assert path.read_text(encoding="utf-8").startswith('"Timestamp","Email Address","')
    with path.open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    header, rows = table[0], table[1:]
    assert header == ["Timestamp", "Email Address", *gen.question_titles()]
    assert set(header[2:]) <= set(MAPPING)
    col = {name: i for i, name in enumerate(header)}
    first, second, third = rows  # sorted by timestamp
    assert first[0] == "2026/09/14 9:41:12 AM GMT+1"
    assert first[1] == "tom.hughes@oakfield-care.example"
    assert first[col[T("contributing_factors")]] == "Handover, Time pressure"
    assert first[col[T("occurred_at")]] == "14/09/2026 21:40:00"
    assert first[col[T("scheduled_time")]] == "21:30:00"
    assert first[col[T("shift")]] == "Early (7am-2pm)"
    assert first[col[T("description")]] == 'Said "no", then, yes'
    assert first[col[T("medication_name")]] == ""
    assert second[0] == "2026/10/03 12:05:09 AM GMT+1"
    assert third[0] == "2026/11/14 10:05:00 PM GMT"  # Google keeps the latest submission
    assert third[1] == ""  # anonymous: no address


def test_microsoft_xlsx_layout(tmp_path: Path) -> None:
    path = gen.write_microsoft_xlsx(_layout_rows(), tmp_path / "m.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["Sheet1"]
    rows = list(wb["Sheet1"].iter_rows(values_only=True))
    header = list(rows[0])
    assert header == [*gen.MICROSOFT_META, *gen.question_titles()]
    col = {name: i for i, name in enumerate(header)}
    first, _, third = rows[1:]
    assert [r[0] for r in rows[1:]] == [1, 2, 3]
    for r in rows[1:]:
        assert isinstance(r[1], datetime) and isinstance(r[2], datetime)
        assert timedelta(0) < r[2] - r[1] < timedelta(minutes=15)
    assert first[2] == datetime(2026, 9, 14, 9, 41, 12)
    assert first[3] == "tom.hughes@oakfield-care.example" and first[4] == "Tom Hughes"
    assert first[5] is None
    assert first[col[T("contributing_factors")]] == "Handover;Time pressure;"
    assert first[col[T("occurred_at")]] == datetime(2026, 9, 14)  # a date cell, no time
    assert wb["Sheet1"].cell(2, col[T("occurred_at")] + 1).is_date
    assert first[col[T("scheduled_time")]] == "21:30"
    assert first[col[T("medication_name")]] is None
    assert third[3] == "anonymous" and third[4] is None
    assert third[5] == datetime(2026, 11, 14, 22, 5) > third[2]


def test_generated_exports_parse_with_the_connectors(tmp_path: Path) -> None:
    csv_path, xlsx_path = gen.generate_exports(600, tmp_path, seed=21)
    assert (csv_path.name, xlsx_path.name) == (gen.GOOGLE_FILE, gen.MICROSOFT_FILE)
    google, microsoft, questions = pull(tmp_path)
    assert len(google) + len(microsoft) == 600
    assert 240 < len(google) < 360
    assert questions <= set(MAPPING), questions - set(MAPPING)
    assert len({r.response_id for r in google}) == len(google)
    assert all(r.submitted_at is not None for r in google + microsoft)
    assert any(r.respondent_email is None for r in microsoft)  # "anonymous"
    assert any(r.respondent_name for r in microsoft)
    text = csv_path.read_text(encoding="utf-8")
    assert ' GMT+1","' in text and ' GMT","' in text  # both sides of the clocks going back
    # the submission times the readers see are the generated ones
    rows = gen.generate_reports(600, seed=21)
    want = sorted(pd.Timestamp(gen._utc(gen._latest(r))) for r in rows)
    assert sorted(r.submitted_at for r in google + microsoft) == want
    # answers come through as the taxonomy labels
    labels = {f: set(RULES.choices(f).values()) for f in RULES.fields if RULES.choices(f)}
    for resp in google[:100] + microsoft[:100]:
        for name, value in fields(resp).items():
            if name == "contributing_factors":
                parts = [p for p in re.split(r", |;", value) if p]
                assert set(parts) <= labels[name]
            elif name in labels:
                assert value in labels[name], (name, value)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--reports", "40", "--out", str(tmp_path / "r"), "--seed", "2"]) == 0
    google, microsoft, _ = pull(tmp_path / "r")
    assert len(google) + len(microsoft) == 40
    assert gen.main(["--samples", str(tmp_path / "s")]) == 0
    assert "rs-med-follow-up" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        gen.main(["--reports", "5"])


# -- the committed samples --------------------------------------------------------------------


def test_committed_samples_are_what_write_samples_writes(tmp_path: Path) -> None:
    gen.write_samples(tmp_path)
    committed = (SAMPLES / gen.GOOGLE_FILE).read_text(encoding="utf-8")
    assert committed == (tmp_path / gen.GOOGLE_FILE).read_text(encoding="utf-8"), (
        "config/samples is stale: run `python bench/generate.py --samples config/samples`")

    def cells(path: Path) -> list[tuple]:
        wb = load_workbook(path)
        assert wb.sheetnames == ["Sheet1"]
        return list(wb["Sheet1"].iter_rows(values_only=True))

    assert cells(SAMPLES / gen.MICROSOFT_FILE) == cells(tmp_path / gen.MICROSOFT_FILE)


@pytest.fixture(scope="module")
def samples() -> dict:
    google, microsoft, questions = pull(SAMPLES)
    ids = numbered(google + microsoft)
    reports = {rid: fields(r) | {"_resp": r} for rid, r in ids.items()}
    return {"google": google, "microsoft": microsoft, "questions": questions, "reports": reports}


def test_samples_cover_the_taxonomy_and_the_period(samples: dict) -> None:
    google, microsoft, reports = samples["google"], samples["microsoft"], samples["reports"]
    assert samples["questions"] <= set(MAPPING)
    assert 80 <= len(google) + len(microsoft) <= 100
    assert len(google) > 30 and len(microsoft) > 30
    assert {r["category"] for r in reports.values()} == set(
        RULES.taxonomy["categories"].values())
    assert {r["service"] for r in reports.values()} == {s.name for s in gen.SERVICES}
    assert {r["shift"] for r in reports.values()} == set(RULES.taxonomy["shifts"].values())
    days = [occurred_day(r["occurred_at"]) for r in reports.values()]
    assert (max(days) - min(days)).days >= 8 * 7
    assert min(days) >= gen.SAMPLE_START and max(days) <= gen.SAMPLE_END
    for rid, r in reports.items():
        # the minimum dataset is always there; persons are references, never names
        assert not {f for f in RULES.required[0].fields if not r.get(f)}, rid
        assert re.fullmatch(r"(OH|RS|NG|EC|CO)-\d{3}", r["person_ref"]), rid
    stamps = (SAMPLES / gen.GOOGLE_FILE).read_text(encoding="utf-8")
    assert ' GMT+1","' in stamps and ' GMT","' in stamps


def repeat_chains(reports: dict[str, dict], rule) -> dict[tuple, list[str]]:
    """(key) -> report ids of each chain that reaches the rule's threshold, the way the repeat
    rules read (events within the window form a chain; every later one joins its pattern).
    Days only (Microsoft has no time of day), so "within" is read generously."""
    groups: dict[tuple, list[tuple[date, str]]] = defaultdict(list)
    for rid, r in reports.items():
        parts = [re.split(r", |;", r[f]) if f == "contributing_factors" else [r.get(f)]
                 for f in rule.key]
        for combo in itertools.product(*parts):
            if all(combo):
                groups[combo].append((occurred_day(r["occurred_at"]), rid))
    found: dict[tuple, list[str]] = {}
    for key, items in groups.items():
        items.sort()
        chain = [items[0]]
        for item in [*items[1:], None]:
            if item is not None and (item[0] - chain[-1][0]).days <= rule.window_days + 1:
                chain.append(item)
                continue
            days = [d for d, _ in chain]
            n = rule.threshold - 1
            if any((days[j + n] - days[j]).days <= rule.window_days + 1
                   for j in range(len(days) - n)):
                found[key] = sorted(rid for _, rid in chain)
            chain = [item]
    return found


def test_samples_repeat_only_where_scripted(samples: dict) -> None:
    reports = samples["reports"]
    persons = {}
    for rule in RULES.repeats:
        for key, members in repeat_chains(reports, rule).items():
            persons[rule.id, key] = sorted(reports[rid]["person_ref"] for rid in members)
    oak_house, northgate = ["OH-003", "OH-007", "OH-011"], ["NG-004", "NG-012", "NG-019"]
    assert persons == {
        ("same-category-service", ("Medication", "Oak House")): oak_house,
        ("same-category-factor", ("Medication", "Handover")): oak_house,
        ("same-category-service", ("Transport", "Northgate Home Care")): northgate,
        ("same-category-factor", ("Transport", "Communication")): northgate,
    }
    trio = [r for r in reports.values() if r["person_ref"] in oak_house
            and r["category"] == "Medication"]
    assert all(r["shift"].startswith("Late") for r in trio)
    assert set(gen.SAMPLE_CLUSTERS) == {("medication", "Oak House"),
                                        ("transport", "Northgate Home Care")}


def test_samples_have_incomplete_reports_and_a_follow_up(samples: dict) -> None:
    reports = samples["reports"]
    missing = {rid: required_missing(r) for rid, r in reports.items()}
    incomplete = {rid: m for rid, m in missing.items() if m}
    assert len(incomplete) >= 4
    kinds = {(reports[rid]["category"], field) for rid, m in incomplete.items() for field in m}
    assert ("Medication", "medication_name") in kinds
    assert ("Transport", "appointment_time") in kinds
    assert ("Environment / equipment", "maintenance_ref") in kinds
    assert ("Mealtime / nutrition", "texture_level") in kinds

    follow_ups = [r for r in samples["google"] + samples["microsoft"]
                  if T("report_reference") in r.answers]
    assert len(follow_ups) == 1 and follow_ups[0].source == "google-form"
    follow_up = fields(follow_ups[0])
    original = reports[follow_up["report_reference"]]
    assert original["category"] == "Medication"
    assert original["service"] == "Riverside Supported Living"
    assert required_missing(original) == {"medication_name"}
    assert follow_up["medication_name"]
    assert set(follow_up) <= {"report_reference", "medication_name", "reporter_name",
                              "reporter_email"}
    assert follow_ups[0].respondent_email == original["_resp"].respondent_email is not None
    assert follow_ups[0].submitted_at > original["_resp"].submitted_at
    # the generator's own numbering agrees with the loop's rule applied to the parsed files
    rows = gen.sample_reports()
    ids = gen.assign_report_ids(rows)
    tag = {r[gen.TAG]: rid for r, rid in zip(rows, ids, strict=True) if r[gen.TAG]}
    assert tag["rs-med-no-name"] == follow_up["report_reference"]
    assert len([i for i in ids if i]) == len(reports)


def test_samples_have_the_scripted_situations(samples: dict) -> None:
    reports = samples["reports"].values()
    google, microsoft = samples["google"], samples["microsoft"]
    # a safeguarding concern needing same-day review: a stranger on a community outing
    assert any(r["category"] == "Safeguarding" and r["setting"] == "Community outing"
               and "stranger" in r["description"] for r in reports)
    # a safeguarding cue in the free text of a report of another category
    assert any(r["category"] != "Safeguarding" and "unexplained bruising" in r["description"]
               for r in reports)
    # deterioration caught by the threshold prompt, and a missed escalation
    escalations = [r for r in reports if r["category"] == "Escalation / deterioration"]
    assert any(r["threshold_prompt"] == "Yes" and "confus" in r["signs_observed"].lower()
               for r in escalations)
    assert any(r["threshold_prompt"] == "No" and "escalated" in r["description"]
               for r in escalations)
    # anonymous reports in both sources
    assert any(r.respondent_email is None and T("reporter_name") not in r.answers
               and T("reporter_email") not in r.answers for r in google)
    assert any(r.respondent_email is None and r.respondent_name is None for r in microsoft)
    sheet = list(load_workbook(SAMPLES / gen.MICROSOFT_FILE)["Sheet1"].iter_rows(
        values_only=True))
    assert sum(1 for row in sheet[1:] if row[3] == "anonymous") >= 2
    # an edited Microsoft response, and nothing else submitted while it was being edited
    edited = [row for row in sheet[1:] if row[5] is not None]
    assert len(edited) == 1 and edited[0][5] > edited[0][2]
    start, end = edited[0][2], edited[0][5]
    stamps = [r.submitted_at.tz_convert(TZ).tz_localize(None) for r in google + microsoft]
    assert not [s for s in stamps if start < s < end]
    assert len(set(stamps)) == len(stamps)  # no ties: report ids never depend on tie-breaks
