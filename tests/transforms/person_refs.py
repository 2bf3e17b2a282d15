"""An independent check that a person-served reference is readable in rendered text.

Written apart from `domain.references` (string rewriting, no runs, no trie) and more
eager than it: any run of separators of any length counts as one separator, so a spelling
the redactor missed is found here rather than missed the same way twice.
"""

from __future__ import annotations

import re

# Characters that show as nothing, as the tests insert them.
INVISIBLES = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
# Separators the tests put between a reference's parts.
SEPARATORS = " -_./\u00a0\u2011\u2013\u2014\u2212"

_INVISIBLE = re.compile(f"[{INVISIBLES}]")
_SEPARATOR_RUN = re.compile(f"[{re.escape(SEPARATORS)}]+")
_NUMBER = re.compile(r"[0-9]+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def normalised(text: str) -> str:
    """Invisibles dropped, casefolded, every separator run one "-", numbers without leading
    zeros, a "-" wherever letters meet digits: `OH\u2011 0014` and `oh14` are both
    `oh-14`."""
    text = _SEPARATOR_RUN.sub("-", _INVISIBLE.sub("", text).casefold())
    text = _NUMBER.sub(lambda m: m.group().lstrip("0") or "0", text)
    return _LETTER_DIGIT.sub("-", text)


def readable(ref: str, text: str) -> bool:
    """Whether `ref`, in any spelling, stands in `text` as a token of its own."""
    key = normalised(ref)
    return re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", normalised(text)) \
        is not None
