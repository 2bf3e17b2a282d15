"""The one email-address rule: what the checks accept is what the loop emails."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# Pragmatic: one @, no spaces or control characters, a dot in the domain. Deliverability
# is not our business. One address, no list: separators and angle brackets mean someone
# typed several or a name.
EMAIL_REGEX = r"^[^@\s\x00-\x1f\x7f,;<>]+@[^@\s\x00-\x1f\x7f,;<>]+\.[^@\s\x00-\x1f\x7f,;<>.]+$"
_ADDRESS = re.compile(EMAIL_REGEX)


def valid_address(value: Any) -> bool:
    return isinstance(value, str) and _valid(value)


@lru_cache(maxsize=1 << 16)  # a run asks of every report's address several times
def _valid(text: str) -> bool:
    return bool(_ADDRESS.match(text.strip()))
