from datetime import date

import pandas as pd
import pytest

from connectors.templates import Renderer
from tests.transforms.person_refs import readable
from transforms.loop import Owed, digest_alerts, hold_mass_requests, owed_messages

OCTOBER = pd.Timestamp("2026-10-15 10:00", tz="UTC")
NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")
ROLES = {"safeguarding_lead": ["sg@care.example"], "registered_manager": ["rm@care.example"],
         "quality_lead": ["q@care.example"], "clinical_lead": ["cl@care.example"]}


def view(*rows: dict) -> pd.DataFrame:
    base = {"category": "medication", "service": "Oak House", "setting": "residential",
            "occurred_at": NOW - pd.Timedelta(days=3), "submitted_at": NOW - pd.Timedelta(days=2),
            "potential_harm": "moderate", "person_ref": "OH-014", "description": "d",
            "immediate_action": "a", "reporter_email": "kim@example.org", "missing": [],
            "invalid": [], "pathway": "medication_review",
            "pathway_label": "Medication safety review", "priority": "P2",
            "triage_due": NOW, "rule_id": "medication", "alert_roles": [],
            "notification_risk": False, "notification_reasons": "", "closed": False,
            "closed_on": None, "outcome": "", "nfa_reason": "", "pattern_ids": []}
    return pd.DataFrame([{**base, "report_id": f"NM-{i:06d}", **r}
                         for i, r in enumerate(rows, 1)])


def owed(reports, rules, tz, **kw):
    args = {"roles": ROLES, "queued": set(), "now": NOW, "tz": tz, "recent_days": 14, **kw}
    return {o.key: o for o in owed_messages(reports, rules, **args)}


def test_acknowledgement_once_per_recent_report_with_an_address(rules, tz):
    out = owed(view({}, {"reporter_email": None}, {"reporter_email": "not an address"},
                    {"submitted_at": NOW - pd.Timedelta(days=40)}), rules, tz)
    assert set(out) == {"ack:NM-000001"}
    ack = out["ack:NM-000001"]
    assert ack.recipients == ["kim@example.org"]
    assert ack.context["report"]["category"] == "Medication"
    assert "OH-014" not in str(ack.context)  # no person reference for the templates
    assert owed(view({}), rules, tz, queued={"ack:NM-000001"}) == {}


def test_missing_items_asked_once_per_distinct_set(rules, tz):
    first = owed(view({"missing": ["medication_name"]}), rules, tz)
    key = next(k for k in first if k.startswith("missing:"))
    assert first[key].context["missing"] == ["medication name"]
    second = owed(view({"missing": ["medication_name", "scheduled_time"]}), rules, tz)
    assert next(k for k in second if k.startswith("missing:")) != key


@pytest.mark.parametrize("questions, reply, says, never", [
    ({"g": "Earlier report? Its reference"}, False,
     'put NM-000001 in the question "Earlier report? Its reference"', "reply"),
    ({"g": None}, True, "Please reply to this email with these items.", "the question"),
    ({}, False, "Please give these items to your manager, quoting NM-000001.", "the question"),
])
def test_a_request_names_only_ways_this_deployment_has(rules, tz, questions, reply, says,
                                                       never):
    out = owed(view({"missing": ["medication_name"], "source": "g"}), rules, tz,
               reference_questions=questions, reply=reply)
    request = next(o for k, o in out.items() if k.startswith("missing:"))
    _, text, html = Renderer().render("missing_info", {
        "provider": "Oakfield", "tracker": "", **request.context})
    assert says in " ".join(text.split()) and never not in text
    assert says.split(" NM")[0].split('"')[0] in html


def test_alerts_go_to_the_roles_the_rules_name(rules, tz):
    out = owed(view({"alert_roles": ["safeguarding_lead", "registered_manager"],
                     "pathway": "safeguarding_review", "notification_risk": True,
                     "notification_reasons": "safeguarding concern", "reporter_email": None}),
               rules, tz)
    assert set(out) == {"alert:NM-000001:safeguarding_review", "notify:NM-000001"}
    assert out["alert:NM-000001:safeguarding_review"].recipients == ["rm@care.example",
                                                                    "sg@care.example"]
    assert out["notify:NM-000001"].recipients == ["rm@care.example"]
    assert out["notify:NM-000001"].context["report"]["description"] == "d"  # staff may see


def test_outcome_when_closed_with_person_references_removed(rules, tz):
    actions = pd.DataFrame([{"action_id": "A-0001", "reports": ["NM-000001"], "patterns": [],
                             "action": "Reconciliation check for oh-014", "status": "Open",
                             "outcome": "", "overdue": False, "verification_overdue": False}])
    out = owed(view({"closed": True, "closed_on": date(2026, 11, 22),
                     "outcome": "We changed OH-014's MAR process", "submitted_at":
                     NOW - pd.Timedelta(days=90)}), rules, tz, actions=actions)
    outcome = out["outcome:NM-000001:2026-11-22"]  # old reports still hear their outcome
    assert outcome.context["outcome"] == "We changed [person]'s MAR process"
    assert outcome.context["actions"][0]["action"] == "Reconciliation check for [person]"


def test_overdue_reminder_at_most_daily(rules, tz):
    actions = pd.DataFrame([{"action_id": "A-0001", "reports": [], "patterns": [],
                             "action": "Audit", "owner": "Pat", "owner_email": "pat@care.example",
                             "due": date(2026, 11, 20), "linked": "PT-1", "evidence": "",
                             "status": "Open", "outcome": "", "overdue": True,
                             "verification_overdue": False, "reopened": "",
                             "reopened_on": None, "due_now": date(2026, 11, 20)}])
    out = owed(view({"reporter_email": None}), rules, tz, actions=actions)
    assert set(out) == {"reminder:A-0001:2026-11-23"}
    assert out["reminder:A-0001:2026-11-23"].context["action"]["days_overdue"] == 3
    assert out["reminder:A-0001:2026-11-23"].context["action"]["status"] == "Open"


def test_a_reopened_action_is_reminded_as_reopened_from_its_new_due_date(rules, tz):
    actions = pd.DataFrame([{"action_id": "A-0002", "reports": [], "patterns": ["PT-0001"],
                             "action": "Second check", "owner": "Pat",
                             "owner_email": "pat@care.example", "due": date(2026, 10, 1),
                             "linked": "PT-1", "evidence": "", "status": "Verified effective",
                             "outcome": "", "overdue": True, "verification_overdue": False,
                             "reopened": "NM-000009 joined PT-0001 on 2026-11-02, after "
                                         "verification on 2026-10-20",
                             "reopened_on": date(2026, 11, 2), "due_now": date(2026, 11, 16)}])
    action = owed(view({"reporter_email": None}), rules, tz, actions=actions)[
        "reminder:A-0002:2026-11-23"].context["action"]
    assert action["days_overdue"] == 7 and action["status"] == "Reopened"
    assert (action["reopened_on"], action["due_again"]) == ("02 November 2026",
                                                            "16 November 2026")


def test_one_alert_for_patterns_with_the_same_reports(rules, tz):
    patterns = pd.DataFrame([
        {"pattern_id": "PT-0001", "rule_id": "same-category-service", "event": "opened",
         "members": ["NM-000001", "NM-000002", "NM-000003"], "key_label": "Medication · Oak",
         "count": 3, "reason": None, "first_at": NOW, "last_at": NOW, "closed_at": pd.NaT},
        {"pattern_id": "PT-0002", "rule_id": "same-category-factor", "event": "opened",
         "members": ["NM-000001", "NM-000002", "NM-000003"],
         "key_label": "Medication · Handover", "count": 3, "reason": None, "first_at": NOW,
         "last_at": NOW, "closed_at": pd.NaT},
        {"pattern_id": "PT-0003", "rule_id": "same-person", "event": "",
         "members": ["NM-000004"], "key_label": "P", "count": 3, "reason": None,
         "first_at": NOW, "last_at": NOW, "closed_at": pd.NaT},
    ])
    out = owed(view({"reporter_email": None}), rules, tz, patterns=patterns)
    assert set(out) == {"pattern:PT-0001+PT-0002:opened"}
    alert = out["pattern:PT-0001+PT-0002:opened"]
    assert alert.context["pattern"]["also"] == ["PT-0002 (Medication · Handover)"]
    assert alert.recipients == ["q@care.example", "rm@care.example"]
    # A pattern whose latest report is older than recent_days is history: no alert.
    old = patterns.assign(last_at=NOW - pd.Timedelta(days=15))
    assert owed(view({"reporter_email": None}), rules, tz, patterns=old) == {}
    assert set(owed(view({"reporter_email": None}), rules, tz, patterns=old,
                    recent_days=16)) == {"pattern:PT-0001+PT-0002:opened"}


def test_monthly_learning_brief_for_last_month(rules, tz):
    reports = view({"submitted_at": pd.Timestamp("2026-10-10", tz="UTC")},
                   {"submitted_at": pd.Timestamp("2026-10-20", tz="UTC"), "category": "transport",
                    "service": "Elm Court"},
                   {"submitted_at": pd.Timestamp("2026-11-02", tz="UTC")})
    actions = pd.DataFrame([{"action_id": "A-0001", "reports": ["NM-000001"], "patterns": [],
                             "action": "MAR check for OH-014", "status": "Verified effective",
                             "verified_on": date(2026, 10, 30), "outcome": "No repeats",
                             "overdue": False, "verification_overdue": False}])
    briefs = [{"team": "Oak House", "services": ["Oak House"], "to": ["oak@care.example"]},
              {"team": "Everyone", "services": [], "to": ["all@care.example"]}]
    out = owed(reports, rules, tz, actions=actions, briefs=briefs, recent_days=0.001)
    oak, everyone = out["brief:2026-10:Oak House"], out["brief:2026-10:Everyone"]
    assert oak.context["received"] == 1 and everyone.context["received"] == 2
    assert oak.context["month"] == "October 2026"
    assert oak.context["changes"] == [{"action": "MAR check for [person]",
                                       "outcome": "No repeats"}]
    assert owed(reports, rules, tz, briefs=briefs, recent_days=0.001,
                queued={"brief:2026-10:Oak House", "brief:2026-10:Everyone"}) == {}


def test_a_brief_counts_only_its_month_and_only_valid_values(rules, tz):
    reports = view({"submitted_at": pd.Timestamp("2026-09-10", tz="UTC")},
                   {"submitted_at": pd.Timestamp("2026-09-12", tz="UTC"),
                    "category": "laundry mix-up"},  # refused by the checks
                   {"submitted_at": pd.Timestamp("2026-10-02", tz="UTC")})
    at = pd.Timestamp
    patterns = pd.DataFrame([
        {"pattern_id": f"PT-000{i}", "rule_id": "same-category-service", "event": "",
         "members": [], "reason": None, "closed_at": pd.NaT, **p} for i, p in enumerate([
        {"key": ["medication", "Oak House"], "key_label": "Medication · Oak House",
         "count": 3, "status": "open", "first_at": at("2026-09-01", tz="UTC"),
         "last_at": at("2026-09-14", tz="UTC")},
        {"key": ["transport", "Oak House"], "key_label": "Transport · Oak House",
         "count": 3, "status": "open", "first_at": at("2026-10-03", tz="UTC"),
         "last_at": at("2026-10-09", tz="UTC")},  # opened in October
        {"key": ["behaviour", "Oak House"], "key_label": "Behaviour · Oak House",
         "count": 4, "status": "open", "first_at": at("2026-07-01", tz="UTC"),
         "last_at": at("2026-08-20", tz="UTC")}])])  # nothing in September
    briefs = [{"team": "Everyone", "services": [], "to": ["all@care.example"]}]
    brief = owed(reports, rules, tz, briefs=briefs, patterns=patterns, recent_days=0.001,
                 now=pd.Timestamp("2026-10-15 09:00", tz="UTC"))["brief:2026-09:Everyone"]
    assert brief.context["received"] == 2
    assert brief.context["by_category"] == [{"category": "Medication", "count": 1},
                                            {"category": "not recorded", "count": 1}]
    assert [p["label"] for p in brief.context["patterns"]] == ["Medication · Oak House"]


def test_no_reference_of_anyone_reaches_the_reporter_in_any_spelling(rules, tz):
    """The demo's leak: A's outcome and a pattern's action named B and C, members of the
    same repeat pattern, in the spellings people type; the team brief showed a "same
    person" pattern keyed by a reference; a held report's reference was in an action."""
    reports = view(
        {"closed": True, "closed_on": date(2026, 11, 22), "pattern_ids": ["PT-0001"],
         "submitted_at": pd.Timestamp("2026-10-20", tz="UTC"), "outcome":
         "After OH 003 and oh-11 were nearly given the wrong dose, and OH-014's chart, "
         "we changed the MAR check.", "nfa_reason": "Also seen with O\u200bH\u20130003."},
        {"person_ref": "OH-003", "reporter_email": None, "alert_roles": ["registered_manager"],
         "description": "OH-003 nearly given OH-011's dose"},
        {"person_ref": "OH-011", "reporter_email": None})
    actions = pd.DataFrame([{
        "action_id": "A-0001", "reports": [], "patterns": ["PT-0001"],
        "action": "Second signature for OH\u20110003 and O\u200bH011 (and NG\u00a0007)",
        "status": "Verified effective", "verified_on": date(2026, 10, 30),
        "outcome": "No repeat for oh\u00a03 since; OH-0141 and JOHN-011x are other things",
        "overdue": False, "verification_overdue": False}])
    patterns = pd.DataFrame([
        {"pattern_id": "PT-0001", "rule_id": "same-category-service", "event": "",
         "key": ["medication", "Oak House"], "key_label": "Medication · Oak House",
         "members": ["NM-000001", "NM-000002", "NM-000003"], "count": 3, "status": "open",
         "reason": None, "first_at": NOW, "last_at": NOW, "closed_at": pd.NaT},
        {"pattern_id": "PT-0002", "rule_id": "same-person", "event": "opened",
         "key": ["OH-011"], "key_label": "OH-011", "members": ["NM-000003"], "count": 3,
         "status": "open", "reason": None, "first_at": OCTOBER, "last_at": NOW,
         "closed_at": pd.NaT}])  # active in October: in its brief
    out = owed(reports, rules, tz, actions=actions, patterns=patterns, recent_days=60,
               briefs=[{"team": "Everyone", "services": [], "to": ["all@care.example"]}],
               person_refs=["NG-007"])  # a held report's
    renderer = Renderer()

    def rendered(key: str) -> str:
        o = out[key]
        return "\n".join(renderer.render(o.kind, {"provider": "Care Co", "tracker": "",
                                                  **o.context}))

    refs = ["OH-014", "OH-003", "OH-011", "NG-007"]
    outcome = rendered("outcome:NM-000001:2026-11-22")
    assert not [r for r in refs if readable(r, outcome)], outcome
    assert "After [person] and [person] were nearly given the wrong dose, and [person]'s " \
        "chart" in outcome
    assert "Second signature for [person] and [person] (and [person])" in outcome
    assert "OH-0141 and JOHN-011x are other things" in outcome  # not references: kept
    for key in ("ack:NM-000001", "brief:2026-10:Everyone"):
        assert not [r for r in refs if readable(r, rendered(key))], rendered(key)
    assert "[person] (3 reports, open)" in rendered("brief:2026-10:Everyone")
    # Leads may see who: the pathway alert and the pattern alert keep the references.
    assert readable("OH-003", rendered("alert:NM-000002:medication_review"))
    assert readable("OH-011", rendered("pattern:PT-0002:opened"))


def _request(n: int, *fields: str) -> Owed:
    return Owed(f"missing:NM-{n:06d}:x", "missing_info", f"NM-{n:06d}", ["a@example.org"], {},
                fields)


@pytest.mark.parametrize("asked, new, held", [
    (11, 100, True),   # more than `above`, whatever the share
    (10, 100, False),
    (5, 10, True),     # half of a run's new responses, and at least five
    (4, 4, False),     # all of them, but a handful
    (5, 20, False),    # five of twenty: a quarter
])
def test_requests_for_one_item_to_many_reporters_are_held(asked, new, held):
    owed = [_request(n, "medication_name") for n in range(asked)] + [
        _request(99, "shift"), Owed("ack:NM-000001", "acknowledgement", "NM-000001", [], {})]
    free, mass = hold_mass_requests(owed, new, above=10, share=0.3, at_least=5)
    assert (list(mass) == ["medication_name"]) is held
    assert len(free) == (2 if held else asked + 2)
    # Released requests go, and no longer count towards holding the others.
    free, mass = hold_mass_requests(owed, new, above=10, share=0.3, at_least=5,
                                    released={o.key for o in owed})
    assert mass == {} and len(free) == asked + 2


def test_more_than_a_handful_of_alerts_to_one_person_come_as_one_digest():
    def alert(n: int, *to: str) -> Owed:
        return Owed(f"alert:NM-{n:06d}:clinical_review", "alert_pathway", f"NM-{n:06d}",
                    list(to), {"report": {"id": f"NM-{n:06d}"}})

    owed = [alert(1, "cl@x.org", "rm@x.org"), *(alert(n, "cl@x.org") for n in range(2, 5)),
            alert(5, "sg@x.org"), Owed("ack:NM-000001", "acknowledgement", "NM-000001",
                                       ["kim@x.org"], {})]
    out, covered = digest_alerts(owed, above=3)
    by_key = {o.key: o for o in out}
    digest = next(o for o in out if o.kind == "alert_digest")
    assert digest.recipients == ["cl@x.org"] and len(digest.context["alerts"]) == 4
    assert by_key["alert:NM-000001:clinical_review"].recipients == ["rm@x.org"]  # still his
    assert "alert:NM-000002:clinical_review" not in by_key
    assert by_key["alert:NM-000005:clinical_review"].recipients == ["sg@x.org"]
    assert "ack:NM-000001" in by_key
    assert set(covered) == {f"alert:NM-{n:06d}:clinical_review" for n in range(1, 5)}
    assert set(covered.values()) == {digest.key}
    assert digest_alerts(owed[:3], above=3) == (owed[:3], {})
    # The same alerts digest under the same key: a retried run queues it once.
    assert digest_alerts(owed, above=3)[0][-1].key == digest.key
    # A run bringing in a form's history: any second alert to a person is digested.
    pair = [alert(6, "q@x.org"), alert(7, "q@x.org")]
    assert digest_alerts(pair, above=3, new_responses=30) == (pair, {})
    out, covered = digest_alerts(pair, above=3, new_responses=31)
    assert [o.kind for o in out] == ["alert_digest"] and len(covered) == 2
