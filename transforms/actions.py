"""What the managers' entries in the tracker mean: closed reports, action tracking, and
when a pattern counts as closed (so that a recurrence can reopen it).

Managers type dates in whatever form their spreadsheet gives (`2026-11-20`, `20/11/2026`,
a date cell); a value that cannot be read is pointed out in the tracker, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from domain.ids import PATTERN_REFERENCE, REPORT_REFERENCE, pattern_id, report_id
from domain.times import localise, read_datetime
from transforms.tracker import ACTION_STATUS, JUST_CULTURE

DONE = {"done - awaiting verification", "verified effective"}
_STATUSES = {s.casefold(): s for s in ACTION_STATUS}
_UTC = ZoneInfo("UTC")


# "We reminded staff" is rarely a control on its own (DOMAIN: actions are controls).
REMINDER = re.compile(r"(?i)\b(remind(ed)?|reminder)\b")
CONTROL = re.compile(r"(?i)\b(checklist|audit|prompt|supervis|workflow|sign-?off|reconcil"
                     r"|rota|label|competenc|spot.check)\w*")


def parse_day(text: str | None, dayfirst: bool = True) -> date | None:
    """A manager-typed date, or None when blank or unreadable ("today" included: it would
    become the machine's clock)."""
    if not text or not str(text).strip():
        return None
    # Read on a clock without zone changes: only the calendar date is wanted.
    read = read_datetime(str(text), _UTC, "day-first" if dayfirst else "month-first")
    return None if read.value is None else read.value.date()


def end_of_day(day: date, tz: ZoneInfo) -> pd.Timestamp:
    """A date typed by a manager means the whole of that local day (whose midnight may fall
    in a clock change in some zones)."""
    midnight = localise(datetime.combine(day + timedelta(days=1), time()), tz).value
    return midnight - pd.Timedelta(microseconds=1)


def _frame(values: dict[str, dict[str, str]], columns: list[str], key: str) -> pd.DataFrame:
    """The `columns` of manager values by row key, "" where a row has none. Built column
    by column: `from_dict` of 100,000 rows took a third of a second."""
    rows = list(values.values())
    frame = pd.DataFrame({c: ["" if (v := row.get(c)) is None else v for row in rows]
                          for c in columns}, index=pd.Index(list(values), name=key),
                         dtype=object)
    return frame.astype(str)


def report_closure(manager: dict[str, dict[str, str]], report_ids: pd.Series,
                   dayfirst: bool = True) -> pd.DataFrame:
    """Per report: closed (bool), closed_on (date), suggested response, a check message, the
    triage date and the notification decision a manager recorded.

    A report counts as closed only with an outcome for the reporter or a documented reason
    for no further action: closing the loop is the point of closing.
    """
    cols = ["Triage status", "Triage date", "Just-culture classification",
            "Outcome for reporter", "No further action reason", "Closed on",
            "Notification decision"]
    m = _frame(manager, cols, "report_id").reindex(report_ids).fillna("")
    wants_close = m["Triage status"].str.casefold().eq("closed") | m["Closed on"].ne("")
    explained = m["Outcome for reporter"].ne("") | m["No further action reason"].ne("")
    closed_on = m["Closed on"].map(lambda t: parse_day(t, dayfirst))
    checks = pd.Series("", index=m.index)
    checks = checks.mask(wants_close & ~explained, "closed without an outcome or a no further "
                         "action reason: not treated as closed")
    bad_date = m["Closed on"].ne("") & closed_on.isna()
    checks = checks.mask(bad_date, "'Closed on' is not a date: not treated as closed")
    triaged_on = m["Triage date"].map(lambda t: parse_day(t, dayfirst))
    bad_triage = m["Triage date"].ne("") & triaged_on.isna()
    checks = checks.mask(bad_triage & checks.eq(""), "'Triage date' is not a date")
    suggestions = {k.casefold(): v for k, v in JUST_CULTURE.items()}
    classification = m["Just-culture classification"].str.casefold().map(suggestions)
    return pd.DataFrame({
        "report_id": report_ids.to_numpy(),
        "closed": (wants_close & explained & ~bad_date).to_numpy(),
        "closed_on": closed_on.to_numpy(),
        "outcome": m["Outcome for reporter"].to_numpy(),
        "nfa_reason": m["No further action reason"].to_numpy(),
        "suggested_response": classification.fillna("").to_numpy(),
        "check": checks.to_numpy(),
        "triaged_on": triaged_on.to_numpy(),  # for the time to triage
        "notification_decision": m["Notification decision"].to_numpy(),
    })


def linked_ids(text: str) -> tuple[list[str], list[str]]:
    """Report and pattern ids a manager named in "Linked to" ("NM-12, PT-3")."""
    reports = [report_id(int(n)) for n in REPORT_REFERENCE.findall(text or "")]
    patterns = [pattern_id(int(n)) for n in PATTERN_REFERENCE.findall(text or "")]
    return reports, patterns


def linked_members(manager: Mapping[str, Mapping[str, str]],
                   members: Iterable[tuple[str, Sequence[str]]], occurred: pd.Series
                   ) -> dict[str, tuple[list[str], list[pd.Timestamp]]]:
    """`action_state`'s `members`: of each pattern an action links to (the only ones it
    looks at), its member report ids and when each occurred. `members`: (pattern id,
    report ids) pairs; `occurred`: report id -> when (NaT for a report it lacks)."""
    linked = {pid for values in manager.values()
              for pid in linked_ids(values.get("Linked to", ""))[1]}
    return {pid: (list(ids), occurred.reindex(list(ids)).tolist())
            for pid, ids in members if pid in linked}


REOPENED_DUE_DAYS = 14  # a reopened action's new due date, counted from reopening


def action_state(manager: dict[str, dict[str, str]],
                 members: dict[str, tuple[list[str], list[pd.Timestamp]]], today: date,
                 tz: ZoneInfo, dayfirst: bool = True) -> pd.DataFrame:
    """Per action: parsed dates, overdue, reopened (when and why, and the due date that
    then applies), and the tracking note.

    `members` gives each pattern's member report ids and when they occurred
    (`linked_members`).

    "Not effective", or a new member of a linked pattern after the action was verified,
    reopens the action: it is treated as open until a manager verifies it again later.
    """
    cols = ["Linked to", "Action", "Owner", "Owner email", "Due", "Evidence required",
            "Verification method", "Verification due", "Status", "Verified on", "Outcome"]
    a = _frame(manager, cols, "action_id")
    rows = []
    for aid, r in a.iterrows():  # actions are typed by hand: tens, not thousands
        reports, pats = linked_ids(r["Linked to"])
        status, verified_on = _verification(r, dayfirst)
        due = parse_day(r["Due"], dayfirst)
        verify_due = parse_day(r["Verification due"], dayfirst)
        notes: list[str] = []
        reopened, reopened_on = "", None
        if status == "Not effective":
            reopened = "verification found it not effective"
            reopened_on = verified_on or today
        elif status == "Verified effective" and verified_on:
            cutoff = end_of_day(verified_on, tz)
            for pid in pats:
                ids, times = members.get(pid, ([], []))
                after = [(i, t) for i, t in zip(ids, times, strict=True) if t > cutoff]
                if after:
                    first, when = after[0]
                    reopened_on = when.tz_convert(tz).date()
                    reopened = (f"{first} joined {pid} on {reopened_on:%Y-%m-%d}, "
                                f"after verification on {verified_on:%Y-%m-%d}")
                    break
        done = status.casefold() in DONE and not reopened
        # A reopened action is due again REOPENED_DUE_DAYS after it reopened, unless a
        # manager set a later due date: the old one would make it overdue at once.
        due_now = due
        if reopened_on is not None and not (due and due > reopened_on):
            due_now = reopened_on + timedelta(days=REOPENED_DUE_DAYS)
        overdue = bool(due_now and due_now < today and not done)
        verification_overdue = bool(status == "Done - awaiting verification" and verify_due
                                    and verify_due < today)
        if reopened:
            notes.append(f"reopened: {reopened}")
        if r["Status"] and r["Status"] not in ACTION_STATUS and status not in ACTION_STATUS:
            notes.append(f"unknown status {r['Status']!r}")
        if r["Due"] and not due:
            notes.append("'Due' is not a date")
        if status == "Verified effective" and not verified_on:
            notes.append("add 'Verified on' so a recurrence can be detected")
        if not r["Action"]:
            notes.append("no action described")
        elif REMINDER.search(r["Action"]) and not CONTROL.search(r["Action"]):
            notes.append("a reminder alone is rarely a control: add a check, prompt or workflow "
                         "change")
        if overdue:
            notes.append(f"overdue since {due_now:%Y-%m-%d}")
        if verification_overdue:
            notes.append(f"verification overdue since {verify_due:%Y-%m-%d}")
        rows.append({
            "action_id": aid, "reports": reports, "patterns": pats, "action": r["Action"],
            "owner": r["Owner"], "owner_email": r["Owner email"].strip(), "due": due,
            "evidence": r["Evidence required"], "status": status, "verified_on": verified_on,
            "outcome": r["Outcome"], "linked": r["Linked to"], "reopened": reopened,
            "reopened_on": reopened_on, "due_now": due_now,
            "done": done, "overdue": overdue, "verification_overdue": verification_overdue,
            "tracking": "; ".join(notes),
        })
    return pd.DataFrame(rows, columns=[
        "action_id", "reports", "patterns", "action", "owner", "owner_email", "due", "evidence",
        "status", "verified_on", "outcome", "linked", "reopened", "reopened_on", "due_now",
        "done", "overdue", "verification_overdue", "tracking"])


def _verification(values: Mapping[str, str], dayfirst: bool) -> tuple[str, date | None]:
    """An action's status as the tracker names it (typed in any case) and its "Verified on"."""
    status = values.get("Status") or ""
    return (_STATUSES.get(status.casefold(), status),
            parse_day(values.get("Verified on") or "", dayfirst))


def pattern_closures(manager: dict[str, dict[str, str]],
                     actions: dict[str, dict[str, str]], tz: ZoneInfo, dayfirst: bool = True
                     ) -> pd.DataFrame:
    """When each pattern was last closed: its review closed, or an action on it verified.
    `manager` and `actions` are the values managers typed into Patterns and Actions: what
    closes a pattern never depends on the patterns found, so it is known before repeats."""
    closed: dict[str, pd.Timestamp] = {}
    for pid, values in manager.items():
        if values.get("Review status", "").casefold() == "closed":
            day = parse_day(values.get("Closed on", ""), dayfirst)
            if day:
                closed[pid] = max(closed.get(pid, pd.Timestamp.min.tz_localize("UTC")),
                                  end_of_day(day, tz))
    for values in actions.values():
        status, verified_on = _verification(values, dayfirst)
        if status == "Verified effective" and verified_on:
            at = end_of_day(verified_on, tz)
            for pid in linked_ids(values.get("Linked to") or "")[1]:
                closed[pid] = max(closed.get(pid, at), at)
    return pd.DataFrame({"pattern_id": list(closed), "closed_at": list(closed.values())},
                        columns=["pattern_id", "closed_at"])
