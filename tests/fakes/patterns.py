"""A repeat pattern as the tracker shows it, long enough that its "Report IDs" cell passes
the 32,767 characters a spreadsheet cell keeps."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd

from transforms.tracker import patterns_rows


def long_pattern_rows(members: int = 3000) -> pd.DataFrame:
    """The Patterns sheet's desired rows for one pattern of `members` reports."""
    ids = [f"NM-{i:06d}" for i in range(1, members + 1)]
    patterns = pd.DataFrame([{
        "pattern_id": "PT-0001", "rule_label": "same category at one service",
        "key_label": "Medication, Oak House", "count": len(ids), "members": ids,
        "first_at": pd.Timestamp("2026-09-07 08:00", tz="UTC"),
        "last_at": pd.Timestamp("2026-11-15 23:35", tz="UTC"),
        "display_status": "open", "reason": "reached 3 reports within 14 days"}])
    return patterns_rows(patterns, ZoneInfo("Europe/London"))
