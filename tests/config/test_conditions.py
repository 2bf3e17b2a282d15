import pandas as pd

from config.conditions import holds
from config.rules import Condition
from config.settings import load_rules


def test_operators_and_missing_values(rules):
    frame = pd.DataFrame({
        "category": ["medication", "transport", None],
        "potential_harm": ["severe", "low", None],
        "contributing_factors": [["handover"], ["staffing", "equipment"], None],
        "description": ["Stranger approached", "fine", None],
    })

    def check(**cond) -> list[bool]:
        return holds(frame, [Condition.model_validate(cond)], rules).tolist()

    assert check(field="category", equals="medication") == [True, False, False]
    assert check(field="category", **{"in": ["transport", "mealtime"]}) == [False, True, False]
    assert check(field="contributing_factors", equals="equipment") == [False, True, False]
    assert check(field="potential_harm", at_least="moderate") == [True, False, False]
    assert check(field="description", keywords=["stranger"]) == [True, False, False]
    assert check(field="description", keywords=["strange"]) == [False, False, False]
    assert check(field=["category", "description"], keywords=["transport", "stranger"]) == [
        True, True, False]


def test_all_conditions_must_hold(rules):
    frame = pd.DataFrame({"category": ["escalation", "escalation"],
                          "potential_harm": ["moderate", "low"]})
    conds = [Condition.model_validate(c) for c in (
        {"field": "category", "equals": "escalation"},
        {"field": "potential_harm", "at_least": "moderate"})]
    assert holds(frame, conds, rules).tolist() == [True, False]
    assert holds(frame, [], rules).tolist() == [True, True]


def test_answered_means_an_answer_in_substance():
    rules = load_rules()
    frame = pd.DataFrame({"safeguarding_cue": [
        "She said her nephew keeps her bank card", "None", " n/a. ", "No", "NOT APPLICABLE",
        "", None, pd.NA, "-", "No concerns.", "no bruises seen but she flinched",
        ["none"], ["carer shouted"]]})
    answered = holds(frame, [Condition(field="safeguarding_cue", answered=True)], rules)
    assert answered.tolist() == [True, False, False, False, False, False, False, False, False,
                                 False, True, False, True]
    unanswered = holds(frame, [Condition(field="safeguarding_cue", answered=False)], rules)
    assert (unanswered == ~answered).all()
