"""Every email's plain-text part reads cleanly: each heading on a line of its own after a
blank line, each list item on its own line, nothing run into the line before."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.templates import Renderer

REPORT = {"id": "NM-000123", "category": "Medication", "service": "Oak House",
          "setting": "Residential home", "submitted": "2026-11-20 10:04",
          "occurred": "2026-11-20 08:15", "occurred_date": "20 November 2026",
          "pathway": "Medication safety review", "triage_due": "2026-11-21 10:04",
          "priority": "P2", "potential_harm": "Moderate", "rule": "medication",
          "description": "MAR showed the evening dose as given already",
          "immediate_action": "Paused the round", "notification_reasons": "serious harm"}
PATTERN = {"id": "PT-0004", "event": "opened", "label": "Medication · Oak House",
           "rule": "same category at one service", "window_days": "14", "count": 3,
           "members": ["NM-000120", "NM-000121", "NM-000123"], "reason": "",
           "first": "2026-11-10 09:00", "last": "2026-11-20 08:15", "also": []}
ACTION = {"id": "A-0007", "action": "Second check of the MAR at handover",
          "owner": "Team leader", "due": "10 November 2026", "linked": "PT-0004",
          "evidence": "", "status": "Open", "days_overdue": 3, "reopened": "",
          "reopened_on": "", "due_again": ""}
COMMON = {"provider": "Oakfield Care", "tracker": "tracker.xlsx"}

CONTEXTS = {
    "acknowledgement": [{"report": REPORT}],
    "missing_info": [{"report": REPORT, "missing": ["when it happened", "the person's ref"],
                      "reference_question": q, "reply": r}
                     for q, r in (("Adding to an earlier report?", False), (None, True),
                                  (None, False))],
    "outcome": [{"report": REPORT, "outcome": o, "nfa_reason": n, "actions": a}
                for o, n, a in (
                    ("A second check at handover.", "", []),
                    ("", "Already resolved by the pharmacy.", []),
                    ("A second check.", "", [{"action": "Second check", "status": "Open",
                                              "outcome": ""},
                                             {"action": "MAR audit", "status": "",
                                              "outcome": "done weekly"},
                                             {"action": "Chart review", "status": "Pending",
                                              "outcome": ""}]))],
    "reminder": [{"action": ACTION},
                 {"action": {**ACTION, "status": "Reopened", "reopened": "verification found "
                             "it not effective", "reopened_on": "12 November 2026",
                             "due_again": "26 November 2026"}}],
    "learning_brief": [{"team": "All services", "month": "October 2026", "received": r,
                        "by_category": c, "changes": ch, "patterns": p}
                       for r, c, ch, p in (
                           (0, [], [], []),
                           (5, [{"category": "Medication", "count": 3},
                                {"category": "not recorded", "count": 2}],
                            [{"action": "Second check", "outcome": "no repeats since"},
                             {"action": "MAR audit", "outcome": ""}],
                            [{"label": "Medication · Oak House", "count": 3,
                              "status": "open"}]),
                           (2, [], [], [{"label": "Transport", "count": 4,
                                         "status": "under review"}]))],
    "alert_pathway": [{"report": REPORT}, {"report": {**REPORT, "notification_reasons": ""}}],
    "alert_notification": [{"report": REPORT}],
    "alert_pattern": [{"pattern": PATTERN},
                      {"pattern": {**PATTERN, "event": "reopened", "reason": "NM-000130 "
                                   "joined after the review closed", "also": ["PT-0005 (x)"]}}],
    "alert_digest": [{"alerts": [{"kind": "alert_pattern", "pattern": PATTERN},
                                 {"kind": "alert_notification", "report": REPORT},
                                 {"kind": "alert_pathway", "report": REPORT}]}],
    "governance": [{"title": "Weekly operational review", "period": "2026-W47",
                    "period_words": "16 November to 22 November 2026", "reports": n,
                    "figures": [{"label": "Reports submitted", "value": str(n)},
                                {"label": "Share triaged on time", "value": "none to measure"}],
                    "warnings": w, "repeats": rp, "charts": [],
                    "services": [{"name": "Oak House", "reports": n, "incomplete": "0%",
                                  "on_time": "50%"}]}
                   for n, w, rp in ((0, [], []), (7, ["Oak House: 0 reports in 2026-W47"],
                                                  [{"action": "A-0001", "pattern": "PT-0001",
                                                    "label": "Medication", "window": 14,
                                                    "before": 4, "after": 1, "fell": True,
                                                    "complete": True}]))],
}
TEMPLATES = sorted(p.name.removesuffix(".txt.j2") for p in (
    Path(__file__).resolve().parents[2] / "connectors" / "templates").glob("*.txt.j2"))
GLUED = re.compile(r"[a-z0-9).][A-Z][a-z]{2,}")  # "pendingThank", "auditRepeats"


def test_every_template_has_contexts_here():
    assert sorted(CONTEXTS) == TEMPLATES


@pytest.mark.parametrize("kind", TEMPLATES)
def test_the_text_part_reads_as_plain_text(kind):
    renderer = Renderer()
    for context in CONTEXTS[kind]:
        subject, text, _ = renderer.render(kind, {**COMMON, **context})
        assert subject and "\n" not in subject
        if context.get("action", {}).get("reopened"):  # the state as it is now
            assert "reopened" in subject and "reopened on 12 November 2026: verification " \
                "found it not effective. It was due again on 26 November 2026" in text
            assert "Verified effective" not in text and "Status: Reopened" in text
        lines = text.split("\n")
        assert text.endswith("\n") and not text.endswith("\n\n\n"), text
        assert "\n\n\n" not in text, text
        for i, line in enumerate(lines):
            assert line == line.rstrip(), f"trailing space: {line!r}"
            assert not GLUED.search(line), f"run together: {line!r}\n{text}"
            assert "  - " not in line[4:], f"two items on one line: {line!r}"
            heading = line.endswith(":") and len(line) < 60 and not line.startswith(" ")
            if heading and i + 1 < len(lines):
                assert lines[i + 1].strip(), f"a heading with nothing under it:\n{text}"
                assert i == 0 or lines[i - 1] == "", f"a heading run into the line before:" \
                                                     f" {lines[i - 1]!r} / {line!r}\n{text}"
