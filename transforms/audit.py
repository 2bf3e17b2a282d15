"""What changed since the last run, as audit events: so an inspector can replay why each
report went where it went. Decisions are recomputed every run; only changes are logged.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from config.rules import Rules
from domain.records import AuditEvent
from transforms.normalize import local_time
from transforms.tracker import ManagerChange

ENTITY_OF_SHEET = {"Reports": "report", "Patterns": "pattern", "Actions": "action",
                   "Data quality": "report"}


def _state(row: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "version": int(row["version"]),
        "dq_status": row["dq_status"],
        "missing": list(row["missing"]),
        "invalid": list(row["invalid"]),
        "rule_id": row["rule_id"],
        "pathway": row["pathway"],
        "priority": row["priority"],
        "triage_due": local_time(row["triage_due"], tz),
        "notification_risk": bool(row["notification_risk"]),
        "problems": list(row["problems"]),
    }


def decision_events(view: pd.DataFrame, previous: dict[str, dict[str, Any]], rules: Rules,
                    tz: ZoneInfo, now: pd.Timestamp,
                    ) -> tuple[list[AuditEvent], dict[str, dict[str, Any]]]:
    """Events for new reports, new versions, check results, rules fired and risk flags.

    `view` holds one row per report with version, source, response_id, the check columns
    (dq_status, missing, invalid, dq_messages) and the triage columns.
    """
    events: list[AuditEvent] = []
    state: dict[str, dict[str, Any]] = {}
    cols = ["report_id", "version", "source", "response_id", "dq_status", "missing", "invalid",
            "dq_messages", "rule_id", "pathway", "pathway_label", "priority", "triage_due",
            "notification_risk", "notification_reasons", "problems"]
    for row in view[cols].to_dict("records"):
        rid = row["report_id"]
        now_state = _state(row, tz)
        before = previous.get(rid)
        # When an incomplete report was completed: shown in the Data quality sheet.
        now_state["completed_at"] = (before or {}).get("completed_at")
        if before is not None and before["dq_status"] == "incomplete" \
                and now_state["dq_status"] == "complete":
            now_state["completed_at"] = local_time(now, tz)
        elif now_state["dq_status"] == "incomplete":
            now_state["completed_at"] = None
        state[rid] = now_state
        if before == now_state:
            continue

        def log(event: str, reason: str, rid: str = rid, **details: Any) -> None:
            events.append(AuditEvent("report", rid, event, reason, details or None))

        if before is None:
            log("received", f"version {row['version']} from {row['source']} "
                f"(response {row['response_id']})")
        elif now_state["version"] != before["version"]:
            log("new version", f"version {now_state['version']} (was {before['version']})")
        # A state stored before problems were remembered counts as having had them logged.
        seen = set((before or {}).get("problems", [] if before is None else row["problems"]))
        for problem in row["problems"]:
            if problem not in seen:
                log("problem", problem)
        was_complete = before is not None and before["dq_status"] == "complete"
        if now_state["dq_status"] == "incomplete":
            if before is None or (before["missing"], before["invalid"]) != (
                    now_state["missing"], now_state["invalid"]):
                log("check failed", "; ".join(row["dq_messages"]),
                    missing=now_state["missing"], invalid=now_state["invalid"])
        elif before is not None and not was_complete:
            supplied = [rules.label(f) for f in before["missing"] + before["invalid"]
                        if rules.knows(f)]
            log("completed", f"now complete: {', '.join(supplied)} supplied" if supplied
                else "now complete")
        if before is None or (before["rule_id"], before["pathway"], before["priority"],
                              before["triage_due"]) != (now_state["rule_id"],
                                                        now_state["pathway"],
                                                        now_state["priority"],
                                                        now_state["triage_due"]):
            log("rule fired", f"rule {row['rule_id']}: {row['pathway_label']}, "
                f"{row['priority']}, triage due {now_state['triage_due']}",
                rule=row["rule_id"], pathway=row["pathway"])
        if now_state["notification_risk"] and not (before or {}).get("notification_risk"):
            log("notification risk", f"flagged for a Registered Manager decision: "
                f"{row['notification_reasons']}")
    return events, state


def pattern_events(patterns: pd.DataFrame, previous: dict[str, dict[str, Any]], tz: ZoneInfo,
                   ) -> tuple[list[AuditEvent], pd.Series, dict[str, dict[str, Any]]]:
    """Opened / grown / reopened / closed / dissolved, per pattern and per member report.

    Returns the events, the event of this run per pattern row ("opened", "reopened" or
    ""), and the state to remember.
    """
    events: list[AuditEvent] = []
    run_event: list[str] = []
    state: dict[str, dict[str, Any]] = {}
    for p in patterns.to_dict("records"):
        pid = p["pattern_id"]
        closed_at = None if pd.isna(p["closed_at"]) else local_time(p["closed_at"], tz)
        now = {"members": list(p["members"]), "status": p["status"], "closed_at": closed_at}
        state[pid] = now
        before = previous.get(pid)
        label = f"{p['key_label']} ({p['rule_id']})"
        happened = ""
        if before is None:
            if p["status"] != "dissolved":
                happened = "opened"
                events.append(AuditEvent("pattern", pid, "opened",
                                         f"{p['count']} similar reports: {label}",
                                         {"members": now["members"]}))
                events += [AuditEvent("report", m, "joined pattern", f"{pid}: {label}")
                           for m in now["members"]]
        else:
            known = set(before["members"])  # a long pattern has thousands of members
            added = [m for m in now["members"] if m not in known]
            if added and p["status"] != "dissolved":
                events.append(AuditEvent("pattern", pid, "grown",
                                         f"{', '.join(added)} joined: now {p['count']} reports"))
                events += [AuditEvent("report", m, "joined pattern", f"{pid}: {label}")
                           for m in added]
            reopened = p["status"] == "reopened" and (
                before["status"] != "reopened" or before["closed_at"] != closed_at)
            if reopened:
                happened = "reopened"
                events.append(AuditEvent("pattern", pid, "reopened", p["reason"] or "recurred"))
            elif p["status"] != before["status"]:
                events.append(AuditEvent("pattern", pid, p["status"],
                                         f"status {before['status']} -> {p['status']}"))
        run_event.append(happened)
    return events, pd.Series(run_event, index=patterns.index, dtype=object), state


def manager_events(changes: list[ManagerChange]) -> list[AuditEvent]:
    return [AuditEvent(ENTITY_OF_SHEET.get(c.sheet, "tracker"), c.key, "manager change",
                       f"{c.sheet} '{c.column}': {c.old!r} -> {c.new!r}",
                       {"sheet": c.sheet, "column": c.column, "old": c.old, "new": c.new})
            for c in changes]


def question_events(source: str, before: dict[str, str], questions: dict[str, str]
                    ) -> list[AuditEvent]:
    """Questions added, renamed or removed since the last run, named once in the audit log."""
    if not before or not questions or questions == before:
        return []
    events = []
    for qid, title in questions.items():
        if qid not in before:
            events.append(AuditEvent("source", source, "question added", repr(title)))
        elif before[qid] != title:
            events.append(AuditEvent("source", source, "question renamed",
                                     f"{before[qid]!r} -> {title!r}"))
    return events + [AuditEvent("source", source, "question removed", repr(title))
                     for qid, title in before.items() if qid not in questions]


def move_events(moves: list[tuple[str, str, str, str]],
                 closed_on: dict[str, dict[str, date | None]], days: int | None
                 ) -> list[AuditEvent]:
    """Why each row moved: closed long enough ago, or no longer closed."""
    events = []
    for sheet, key, source, target in moves:
        if target == sheet:
            events.append(AuditEvent(ENTITY_OF_SHEET[sheet], key, "row unarchived",
                                     f"moved from {source} back to {target}: no longer "
                                     "closed", {"from": source, "to": target}))
            continue
        when = closed_on[sheet].get(key)
        why = f"closed on {when:%Y-%m-%d}" if when else "closed"
        if days:
            why += f", more than {days} days ago"
        events.append(AuditEvent(ENTITY_OF_SHEET[sheet], key, "row archived",
                                 f"moved from {source} to {target}: {why}",
                                 {"from": source, "to": target}))
    return events
