"""Person-served references found in any spelling, only as whole tokens."""

import pytest

from domain.references import PLACEHOLDER, ReferenceRedactor, reference_key

REDACTOR = ReferenceRedactor(["OH-014", "NG003", "AB-CD-12", "7", "007", None, "OH-014-2"])


@pytest.mark.parametrize("spelling", [
    "OH-014", "oh 14", "OH‑0014", "O\u200bH014", "OH014", "Oh_14", "OH.014", "OH/014",
    "OH\u2013014", "OH\u00a0014", "OH - 014", "OH\ufeff-\u200d01\u20604", "ＯＨ－０１４",
    "ng-3", "NG 0003", "ab cd 12", "AB/CD/012",
])
def test_every_spelling_is_the_reference(spelling):
    assert REDACTOR.redact(f"seen with {spelling}, twice") == f"seen with {PLACEHOLDER}, twice"


@pytest.mark.parametrize("text", [
    "OH-0141", "JOHN-014x", "OH-014x", "xOH-014", "12OH-014", "OH-0140", "OH--  --014",
    "OH\n014", "abcd12", "NG-31", "7 days", "007", "OH", "014",
])
def test_only_whole_tokens_of_long_enough_references(text):
    assert REDACTOR.redact(text) == text


def test_the_longest_reference_wins_and_punctuation_stays():
    assert REDACTOR.redact("OH-014-2 and OH-014's chart (OH-014/NG003).") == \
        "[person] and [person]'s chart ([person]/[person])."


def test_a_reference_with_unusual_punctuation_is_found_as_written():
    redactor = ReferenceRedactor(["Room#12"])
    assert redactor.redact("in Room#12, room 12 and ROOM#012") == \
        "in [person], [person] and [person]"


def test_keys():
    assert reference_key("OH-014") == reference_key("oh\u200b 0014") == ("oh", "14")
    assert reference_key("7") is None and reference_key("007") is None  # one character
    assert reference_key("A1") == ("a", "1")


def test_whole_contexts_are_redacted_and_keep_their_shape():
    context = {"report": {"service": "OH-014's flat", "count": 3},
               "actions": [{"action": "check oh 14"}], "pair": ("NG003", 7)}
    assert REDACTOR.redact_all(context) == {
        "report": {"service": "[person]'s flat", "count": 3},
        "actions": [{"action": "check [person]"}], "pair": ["[person]", 7]}
    assert not ReferenceRedactor([]) and REDACTOR.redact_all("nothing") == "nothing"
