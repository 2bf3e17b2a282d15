"""What a condition in the rules file means, evaluated over a whole DataFrame at once (one
boolean Series per rule).

Kept with the rules' schema, not in a step: the required-field sets (checks), triage,
notification risk and repeat filters (transforms) all read conditions, and a condition
means the same thing wherever it appears in the rules file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from config.rules import Condition, Rules


def _is_list_column(series: pd.Series) -> bool:
    first = series.dropna()
    return not first.empty and isinstance(first.iloc[0], list | tuple)


def _plain(text: str) -> str:
    """An answer as compared with the "no"-like ones: case, spacing and end stops aside."""
    return " ".join(text.split()).casefold().strip(" .!")


def _one_field(frame: pd.DataFrame, name: str, cond: Condition, rules: Rules) -> pd.Series:
    if name not in frame.columns:
        return pd.Series(False, index=frame.index)
    series = frame[name]
    op = cond.operator
    if op == "keywords":
        words = sorted({w.strip() for w in cond.keywords or [] if w.strip()}, key=len, reverse=True)
        if not words:
            return pd.Series(False, index=frame.index)
        pattern = r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)"
        text = series.map(lambda v: " ".join(v) if isinstance(v, list | tuple) else v)
        return text.astype("string").str.contains(pattern, case=False, regex=True,
                                                  na=False).astype(bool)
    if op == "answered":
        nothing = {_plain(w) for w in rules.no_answers} | {""}
        text = series.map(lambda v: " ".join(map(str, v)) if isinstance(v, list | tuple)
                          else "" if v is None or pd.isna(v) else str(v))
        return text.map(lambda v: (_plain(v) not in nothing) is cond.answered).astype(bool)
    if op == "at_least":
        levels = list(rules.choices(name))
        rank = {key: i for i, key in enumerate(levels)}
        threshold = rank[cond.at_least]
        ranks = series.map(rank)
        return (ranks >= threshold).fillna(False).astype(bool)
    wanted = {cond.equals} if op == "equals" else set(cond.in_ or [])
    if _is_list_column(series):
        return series.map(
            lambda v: isinstance(v, list | tuple) and bool(wanted & set(v))).astype(bool)
    return series.isin(wanted).fillna(False).astype(bool)


def holds(frame: pd.DataFrame, conditions: Sequence[Condition], rules: Rules) -> pd.Series:
    """True where every condition holds; a condition on several fields holds if any does."""
    result = pd.Series(True, index=frame.index)
    for cond in conditions:
        any_field = np.zeros(len(frame), dtype=bool)
        for name in cond.fields:
            any_field |= _one_field(frame, name, cond, rules).to_numpy()
        result &= any_field
    return result
