"""What a run computed of each report, kept so the next run recomputes only what changed.

A report's results (its checks, its triage, when it was completed) follow from its
normalised fields, the config and rules, and the code, and from the clock in one way only:
a time "in the future" stops being one. So a run may take the last run's results of a
report whose responses did not change, provided the config and code are the same and the
report had no time ahead of when they were computed. The date columns of the exports are
read in one day order per column, decided from all their values; a run reads only new
responses when what those prove of each column leaves its day order as it was.

Pure: records and DataFrames in, DataFrames and records out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from config.rules import Rules
from domain.times import NO_PROOF, Proofs, decide_order

# The columns the checks and triage add to a report, and the audit's completion time,
# with the dtypes they are computed in (`checks.quality.check_reports`, `triage.triage`).
DTYPES: dict[str, Any] = {
    "dq_status": "str", "missing": object, "invalid": object, "dq_messages": object,
    "blocked": object, "rule_id": "str", "pathway": "str", "pathway_label": "str",
    "priority": "str", "triage_due": "datetime64[us, UTC]", "alert_roles": object,
    "notification_risk": bool, "notification_reasons": object, "completed_at": object,
}
COMPUTED = [c for c in DTYPES if c != "completed_at"]  # by the checks and triage
RECEIVED = ("submitted_at", "updated_at")  # when a report came: never in the future


def to_records(view: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Report id -> its results, JSON-ready (the due time as ISO text)."""
    due = [None if pd.isna(t) else t.isoformat() for t in view["triage_due"]]
    # missing as None: JSON has no NaN
    columns = {c: [None if _missing(v) else v for v in view[c].tolist()]
               for c in DTYPES if c != "triage_due"}
    columns["notification_risk"] = [bool(v) for v in columns["notification_risk"]]
    return {rid: {**{c: columns[c][i] for c in columns}, "triage_due": due[i]}
            for i, rid in enumerate(view["report_id"])}


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, list | str | bool) and pd.isna(value))


def from_records(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The results `to_records` gave, indexed by report id, in the dtypes computed."""
    rows = list(records.values())
    index = pd.Index(list(records), dtype="str", name="report_id")
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object, index=index)
                          for c in DTYPES}, index=index)
    frame["triage_due"] = pd.to_datetime(frame["triage_due"], utc=True, format="ISO8601")
    return frame.astype(DTYPES)


def ahead(reports: pd.DataFrame, rules: Rules, since: pd.Timestamp) -> pd.Series:
    """Whether each report had a time after `since` (its checks may have changed since)."""
    out = pd.Series(False, index=reports.index)
    for name, spec in rules.fields.items():
        if spec.type == "datetime" and name in reports and name not in RECEIVED:
            out |= (reports[name] > since).fillna(False).astype(bool)
    return out


def orders_hold(before: Mapping[str, Mapping[str, Proofs]],
                after: Mapping[str, Mapping[str, Proofs]], dayfirst: bool) -> bool:
    """Whether every date column keeps the day order (and contradiction or not) it had:
    then the answers read before read the same now."""
    for source, fields in after.items():
        for name, proofs in fields.items():
            old = tuple(before.get(source, {}).get(name, NO_PROOF))
            was, now = decide_order(old, dayfirst), decide_order(tuple(proofs), dayfirst)
            if was[0] != now[0] or (was[1] is None) != (now[1] is None):
                return False
    return True
