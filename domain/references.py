"""Person-served references (`OH-014`, `NG003`) found and replaced in free text.

A manager types a reference the way it comes to mind: `oh 14`, `OH003`, `OH‑0014` with a
non-breaking hyphen, or pasted with a zero-width space inside. All of these name the same
person, so a reference is compared as its *key*: its letter and digit runs, casefolded,
digit runs without leading zeros, invisible characters dropped. In text, the runs of a
reference may be written together or apart with a short separator (spaces, hyphens and
dashes, underscore, dot, slash), and the whole must stand as a token of its own: neither
`OH-0141` nor `JOHN-014x` is `OH-014`.

Matching walks the text's runs once and follows a trie of the known keys, so the cost of a
text depends on its length, not on how many references there are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = "[person]"

# Characters that show as nothing: zero-width space/joiners, bidi marks and isolates, word
# joiner and invisible operators, BOM/ZWNBSP, soft hyphen, combining grapheme joiner,
# Mongolian vowel separator, variation selectors, tag characters, and control characters
# (the mail templates show those as U+FFFD, which still leaves the reference readable).
_INVISIBLE_SET = (
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufe00-\ufe0f\ufeff"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_SET}]+")
# What may stand between two runs of a reference: white space that does not end a line,
# hyphens, dashes and minus signs, underscore, dots and slashes (and the fullwidth forms).
SEPARATORS = frozenset(
    " \t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
    "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
    "_\uff3f.\u2024\uff0e/\\\u2044\u2215\uff0f"
)
# A separator between two runs is at most this long ("OH - 014"): a longer gap is two
# things said apart, not one reference.
_GAP = 3
# A letter run or a digit run; invisible characters between two of its characters belong
# to it (`O\u200bH` is one run `OH`).
_RUN = re.compile(
    rf"[^\W\d_](?:[{_INVISIBLE_SET}]*[^\W\d_])*|\d(?:[{_INVISIBLE_SET}]*\d)*")
# Gaps between runs, after invisible characters are dropped.
_ADJACENT, _SEPARATED, _BROKEN = 0, 1, 2
# A key shorter than this many characters is never matched: a one-letter or one-digit
# reference (`A`, `7`, or `007` once its zeros are gone) would blank every such letter or
# number in ordinary text, making the message unreadable while protecting nobody.
MIN_KEY_CHARS = 2


def _part(run: str) -> str:
    """A run as the key holds it: no invisible characters, compatibility forms folded
    (fullwidth `ＯＨ`), casefolded, a number without its leading zeros."""
    if not run.isascii():
        run = unicodedata.normalize("NFKC", _INVISIBLE.sub("", run))
    run = run.casefold()
    if run.isdecimal():
        run = run.lstrip("0") or "0"
    return run


def _runs(text: str) -> tuple[list[re.Match[str]], list[str]]:
    """The text's letter and digit runs, and the parts of the key they spell."""
    runs = list(_RUN.finditer(text))
    return runs, [_part(m.group()) for m in runs]


def reference_key(ref: str) -> tuple[str, ...] | None:
    """The key of a reference (`OH-014` and `oh 14` both give ("oh", "14")), or None when
    it is too short to match safely. Any non-alphanumeric character of the reference itself
    separates its runs."""
    _, parts = _runs(ref)
    key = tuple(parts)
    return key if sum(map(len, key)) >= MIN_KEY_CHARS else None


class ReferenceRedactor:
    """Replaces every known reference, in any of its spellings, with a placeholder.

    Build it once per run from all references known; `redact` and `redact_all` are then
    one scan of each text."""

    def __init__(self, refs: Iterable[Any], placeholder: str = PLACEHOLDER) -> None:
        self.placeholder = placeholder
        self._trie: dict[str | None, Any] = {}
        separators = set(SEPARATORS)
        for ref in refs:
            if not isinstance(ref, str) or (key := reference_key(ref)) is None:
                continue
            node = self._trie
            for part in key:
                node = node.setdefault(part, {})
            node[None] = True
            # The reference's own punctuation separates too, so it is always found as
            # it is written even when that is not one of the usual separators.
            separators.update(c for c in _INVISIBLE.sub("", ref)
                              if not c.isalnum() and c not in "\r\n")
        self._separators = frozenset(separators)

    def __bool__(self) -> bool:
        return bool(self._trie)

    def _gap(self, between: str) -> int:
        if not between:
            return _ADJACENT
        between = _INVISIBLE.sub("", between)
        if not between:
            return _ADJACENT
        if len(between) <= _GAP and all(c in self._separators for c in between):
            return _SEPARATED
        return _BROKEN

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where known references stand in the text, as (start, end), left to right,
        the longest at each place."""
        if not self._trie:
            return []
        runs, parts = _runs(text)
        n = len(runs)
        found: list[tuple[int, int]] = []
        gaps: dict[int, int] = {}  # gap after run i, computed only where a match looks

        def gap_after(i: int) -> int:
            if i not in gaps:
                gaps[i] = _BROKEN if i + 1 >= n else self._gap(
                    text[runs[i].end():runs[i + 1].start()])
            return gaps[i]

        i = 0
        while i < n:
            node = self._trie.get(parts[i])
            # A match starts a token: no letter or digit run written right against it.
            if node is None or (i > 0 and gap_after(i - 1) == _ADJACENT):
                i += 1
                continue
            j, last = i, -1
            while True:
                gap = gap_after(j)
                if None in node and gap != _ADJACENT:  # and it ends a token
                    last = j
                if gap == _BROKEN or (node := node.get(parts[j + 1])) is None:
                    break
                j += 1
            if last < 0:
                i += 1
                continue
            found.append((runs[i].start(), runs[last].end()))
            i = last + 1
        return found

    def redact(self, text: str) -> str:
        """The text with every known reference replaced by the placeholder."""
        spans = self.spans(text)
        if not spans:
            return text
        out, at = [], 0
        for start, end in spans:
            out += [text[at:start], self.placeholder]
            at = end
        out.append(text[at:])
        return "".join(out)

    def redact_all(self, value: Any) -> Any:
        """Every string inside `value` (nested dicts, lists, tuples) redacted; other values
        as they are. Keys are template names, not text, and stay."""
        if isinstance(value, str):
            redacted = self.redact(value)
            # A str subclass (markupsafe's Markup) keeps its type: the placeholder needs
            # no escaping.
            return redacted if type(value) is str else type(value)(redacted)
        if isinstance(value, Mapping):
            return {k: self.redact_all(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_all(v) for v in value]
        return value
