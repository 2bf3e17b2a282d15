"""Triage by declarative rules: pathway, priority, due time, who to alert, notification risk.

Rules are tried in order and the first whose conditions all hold decides; the default
catches the rest (trend monitoring), so every report lands somewhere and the rule that
fired is recorded for the audit trail. Evaluated as one boolean mask per rule.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.conditions import holds
from config.rules import Rules

COLUMNS = ["report_id", "rule_id", "pathway", "pathway_label", "priority", "triage_due",
           "alert_roles", "notification_risk", "notification_reasons"]


def _end_of_local_day(times: pd.Series, tz: ZoneInfo) -> pd.Series:
    """23:59 local on the day of each time, computed on calendar dates so that the
    23- and 25-hour days of a clock change still end at local midnight."""
    local = times.dt.tz_convert(tz)
    next_midnight = (local.dt.tz_localize(None).dt.normalize() + pd.Timedelta(days=1))
    return (next_midnight.dt.tz_localize(tz, ambiguous=np.ones(len(times), dtype=bool),
                                         nonexistent="shift_forward")
            - pd.Timedelta(minutes=1)).dt.tz_convert("UTC")


def triage(reports: pd.DataFrame, rules: Rules, tz: ZoneInfo) -> pd.DataFrame:
    """One row per report: the rule that fired and what it decides.

    Due = submission time + the SLA hours of the pathway (or of the rule, which may
    override priority, SLA, same-day and roles); same-day pathways are due no later than
    the end of the local day the report was submitted.
    """
    spec = rules.triage
    n = len(reports)
    masks = [holds(reports, rule.when, rules).to_numpy() for rule in spec.rules]
    choice = np.select(masks, np.arange(len(spec.rules)), default=len(spec.rules)) if masks \
        else np.zeros(n, dtype=int)

    decided = [*spec.rules, spec.default]
    def attr(get) -> np.ndarray:  # one value per rule (default last), gathered by choice
        values = np.empty(len(decided), dtype=object)
        values[:] = [get(rule, spec.pathways[rule.pathway]) for rule in decided]
        return values[choice]

    out = pd.DataFrame(index=reports.index)
    out["report_id"] = reports["report_id"]
    out["rule_id"] = attr(lambda r, p: r.id)
    out["pathway"] = attr(lambda r, p: r.pathway)
    out["pathway_label"] = attr(lambda r, p: p.label)
    out["priority"] = attr(lambda r, p: getattr(r, "priority", None) or p.priority)
    sla = attr(lambda r, p: getattr(r, "sla_hours", None) or p.sla_hours).astype(float)
    same_day = attr(lambda r, p: p.same_day if getattr(r, "same_day", None) is None
                    else r.same_day).astype(bool)
    alert = attr(lambda r, p: list(p.alert if getattr(r, "alert", None) is None else r.alert))
    out["alert_roles"] = alert

    submitted = reports["submitted_at"]
    due = submitted + pd.to_timedelta(sla, unit="h")
    if same_day.any():
        due = due.where(~same_day, np.minimum(due, _end_of_local_day(submitted, tz)))
    out["triage_due"] = due

    reasons = pd.Series("", index=reports.index, dtype=object)
    for rule in rules.notification_risk:
        reasons += np.where(holds(reports, rule.when, rules), rule.reason + "; ", "")
    out["notification_risk"] = reasons != ""
    out["notification_reasons"] = reasons.str.removesuffix("; ")
    return out[COLUMNS]
