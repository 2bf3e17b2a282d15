"""The ids of reports, patterns and actions, and how people quote them."""

from __future__ import annotations

import re

# A reference as a reporter types it: "nm 123", "NM-000123", "NM000123".
REPORT_REFERENCE = re.compile(r"(?i)\bnm[\s\-_]*0*(\d{1,9})\b")
PATTERN_REFERENCE = re.compile(r"(?i)\bPT[\s\-_]*0*(\d{1,9})\b")
_ACTION_ID = re.compile(r"^A-(\d{1,9})$")
_ANY_ID = re.compile(r"(?i)^\s*(nm|pt|a)[\s\-_]*0*(\d{1,9})\s*$")


def report_id(number: int) -> str:
    return f"NM-{number:06d}"


def pattern_id(number: int) -> str:
    return f"PT-{number:04d}"


def action_id(number: int) -> str:
    return f"A-{number:04d}"


def action_number(key: str) -> int:
    """The number of an action id (0 for anything else): ids already in the sheet are taken."""
    m = _ACTION_ID.match(key)
    return int(m.group(1)) if m else 0


def canonical_id(text: str) -> str | None:
    """A report, pattern or action id however a person typed it ("nm-1", "NM 000001",
    "pt3", "a-12") as the loop writes it; None when it is none of them."""
    m = _ANY_ID.match(text)
    if m is None:
        return None
    make = {"nm": report_id, "pt": pattern_id, "a": action_id}[m.group(1).lower()]
    return make(int(m.group(2)))
