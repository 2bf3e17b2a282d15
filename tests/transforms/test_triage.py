import pandas as pd

from transforms.triage import triage


def frame(*rows: dict) -> pd.DataFrame:
    base = {"description": None, "conditions": None, "safeguarding_cue": None,
            "immediate_action": None, "potential_harm": "moderate", "category": "workflow"}
    out = pd.DataFrame([{**base, "report_id": f"NM-{i:06d}", **r} for i, r in enumerate(rows, 1)])
    out["submitted_at"] = pd.to_datetime(out["submitted_at"], utc=True, format="ISO8601")
    return out


def test_safeguarding_report_is_due_the_same_day(rules, tz):
    out = triage(frame({"category": "safeguarding", "submitted_at": "2026-11-23 10:00"},
                       {"category": "safeguarding", "submitted_at": "2026-11-23 22:30"}),
                 rules, tz)
    first, late = out.iloc[0], out.iloc[1]
    assert first["pathway"] == "safeguarding_review" and first["priority"] == "P1"
    assert first["triage_due"] == pd.Timestamp("2026-11-23 14:00", tz="UTC")  # + 4 h
    assert late["triage_due"] == pd.Timestamp("2026-11-23 23:59", tz="UTC")  # end of day
    assert first["rule_id"] == "safeguarding-category"
    assert first["alert_roles"] == ["safeguarding_lead", "registered_manager"]
    assert first["notification_risk"] and first["notification_reasons"] == "safeguarding concern"


def test_same_day_uses_local_midnight_in_summer_time(rules, tz):
    out = triage(frame({"category": "safeguarding", "submitted_at": "2026-07-01 21:30"}),
                 rules, tz)
    assert out.iloc[0]["triage_due"] == pd.Timestamp("2026-07-01 22:59", tz="UTC")


def test_first_matching_rule_wins_and_default_catches_the_rest(rules, tz):
    out = triage(frame(
        {"category": "medication", "submitted_at": "2026-11-23 10:00"},
        {"category": "medication", "potential_harm": "severe", "submitted_at": "2026-11-23 10:00"},
        {"category": "transport", "description": "A stranger tried to talk her into leaving; "
         "possible exploitation", "submitted_at": "2026-11-23 10:00"},
        {"category": "escalation", "potential_harm": "moderate",
         "submitted_at": "2026-11-23 10:00"},
        {"category": "escalation", "potential_harm": "low", "submitted_at": "2026-11-23 10:00"},
        {"category": "transport", "potential_harm": "low", "submitted_at": "2026-11-23 10:00"},
        {"category": None, "potential_harm": None, "submitted_at": "2026-11-23 10:00"},
    ), rules, tz)
    assert out["rule_id"].tolist() == [
        "medication", "medication-severe", "safeguarding-cues-in-text", "escalation-severe",
        "escalation", "default-trend", "default-trend"]
    assert out["pathway"].tolist()[:2] == ["medication_review", "medication_review"]
    assert out["priority"].tolist()[:2] == ["P2", "P1"]
    due = out["triage_due"] - pd.Timestamp("2026-11-23 10:00", tz="UTC")
    assert due.iloc[0] == pd.Timedelta(hours=24)
    assert out.iloc[4]["pathway"] == "clinical_review" and out.iloc[4]["priority"] == "P2"


def test_keywords_match_whole_words_case_insensitively(rules, tz):
    out = triage(frame(
        {"description": "Noticed UNEXPLAINED BRUISING on arm", "submitted_at": "2026-11-23 10:00"},
        {"description": "the abusers' list", "submitted_at": "2026-11-23 10:00"},
        {"description": "Police attended after the fall", "category": "environment",
         "potential_harm": "moderate", "submitted_at": "2026-11-23 10:00"},
    ), rules, tz)
    assert out["pathway"].tolist()[:2] == ["safeguarding_review", "operational_fix"]
    assert "abuse or neglect cue" in out.iloc[0]["notification_reasons"]
    assert out.iloc[2]["notification_reasons"] == "police involvement"
    # "police" is also a safeguarding cue: routed there, proportionate to the risk
    assert out.iloc[2]["pathway"] == "safeguarding_review"


def test_a_safeguarding_cue_answered_in_substance_is_a_safeguarding_review(rules, tz):
    """The cue question asks for a concern: any real answer is one, in words no keyword
    list foresaw; "None", "N/A", "No" are not."""
    cues = ["Her nephew keeps her bank card and she seemed frightened of him", "None",
            "N/A", "no", "Not applicable.", None]
    out = triage(frame(*({"category": "workflow", "potential_harm": "low",
                          "safeguarding_cue": cue, "submitted_at": "2026-11-23 10:00"}
                         for cue in cues)), rules, tz)
    assert out["pathway"].tolist() == ["safeguarding_review"] + ["trend_monitoring"] * 5
    assert out.iloc[0]["rule_id"] == "safeguarding-cue-answered"
    assert out.iloc[0]["alert_roles"] == ["safeguarding_lead", "registered_manager"]


def test_serious_potential_harm_outside_the_named_categories(rules, tz):
    out = triage(frame({"category": "workflow", "potential_harm": "catastrophic",
                        "submitted_at": "2026-11-23 10:00"}), rules, tz)
    assert out.iloc[0]["rule_id"] == "serious-potential-harm"
    # severe potential harm alone is a careful team's everyday near miss: not a flag
    assert not out.iloc[0]["notification_risk"]


def test_a_notification_flag_needs_severe_harm_and_a_cue(rules, tz):
    base = {"category": "medication", "potential_harm": "severe",
            "submitted_at": "2026-11-23 10:00"}
    out = triage(frame(
        base,
        {**base, "description": "Resident fell and was taken to hospital"},
        {**base, "safeguarding_cue": "Bruising on both arms"},
        {**base, "safeguarding_cue": "none"},  # a no-answer is not a cue
        {**base, "potential_harm": "moderate", "description": "He fell"},
        {**base, "description": "Came back from hospital; the handover still said away"},
        {**base, "person_impact": "Would have had an allergic reaction"},
    ), rules, tz)
    assert out["notification_risk"].tolist() == [False, True, True, False, False, False,
                                                 False]
    assert out.iloc[1]["notification_reasons"] == ("serious potential harm, and the person "
                                                   "was hurt or taken to hospital")
    assert out.iloc[2]["notification_reasons"] == ("serious potential harm, and a "
                                                   "safeguarding cue")


def test_vectorised_over_many_rows(rules, tz):
    rows = [{"category": c, "submitted_at": "2026-11-23 10:00"} for c in
            ["medication", "transport", "safeguarding"] * 2000]
    out = triage(frame(*rows), rules, tz)
    assert len(out) == 6000
    assert out["pathway"].value_counts().to_dict() == {
        "medication_review": 2000, "operational_fix": 2000, "safeguarding_review": 2000}
