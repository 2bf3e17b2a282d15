from transforms.suggest import SURE, guess_fields, guess_values, similarity


def test_similarity_ignores_case_spacing_and_punctuation():
    assert similarity("What happened?", "what  happened") == 1.0
    assert similarity("Date and time of the near miss", "date of near miss") > SURE
    assert similarity("Shift", "Which system were you using?") < 0.5
    assert similarity("", "shift") == 0.0


def test_each_field_goes_to_one_question_the_likelier_first(rules):
    guesses = guess_fields(["Describe what happened", "What happened next?", "Type of near miss",
                            "Favourite colour"], rules)
    best = {g.text: g.best for g in guesses}
    assert best["Describe what happened"] == "description"
    assert best["What happened next?"] != "description"  # taken by the likelier one
    assert best["Type of near miss"] == "category"
    assert not next(g for g in guesses if g.text == "Favourite colour").sure


def test_forms_titles_already_mapped_count_as_synonyms(rules):
    [g] = guess_fields(["Kit fault reference"], rules, {"Kit fault reference": "hazard"})
    assert (g.best, g.sure) == ("hazard", True)


def test_option_texts_the_taxonomy_reads_need_no_map(rules):
    guesses = guess_values(["Moderate", "moderate ", "Low", "4 - Catastrophic", "Not sure", ""],
                           "potential_harm", rules)
    assert [g.text for g in guesses] == ["4 - Catastrophic", "Not sure"]
    assert (guesses[0].best, guesses[0].sure) == ("catastrophic", True)
    assert not guesses[1].sure
