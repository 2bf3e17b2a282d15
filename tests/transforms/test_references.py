"""No reporter-facing email, rendered from its real template, shows a person-served
reference in any spelling, wherever in the context it was typed."""

from datetime import date

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.templates import Renderer
from tests.transforms.person_refs import readable
from transforms.loop import REPORTER_KINDS, owed_messages

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")
RENDERER = Renderer()
# Letters of references; the text around them never uses these, so it cannot spell one.
REF_LETTERS = "BCDFGHJKLQXZ"
OTHER_LETTERS = "aeiouvwyAEIOUVWY"
SEPARATORS = ["", "-", " ", "_", ".", "/", "\u2011", "\u2013", "\u00a0", " - ", "\u2212"]
INVISIBLES = ["\u200b", "\u2060", "\ufeff", "\u200d", "\u00ad"]
# What stands right before and after a reference: never a letter or digit.
BOUNDARIES = [" ", ", ", " (", ") ", "; ", ": ", "\n", "'s ", " [", "] ", '"', " & ", " <"]


@st.composite
def references(draw: st.DrawFn) -> list[str]:
    """A reference as a record holds it: letters, a number, maybe a letter suffix."""
    parts = [draw(st.text(REF_LETTERS, min_size=1, max_size=3)),
             str(draw(st.integers(0, 9999))).zfill(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        parts.append(draw(st.text(REF_LETTERS, min_size=1, max_size=2)))
    return parts


def spell(parts: list[str], draw: st.DrawFn) -> str:
    """One spelling: any case, extra leading zeros, any separator between parts,
    invisible characters anywhere."""
    out = []
    for i, part in enumerate(parts):
        if i:
            sep = draw(st.sampled_from(SEPARATORS))
            # Two letter parts need a separator, or they would be one longer word.
            out.append(sep or ("-" if part.isalpha() == parts[i - 1].isalpha() else ""))
        if part.isdigit():
            part = "0" * draw(st.integers(0, 3)) + part
        else:
            part = "".join(c.lower() if draw(st.booleans()) else c for c in part)
        out.append(part)
    chars = list("".join(out))
    for _ in range(draw(st.integers(0, 3))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(INVISIBLES)))
    return "".join(chars)


OTHER_TEXT = st.text(st.one_of(
    st.sampled_from(OTHER_LETTERS + "0123456789"),
    st.characters(exclude_categories=["L", "N", "M", "C"]),  # punctuation, symbols, spaces
), max_size=20)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], dict[str, str]]:
    """References of several reports, and text fields each holding a few of them spelt
    some way, amid other text."""
    parts = draw(st.lists(references(), min_size=1, max_size=4))
    refs = ["".join(p) if draw(st.booleans()) else "-".join(p) for p in parts]

    def text() -> str:
        out = [draw(OTHER_TEXT)]
        for i in draw(st.lists(st.integers(0, len(refs) - 1), min_size=1, max_size=3)):
            out += [draw(st.sampled_from(BOUNDARIES)), spell(parts[i], draw),
                    draw(st.sampled_from(BOUNDARIES)), draw(OTHER_TEXT)]
        return "".join(out)

    fields = ["outcome", "nfa_reason", "service", "action", "action_outcome", "label", "team"]
    return refs, {f: text() for f in fields}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_no_spelling_of_any_reference_reaches_a_reporter(case, rules, tz):
    refs, text = case
    for value in text.values():  # the check sees what was typed
        assert any(readable(ref, value) for ref in refs)
    base = {"category": "medication", "setting": "residential", "potential_harm": "moderate",
            "occurred_at": NOW - pd.Timedelta(days=35), "description": "d",
            "immediate_action": "a", "missing": [], "invalid": [], "pathway": "medication_review",
            "pathway_label": "Medication safety review", "priority": "P2", "triage_due": NOW,
            "rule_id": "medication", "alert_roles": [], "notification_risk": False,
            "notification_reasons": "", "closed": False, "closed_on": None, "outcome": "",
            "nfa_reason": "", "pattern_ids": [], "reporter_email": None}
    reports = pd.DataFrame([
        {**base, "report_id": "NM-000001", "person_ref": refs[0], "service": text["service"],
         "submitted_at": pd.Timestamp("2026-10-20", tz="UTC"),
         "reporter_email": "kim@example.org", "missing": ["medication_name"], "closed": True,
         "closed_on": date(2026, 11, 22), "outcome": text["outcome"],
         "nfa_reason": text["nfa_reason"]},
        *({**base, "report_id": f"NM-{i:06d}", "person_ref": ref, "service": "Oak House",
           "submitted_at": pd.Timestamp("2026-10-21", tz="UTC")}
          for i, ref in enumerate(refs[1:], 2))])
    actions = pd.DataFrame([{
        "action_id": "A-0001", "reports": ["NM-000001"], "patterns": [],
        "action": text["action"], "status": "Verified effective",
        "verified_on": date(2026, 10, 30), "outcome": text["action_outcome"], "overdue": False,
        "verification_overdue": False}])
    patterns = pd.DataFrame([{
        "pattern_id": "PT-0001", "rule_id": "same-category-service", "event": "",
        "key": ["medication", "Oak House"], "key_label": text["label"], "members": [],
        "count": 3, "status": "open", "reason": None, "first_at": NOW, "last_at": NOW,
        "closed_at": pd.NaT}])
    owed = owed_messages(
        reports, rules, roles={}, queued=set(), now=NOW, tz=tz, recent_days=60,
        actions=actions, patterns=patterns,
        briefs=[{"team": text["team"], "services": [], "to": ["all@care.example"]}])

    assert {o.kind for o in owed} == REPORTER_KINDS
    for o in owed:
        for part in RENDERER.render(o.kind, {"provider": "Care Co", "tracker": "", **o.context}):
            assert not [ref for ref in refs if readable(ref, part)], (o.kind, part)
