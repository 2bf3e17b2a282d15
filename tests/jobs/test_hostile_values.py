"""Property: whatever a reporter types, and whatever an export writes as the submission time,
normalising, checking, triaging, finding repeats, planning and writing the tracker, and
rendering and building every email owed raise nothing. A value marks its own report only.

The steps are the pure ones `jobs/pipeline.py` wires, called here without the store so that
each example costs one great-expectations run, not a whole scheduled run.
"""

from __future__ import annotations

from email.policy import SMTP

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.quality import check_reports
from connectors.mail import build_message
from connectors.templates import Renderer
from connectors.xlsx_tracker import XlsxTracker
from domain.address import valid_address
from domain.times import read_datetime
from tests.fakes.deployment import Q
from transforms import normalize, repeats
from transforms.actions import action_state, report_closure
from transforms.loop import owed_messages
from transforms.tracker import (
    DATA_QUALITY,
    PATTERNS,
    REPORTS,
    patterns_rows,
    plan_sheet,
    quality_rows,
    read_sheet,
    reports_rows,
)
from transforms.triage import triage

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")
MAPPING = {question: field for field, question in Q.items()}

# What real exports and phones bring that a sample never does.
HOSTILE = [
    "", " ", "N/A", "NA", "None", "null", "now", "today", "-", "0", "=1+1", "+44 7700",
    "@SUM(A1)", "=HYPERLINK(\"http://x\")", "<script>alert(1)</script>", "&amp;", "\x00",
    "a\x00b\x0bc\x1f", "line one\r\nline two", "\u202eevil\u202c", "مرحبا بالعالم",
    "שלום", "😀👩‍⚕️💊", "\ufeffBOM", "zero\u200bwidth", "x" * 100_000,
    "Medication", "Safeguarding", "Oak House", "OH-014", "kim@example.org",
    "not@an@address", "kim@example.org, jo@example.org", "Handover, Time pressure",
    "Equipment;Handover;", "Severe", "2026-10-25 01:30", "2026-03-29 01:30",
    "2026-11-03 10:00 GMT", "2026-11-03 10:00 GMT+1", "2026-11-03T10:00:00+01:00",
    "9999-12-31 23:59", "0001-01-01", "31/02/2026 10:00", "10/18/2026 10:00",
    "18/10/2026 10:00", "10:00 GMT", "25:99", "12 pm", "20:00", "NM-000001", "nm 1",
]
TIMESTAMPS = [
    "", "2026/10/25 1:30:00 AM GMT+1", "2026/10/25 1:30:00 AM", "2026/03/29 1:30:00 AM",
    "9999/12/31 11:59:59 PM GMT", "now", "25/10/2026 01:30:00", "10/18/2026 10:00:00",
    "2026-11-03 10:00:00", "2026-11-03T10:00:00Z", "garbled", "\x00",
]

answer = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE))
stamp = st.one_of(st.text(max_size=30), st.sampled_from(TIMESTAMPS),
                  st.datetimes().map(lambda d: d.strftime("%Y/%m/%d %I:%M:%S %p")))
response = st.tuples(stamp, st.dictionaries(st.sampled_from(sorted(MAPPING)), answer),
                     st.one_of(st.none(), answer))


def responses(rows: list[tuple[str, dict[str, str], str | None]], tz) -> pd.DataFrame:
    """Rows as the store gives them back: what a source read, dated as the store dates."""
    out = []
    for i, (text, answers, email) in enumerate(rows):
        read = read_datetime(text, tz)
        at = read.value if read.value is not None else NOW
        notes = [f"invalid: Submitted: {read.problem}"] if read.problem else []
        out.append({"source": "google-form" if i % 2 else "microsoft-form",
                    "response_id": f"r{i}", "version": 1, "submitted_at": at,
                    "first_submitted_at": at,
                    "payload": {"answers": answers, "respondent_email": email,
                                "notes": notes}})
    return pd.DataFrame(out)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=st.lists(response, min_size=1, max_size=12), dayfirst=st.booleans())
def test_no_answer_or_timestamp_raises_anywhere(rows, dayfirst, rules, tz, tmp_path_factory):
    mappings = {"google-form": MAPPING, "microsoft-form": MAPPING}
    mapped = normalize.map_answers(responses(rows, tz), mappings, rules, tz, dayfirst)
    links = mapped.responses[["source", "response_id"]].assign(
        report_id=[normalize.report_id(i + 1) for i in range(len(rows))], how="new")
    reports = normalize.combine(mapped.responses, links, rules)
    assert len(reports) == len(rows)  # nothing dropped
    held = reports[reports["held"].notna()]
    view = reports[reports["held"].isna()].reset_index(drop=True)
    view = view.join(check_reports(view, rules, NOW).drop(columns="report_id"))
    view = view.join(triage(view, rules, tz).drop(columns="report_id"))
    view = view.join(report_closure({}, view["report_id"], dayfirst).drop(columns="report_id"))
    found = repeats.detect(view, rules)
    found = repeats.assign_ids(found, {f: f"PT-{i:04d}" for i, f in enumerate(
        found.patterns["fingerprint"], 1)})
    patterns = found.patterns.assign(display_status=found.patterns["status"])
    view = view.assign(pattern_ids=[[] for _ in range(len(view))], triaged=False,
                       completed_at=None, loop="", info_requested="",
                       contactable=view["reporter_email"].map(valid_address))

    tracker = XlsxTracker(tmp_path_factory.mktemp("tracker") / "tracker.xlsx")
    desired = [(REPORTS, reports_rows(view, rules, tz, NOW)),
               (PATTERNS, patterns_rows(patterns, tz)),
               (DATA_QUALITY, quality_rows(view, held, rules))]
    tracker.write([plan_sheet(read_sheet(spec, None), rows_, {})[0] for spec, rows_ in desired])
    tables = tracker.read([spec for spec, _ in desired])
    again = [plan_sheet(read_sheet(spec, tables[spec.title]), rows_, {})[0]
             for spec, rows_ in desired]
    assert not any(again), "a second run would rewrite cells"

    actions = action_state({}, {}, NOW.date(), tz, dayfirst)
    renderer = Renderer()
    for owed in owed_messages(view, rules, roles={"registered_manager": ["rm@care.example"]},
                              queued=set(), now=NOW, tz=tz, recent_days=36500,
                              actions=actions, patterns=patterns):
        subject, text, html = renderer.render(owed.kind, {"provider": "Oakfield Care",
                                                          "tracker": "tracker.xlsx",
                                                          **owed.context})
        message = build_message({"key": owed.key, "recipients": owed.recipients,
                                 "subject": subject, "body_text": text, "body_html": html},
                                "Nearmiss Loop <nearmiss@care.example>", None, NOW)
        assert b"\x00" not in message.as_bytes(policy=SMTP)
