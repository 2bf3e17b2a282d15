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

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
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


# Reports per stored part of the view: a run rewrites the parts holding what it changed
# (new reports go to the last), and reads the view back whole in a few large reads.
PART = 5_000


def part_of(report_id: str) -> str:
    """The key of the part holding a report: by its number, so parts only ever grow."""
    return f"{int(report_id.rsplit('-', 1)[-1]) // PART:06d}"


def to_parts(view: pd.DataFrame, report_ids: Iterable[str] | None = None
             ) -> dict[str, dict[str, Any]]:
    """The parts holding `report_ids` (every part when None), each as column -> values,
    JSON-ready (times as ISO text, missing as None, repeated text coded: `_coded`)."""
    keys = view["report_id"].map(part_of)
    wanted = None if report_ids is None else {part_of(i) for i in report_ids}
    return {key: _columns(rows) for key, rows in view.groupby(keys, sort=True)
            if wanted is None or key in wanted}


def _columns(frame: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out[col] = [None if pd.isna(t) else t.isoformat() for t in values]
        else:
            out[col] = _coded([None if _missing(v) else v for v in values.tolist()])
    return out


def _coded(values: list[Any]) -> list[Any] | dict[str, list[Any]]:
    """A column of text that repeats (a category, a service, a status) as codes into its
    distinct values: a fraction of the text to store, and of the time to read it back."""
    if not {type(v) for v in values} <= {str, type(None)}:
        return values  # lists, numbers, flags: as they are (True and 1 would merge)
    distinct = dict.fromkeys(values)
    if len(distinct) * 2 > len(values):
        return values
    code = {v: i for i, v in enumerate(distinct)}
    # the codes as one base64 text of fixed-width integers: JSON decodes a list of numbers
    # hardly faster than the text it replaces, and one string at once
    codes = np.array([code[v] for v in values], dtype=_code_type(len(distinct)))
    return {"values": list(distinct), "codes": base64.b64encode(codes.tobytes()).decode()}


def _code_type(distinct: int) -> str:
    return "<u2" if distinct <= 1 << 16 else "<u4"


def _decoded(values: list[Any] | Mapping[str, Any]) -> np.ndarray:
    """A column as `_coded` stored it, as an array of Python objects."""
    if isinstance(values, Mapping):
        codes = np.frombuffer(base64.b64decode(values["codes"]),
                              dtype=_code_type(len(values["values"])))
        return pd.Series(values["values"], dtype=object).to_numpy()[codes]
    return pd.Series(values, dtype=object).to_numpy()


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, list | str | bool) and pd.isna(value))


def from_parts(parts: Iterable[Mapping[str, Any]], rules: Rules
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reports as `normalize.combine` gives them, the results of those that have them,
    indexed by report id, in the dtypes computed) from the parts `to_parts` gave."""
    pieces: dict[str, list[np.ndarray]] = {}
    for part in parts:
        for col, values in part.items():
            pieces.setdefault(col, []).append(_decoded(values))
    columns = {c: np.concatenate(v) if len(v) > 1 else v[0] for c, v in pieces.items()}
    # Each frame built once from the arrays: a frame of every column, then cut in two,
    # copied 100,000 rows of objects twice over.
    fields = list(rules.fields)
    reports = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()
                            if c not in DTYPES})
    for col in ("report_id", "source", "response_id"):
        reports[col] = reports[col].astype("str")
    reports["version"] = reports["version"].astype("int64")
    reports["anonymous"] = reports["anonymous"].astype(bool)
    for col in ["submitted_at", "updated_at",
                *(f for f in fields if rules.fields[f].type == "datetime")]:
        reports[col] = pd.to_datetime(reports[col], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]")
    done = pd.notna(columns["dq_status"]) if "dq_status" in columns else \
        np.zeros(len(reports), dtype=bool)
    kept = pd.DataFrame({c: pd.Series(columns[c][done] if c in columns else None, dtype=object)
                         for c in DTYPES})
    kept.index = pd.Index(reports["report_id"].to_numpy()[done], dtype="str", name="report_id")
    kept["triage_due"] = pd.to_datetime(kept["triage_due"], utc=True, format="ISO8601")
    return reports, kept.astype(DTYPES)


def to_compute(reports: pd.DataFrame, rules: Rules, kept: pd.DataFrame | None,
               kept_at: pd.Timestamp | None) -> pd.DataFrame:
    """The reports to check and triage: all when nothing is kept, else those without kept
    results and those with a time after `kept_at`."""
    if kept is None or kept_at is None:
        return reports
    return reports[~reports["report_id"].isin(kept.index) | ahead(reports, rules, kept_at)]


def attach(reports: pd.DataFrame, checked: pd.DataFrame, triaged: pd.DataFrame,
           kept: pd.DataFrame | None) -> pd.DataFrame:
    """Reports with their results: those just computed (`checked` and `triaged`, row for
    row with the reports computed), else those kept."""
    computed = pd.concat([checked, triaged.drop(columns=["report_id"])], axis=1)
    computed = computed.set_index(pd.Index(computed.pop("report_id"), dtype="str",
                                           name="report_id"))
    if kept is not None:
        rest = kept.loc[~kept.index.isin(computed.index), COMPUTED]
        computed = pd.concat([f for f in (computed, rest) if len(f)] or [computed])
    return reports.join(computed.astype({c: DTYPES[c] for c in COMPUTED}), on="report_id")


def kept_view(view: pd.DataFrame, held: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """What a run keeps for the next: every report's own `columns` (held ones too) and
    the results of those that have them."""
    active = view[[*columns, *DTYPES]]
    return pd.concat([active, held[columns]], ignore_index=True) if len(held) else active


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
