"""Starter mappings for a provider's own form: which field each question most likely is,
and which taxonomy value each option text most likely means.

Pure: titles, answers and rules in; suggestions with a confidence out. A person decides
the unsure ones (`nearmiss init` writes them commented out, with the candidates).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from config.rules import Rules

SURE = 0.75  # at or above: mapped; below: a person decides among the candidates
# Words every question and option has: they say nothing about which one it is.
_STOP = frozenset(re.findall(r"\w+", """a an and any are as at be by did do does for from had
has have how i if in is it its of on or please the this to was were what when where which who
why with you your"""))
# What forms commonly call the fields, beyond the rules' labels and the demo form's titles.
SYNONYMS: dict[str, list[str]] = {
    "reporter_name": ["your name", "name of person reporting", "reported by"],
    "reporter_email": ["email address", "your email", "contact email"],
    "report_reference": ["reference number", "previous report", "earlier report id"],
    "category": ["type of near miss", "type of incident", "kind of incident", "category"],
    "description": ["describe what happened", "description", "details of the near miss",
                    "what went wrong", "summary of event"],
    "immediate_action": ["action taken", "what was done", "immediate response"],
    "service": ["service name", "location", "home", "team", "site", "unit"],
    "setting": ["where did it happen", "type of setting", "place"],
    "occurred_at": ["date and time", "date of incident", "date of near miss",
                    "incident date", "when did this happen", "time of event"],
    "shift": ["shift pattern", "time of day worked"],
    "person_ref": ["service user", "resident", "client", "person supported initials",
                   "person id"],
    "potential_harm": ["severity", "how serious", "potential severity", "risk rating",
                       "level of harm"],
    "contributing_factors": ["contributing factors", "causes", "why did it happen"],
    "medication_name": ["name of medicine", "drug name", "medicine"],
}


@dataclass(frozen=True)
class Guess:
    """What one question or option most likely is."""

    text: str  # the question title or option text as the form has it
    best: str | None  # a field or taxonomy key; None when nothing comes close
    confidence: float  # 0..1
    candidates: tuple[str, ...] = ()  # the next likeliest, best first

    @property
    def sure(self) -> bool:
        return self.best is not None and self.confidence >= SURE


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.casefold()))


def _tokens(text: str) -> set[str]:
    return {w for w in _plain(text).split() if w not in _STOP}


def similarity(text: str, name: str) -> float:
    """How alike a form's wording and a known name are: 1.0 when equal (case, spacing and
    punctuation aside), high when every word of the name is in the text."""
    a, b = _plain(text), _plain(name)
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    ratio = SequenceMatcher(None, a, b).ratio()
    ta, tb = _tokens(text), _tokens(name)
    if not ta or not tb:
        return ratio
    found = len(ta & tb) / len(tb)  # the name's words the text has
    extra = len(ta - tb) / len(ta)  # the text's words the name lacks
    return max(ratio, 0.9 * found - 0.2 * extra)


def _ranked(text: str, names: Mapping[str, Iterable[str]]) -> list[tuple[float, str]]:
    scores = [(max((similarity(text, n) for n in known), default=0.0), key)
              for key, known in names.items()]
    return sorted(scores, key=lambda s: (-s[0], s[1]))


def field_names(rules: Rules, known_titles: Mapping[str, str] | None = None
                ) -> dict[str, list[str]]:
    """Every way a field may be asked for: its name, its label, common synonyms, and the
    titles of forms already mapped (`known_titles`: title -> field)."""
    names = {f: [f.replace("_", " "), spec.label, *SYNONYMS.get(f, [])]
             for f, spec in rules.fields.items()}
    for title, field in (known_titles or {}).items():
        if field in names:
            names[field].append(title)
    return names


def guess_fields(titles: Sequence[str], rules: Rules,
                 known_titles: Mapping[str, str] | None = None) -> list[Guess]:
    """The field each question most likely fills, each field to one question at most (the
    likelier pairing first)."""
    names = field_names(rules, known_titles)
    ranked = {t: _ranked(t, names) for t in titles}
    pairs = sorted(((score, t, f) for t, scores in ranked.items() for score, f in scores),
                   key=lambda p: (-p[0], titles.index(p[1]), p[2]))
    chosen: dict[str, tuple[str, float]] = {}
    taken: set[str] = set()
    for score, title, field in pairs:
        if title not in chosen and field not in taken and score > 0.3:
            chosen[title] = (field, score)
            taken.add(field)
    out = []
    for t in titles:
        field, score = chosen.get(t, (None, 0.0))
        others = tuple(f for s, f in ranked[t][:4] if f != field and s > 0.3)[:3]
        out.append(Guess(t, field, round(score, 2), others))
    return out


def guess_values(answers: Iterable[str], field: str, rules: Rules) -> list[Guess]:
    """For each option text seen, the taxonomy value it most likely means; texts the
    taxonomy already reads (its keys and labels) are left out: they need no map."""
    choices = rules.choices(field)
    exact = {_plain(k) for k in choices} | {_plain(v) for v in choices.values()}
    names = {k: [k.replace("_", " "), label] for k, label in choices.items()}
    out = []
    for text in dict.fromkeys(a for a in answers if a and a.strip()):
        if _plain(text) in exact:
            continue
        ranked = _ranked(text, names)
        best_score, best = ranked[0] if ranked else (0.0, None)
        out.append(Guess(text, best if best_score > 0.3 else None, round(best_score, 2),
                         tuple(k for s, k in ranked[1:4] if s > 0.3)))
    return out
