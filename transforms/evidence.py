"""The evidence pack's tables: what an inspector or commissioner asks for a date range.

Built from what the store keeps (the normalised reports, the decisions of the last run,
the values managers typed, the patterns, the audit log), never from a run: a pack can be
made for any range at any time. Person-served references are left out unless asked for:
a pack travels further than the tracker does, and an inspector rarely needs to know who.

Pure: records and DataFrames in, DataFrames out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from config.rules import Rules
from transforms.actions import report_closure
from transforms.metrics import Period
from transforms.normalize import display, local_times

REDACTED = "[person ref]"
# Reports sheet: column title -> report field (None: from the decisions or the tracker)
REPORT_COLUMNS = {
    "Report ID": "report_id", "Submitted": "submitted_at", "Occurred": "occurred_at",
    "Service": "service", "Category": "category", "What happened": "description",
    "Immediate action": "immediate_action", "Potential harm": "potential_harm",
    "Person ref": "person_ref", "Data quality": "dq_status", "Pathway": "pathway",
    "Priority": "priority", "Triage due": "triage_due", "Triage date": "triaged_on",
    "Notification risk": "notification_risk",
    "Notification decision": "notification_decision", "Closed on": "closed_on",
    "Outcome for reporter": "outcome", "Patterns": "pattern_ids",
}


def report_frame(records: Iterable[Mapping[str, Any]], decisions: Mapping[str, Mapping[str, Any]],
                 manager: dict[str, dict[str, str]], patterns: Mapping[str, Mapping[str, Any]],
                 tz: ZoneInfo, dayfirst: bool) -> pd.DataFrame:
    """One row per stored report with what the last run decided and managers recorded, in
    the columns transforms.metrics reads."""
    frame = pd.DataFrame(list(records))
    if frame.empty:
        frame = pd.DataFrame(columns=["report_id", "submitted_at", "occurred_at"])
    for column in ("submitted_at", "occurred_at"):
        frame[column] = pd.to_datetime(frame.get(column), utc=True, format="ISO8601")
    state = [decisions.get(rid, {}) for rid in frame["report_id"]]
    for field in ("dq_status", "pathway", "priority", "rule_id"):
        frame[field] = pd.Series([s.get(field) for s in state], index=frame.index, dtype=object)
    frame["notification_risk"] = [bool(s.get("notification_risk")) for s in state]
    for field in ("triage_due", "completed_at"):
        frame[field] = pd.to_datetime(pd.Series([s.get(field) for s in state], dtype=object),
                                      format="%Y-%m-%d %H:%M").dt.tz_localize(
            tz, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    closure = report_closure(manager, frame["report_id"], dayfirst).drop(columns=["report_id"])
    frame = pd.concat([frame.reset_index(drop=True), closure.reset_index(drop=True)], axis=1)
    status = {k: v.get("Triage status", "").casefold() for k, v in manager.items()}
    frame["triaged"] = [status.get(k, "") in ("triaged", "closed") or bool(c)
                        for k, c in zip(frame["report_id"], frame["closed"], strict=True)]
    member_of: dict[str, list[str]] = {}
    for pid, p in sorted(patterns.items()):
        for member in p.get("members") or []:
            member_of.setdefault(member, []).append(pid)
    frame["pattern_ids"] = [member_of.get(k, []) for k in frame["report_id"]]
    return frame


def pattern_frame(patterns: Mapping[str, Mapping[str, Any]], reports: pd.DataFrame,
                  tz: ZoneInfo) -> pd.DataFrame:
    """The stored patterns in the columns transforms.metrics reads."""
    occurred = dict(zip(reports["report_id"], reports["occurred_at"], strict=True))
    rows = []
    for pid, p in sorted(patterns.items()):
        members = list(p.get("members") or [])
        times = [t for t in (occurred.get(m) for m in members) if t is not None and pd.notna(t)]
        closed = p.get("closed_at")
        rows.append({
            "pattern_id": pid, "rule_id": p.get("rule_id"), "key": list(p.get("key") or []),
            "key_label": " · ".join(map(str, p.get("key") or [])), "members": members,
            "count": len(members), "first_at": min(times, default=pd.NaT),
            "last_at": max(times, default=pd.NaT), "status": p.get("status"),
            "closed_at": pd.Timestamp(closed).tz_localize(tz).tz_convert("UTC")
            if closed else pd.NaT})
    return pd.DataFrame(rows, columns=["pattern_id", "rule_id", "key", "key_label", "members",
                                       "count", "first_at", "last_at", "status", "closed_at"])


def tables(reports: pd.DataFrame, patterns: pd.DataFrame, actions: pd.DataFrame,
           events: pd.DataFrame, period: Period, tz: ZoneInfo, rules: Rules,
           person_refs: bool = False) -> dict[str, pd.DataFrame]:
    """The pack's sheets: the reports submitted in the period, their escalations and
    notification decisions, the patterns and actions they are part of, and the audit
    events recorded in the period."""
    inside = reports[period.contains(reports["submitted_at"], tz)].sort_values("report_id")
    ids = set(inside["report_id"])
    refs = {str(r).strip() for r in reports.get("person_ref", pd.Series(dtype=object))
            if isinstance(r, str) and r.strip()} if not person_refs else set()
    shown = _reports_sheet(inside, rules, tz, person_refs)
    escalated = inside["notification_risk"].astype(bool) | inside["priority"].eq("P1")
    escalations = shown[escalated.to_numpy()][[
        "Report ID", "Submitted", "Service", "Category", "Priority", "Pathway",
        "Notification risk", "Notification decision", "Triage date"]]
    linked = patterns.loc[_mask([bool(ids & set(m)) for m in patterns["members"]])
                          ].reset_index(drop=True)
    pattern_ids = set(linked["pattern_id"])
    pattern_sheet = pd.DataFrame({
        "Pattern ID": linked["pattern_id"], "Rule": linked["rule_id"],
        "Similar by": _redacted(linked["key_label"], refs),
        "Reports": [", ".join(m) for m in linked["members"]], "Count": linked["count"],
        "First": local_times(linked["first_at"], tz), "Last": local_times(linked["last_at"], tz),
        "Status": linked["status"], "Closed": local_times(linked["closed_at"], tz)})
    acted = actions.loc[_mask([bool(ids & set(r)) or bool(pattern_ids & set(p)) for r, p in
                               zip(actions["reports"], actions["patterns"], strict=True)])
                        ].reset_index(drop=True)
    action_sheet = pd.DataFrame({
        "Action ID": acted["action_id"], "Linked to": acted["linked"], "Action": acted["action"],
        "Owner": acted["owner"], "Due": acted["due"].map(_day), "Status": acted["status"],
        "Verified on": acted["verified_on"].map(_day), "Outcome": acted["outcome"],
        "Reopened": acted["reopened"]})
    recorded = events[period.contains(events["at"], tz)].reset_index(drop=True)
    audit_sheet = pd.DataFrame({
        "At": local_times(recorded["at"], tz), "Entity": recorded["entity"],
        "ID": recorded["entity_id"], "Event": recorded["event"],
        "Reason": _redacted(recorded["reason"], refs)})
    return {"Reports": shown, "Escalations": escalations, "Patterns": pattern_sheet,
            "Actions": action_sheet, "Audit trail": audit_sheet}


def _reports_sheet(reports: pd.DataFrame, rules: Rules, tz: ZoneInfo,
                   person_refs: bool) -> pd.DataFrame:
    out = {}
    for title, field in REPORT_COLUMNS.items():
        if field == "person_ref" and not person_refs:
            continue
        values = reports.get(field, pd.Series(None, index=reports.index, dtype=object))
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out[title] = local_times(values, tz)
        elif field == "pattern_ids":
            out[title] = values.map(", ".join)
        elif field in ("triaged_on", "closed_on"):
            out[title] = values.map(_day)
        elif field in rules.fields:
            out[title] = values.map(lambda v, f=field: display(rules, f, v))
        else:
            out[title] = values.map(lambda v: "" if v is None or v is pd.NaT else v)
    return pd.DataFrame(out, index=reports.index).reset_index(drop=True)


def _redacted(texts: pd.Series, refs: set[str]) -> pd.Series:
    """Texts with every person-served reference replaced (a same-person pattern's label,
    an audit reason quoting an answer)."""
    if not refs:
        return texts.reset_index(drop=True)
    pattern = re.compile("|".join(re.escape(r) for r in sorted(refs, key=len, reverse=True)))
    return texts.map(lambda t: pattern.sub(REDACTED, t) if isinstance(t, str) else t
                     ).reset_index(drop=True)


def _mask(flags: list[bool]) -> list[bool] | slice:
    """Rows to keep; an empty list would select no columns instead of no rows."""
    return flags if flags else slice(0, 0)


def _day(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else ""
