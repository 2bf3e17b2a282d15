"""Text made safe for where it goes: a spreadsheet cell, an email header, an email body.

Form answers carry whatever the exporting tool let through: NUL and other control
characters, lone surrogates from broken encoders, 100 kB pastes. Every sink refuses some of
it, so what a sink cannot hold is replaced here, visibly and without raising; the answer as
submitted stays in the store.
"""

from __future__ import annotations

import re

# U+FFFD is what decoders show for a character they could not read: every spreadsheet and
# mail client displays it, readers know it means "something was here", and it is safe
# itself, so replacing twice changes nothing. (Control pictures such as U+2400 would name
# the character, but exist for C0 only.)
REPLACEMENT = "\ufffd"

# Excel holds at most 32,767 characters in a cell (Sheets 50,000) and counts them in UTF-16
# code units, an emoji as two; so is the limit counted here. openpyxl silently cuts longer
# text, so without a cut of our own the text read back never equals the text wanted and
# every run rewrites the cell.
CELL_LIMIT = 32_767

# C0 controls except tab and line feed (openpyxl's ILLEGAL_CHARACTERS_RE refuses them; CR is
# a line end, handled apart), DEL and C1 controls (invisible, never typed on purpose),
# surrogates (no UTF-8 for them: saving or sending fails) and U+FFFE/U+FFFF (not XML 1.0
# characters: openpyxl writes them, then cannot read its own workbook).
_UNSAFE_SET = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
_UNSAFE = re.compile(f"[{_UNSAFE_SET}]")
# XML readers turn CR LF and a lone CR into LF, so a CR never reads back as written.
_LINE_END = re.compile("\r\n?")
_CHANGED = re.compile(f"[\r{_UNSAFE_SET}]")


def safe_text(value: str) -> str:
    """Text every sink can hold: line ends as LF, unsafe characters as U+FFFD. Idempotent."""
    if not _CHANGED.search(value):  # the common case: one scan, no copy
        return value
    return _UNSAFE.sub(REPLACEMENT, _LINE_END.sub("\n", value))


def _units(text: str) -> int:
    """Length in UTF-16 code units, as Excel and Sheets count (text without surrogates)."""
    return len(text.encode("utf-16-le")) // 2


def sheet_text(value: str) -> str:
    """Text as a spreadsheet cell can hold it: safe (see `safe_text`) and, when too long for
    a cell, cut with a note so that the whole fits. Idempotent, so text read back from the
    sheet compares equal with what is wanted and a second run writes nothing."""
    text = safe_text(value)
    if len(text) <= CELL_LIMIT // 2 or _units(text) <= CELL_LIMIT:
        return text
    note = f" … [cut: {len(text):,} characters; the full text is in the store]"
    keep = CELL_LIMIT - len(note)  # the note is all in the BMP: one unit per character
    head = text[:keep]
    while (excess := _units(head) - keep) > 0:  # astral characters count two: drop
        head = head[:-((excess + 1) // 2)]  # half the excess in characters, never too many
    return head + note


def header_text(value: str, limit: int | None = None) -> str:
    """One line for an email header: safe, every line break and run of white space one
    space (the email package refuses a value that str.splitlines would split), and at most
    `limit` characters, ending in "…" when cut."""
    text = " ".join(safe_text(value).split())
    if limit is not None and len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text
