"""Which emails the loop owes: acknowledgements, requests for missing items, outcomes,
overdue-action reminders, the monthly team learning brief, and alerts to named roles.

Each owed email has an idempotency key (kind + entity, plus whatever makes a repeat
legitimate: the missing items asked for, the closing date, the reminder's day), so the
outbox holds it once however many runs compute it. Messages to reporters carry no
person-served reference of anyone, in any spelling, wherever in the message it would stand
(a manager's outcome text, an action, a service name, a "same person" pattern's label):
their whole context is redacted against every reference known. Alerts to named leads and
reminders to action owners may name the person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from itertools import compress
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.rules import Rules
from domain.address import valid_address
from domain.references import ReferenceRedactor
from transforms.normalize import display, local_time


@dataclass(frozen=True)
class Owed:
    key: str
    kind: str  # template name
    entity_id: str  # report, action, pattern or team the message is about
    recipients: list[str]
    context: dict[str, Any]
    fields: tuple[str, ...] = ()  # a request for missing items: the fields it asks for


def _digest(items: list[str]) -> str:
    return hashlib.sha256("|".join(sorted(items)).encode()).hexdigest()[:10]


# Kinds a reporter or a team receives: no person-served reference may reach them.
REPORTER_KINDS = frozenset({"acknowledgement", "missing_info", "outcome", "learning_brief"})
ALERT_KINDS = ("alert_pathway", "alert_notification", "alert_pattern")


def known_references(reports: pd.DataFrame, rules: Rules, patterns: pd.DataFrame | None = None,
                     extra: Iterable[Any] = ()) -> set[str]:
    """Every person-served reference known: the reports', the keys of patterns whose rule
    groups by person (an earlier run's pattern may name a report no longer in view), and
    `extra` (held reports')."""
    refs = {r for r in reports.get("person_ref", pd.Series(dtype=object)) if isinstance(r, str)}
    refs.update(r for r in extra if isinstance(r, str))
    if patterns is not None and not patterns.empty and {"rule_id", "key"} <= set(patterns):
        person_at = {rule.id: [i for i, f in enumerate(rule.key) if f == "person_ref"]
                     for rule in rules.repeats}
        for rule_id, key in zip(patterns["rule_id"], patterns["key"], strict=True):
            for i in person_at.get(rule_id, []):
                if isinstance(key, list | tuple) and i < len(key) and isinstance(key[i], str):
                    refs.add(key[i])
    return refs


def report_context(row: pd.Series, rules: Rules, tz: ZoneInfo) -> dict[str, Any]:
    """What templates may say about a report. No person reference, no reporter details."""
    return {
        "id": row["report_id"],
        "category": display(rules, "category", row.get("category")) or "uncategorised",
        "service": row.get("service") if isinstance(row.get("service"), str) else "",
        "setting": display(rules, "setting", row.get("setting")),
        "submitted": local_time(row["submitted_at"], tz),
        "occurred": local_time(row.get("occurred_at"), tz),
        "occurred_date": local_time(row.get("occurred_at"), tz, "%d %B %Y")
        or local_time(row["submitted_at"], tz, "%d %B %Y"),
        "potential_harm": display(rules, "potential_harm", row.get("potential_harm")),
        "pathway": row.get("pathway_label", ""),
        "priority": row.get("priority", ""),
        "triage_due": local_time(row.get("triage_due"), tz, "%a %d %b %H:%M"),
        "rule": row.get("rule_id", ""),
        "notification_reasons": row.get("notification_reasons", ""),
    }


def _staff_context(row: pd.Series, rules: Rules, tz: ZoneInfo) -> dict[str, Any]:
    """Alerts go to named leads inside the provider: they may see what happened."""
    ctx = report_context(row, rules, tz)
    ctx["description"] = row.get("description") if isinstance(row.get("description"), str) \
        else ""
    ctx["immediate_action"] = row.get("immediate_action") if isinstance(
        row.get("immediate_action"), str) else ""
    return ctx


def owed_messages(
    reports: pd.DataFrame,
    rules: Rules,
    *,
    roles: dict[str, list[str]],
    queued: set[str],
    now: pd.Timestamp,
    tz: ZoneInfo,
    recent_days: float,
    actions: pd.DataFrame | None = None,
    patterns: pd.DataFrame | None = None,
    briefs: list[dict[str, Any]] | None = None,
    reference_questions: dict[str, str | None] | None = None,
    person_refs: Iterable[Any] = (),
    released: Iterable[str] = (),
    reply: bool = False,
) -> list[Owed]:
    """Every message owed now whose key is not already queued.

    `reports` joins the normalised reports with their check, triage, closure (closed,
    closed_on, outcome, nfa_reason) and pattern columns.
    Reports submitted more than `recent_days` ago get no acknowledgement, request or alert,
    and patterns whose latest report occurred that long ago no alert: connecting a form
    with a long history must not email everyone about old reports.
    `reference_questions`: per source, the title of the question a follow-up quotes a
    report's id in (None: the form has none, and the request says what else to do).
    `reply`: replies to the loop's emails reach a person. `person_refs`: references of
    reports not in `reports` (held ones), kept out of
    reporters' messages like the rest. `released`: reports whose held requests a person
    released: they are owed whatever their age.
    """
    owed: list[Owed] = []
    recent = reports["submitted_at"] >= now - pd.Timedelta(days=recent_days)
    redactor: list[ReferenceRedactor] = []  # built once, and only if a reporter is owed

    def redacted(kind: str, context: dict[str, Any]) -> dict[str, Any]:
        if kind not in REPORTER_KINDS:
            return context
        if not redactor:
            redactor.append(ReferenceRedactor(
                known_references(reports, rules, patterns, person_refs)))
        return redactor[0].redact_all(context)

    def add(key: str, kind: str, entity: str, to: list[str],
            ctx: Callable[[], dict[str, Any]], fields: tuple[str, ...] = ()) -> None:
        """Owe a message unless its key is queued; the context is built only if owed, as
        most of what a run computes was queued by an earlier run."""
        to = sorted({a.strip().lower() for a in to if valid_address(a)})
        if key not in queued and to:
            owed.append(Owed(key, kind, entity, to, redacted(kind, ctx()), fields))

    def role_addresses(names: list[str]) -> list[str]:
        return [a for n in names for a in roles.get(n, [])]

    def wanted(missing: Any, invalid: Any) -> list[str]:
        return list(missing or []) + list(invalid or [])

    # Rows are looked at whole (a Series each, which is slow) only where a key may be owed:
    # over a long history, nearly every message was queued by an earlier run.
    released_mask = reports["report_id"].isin(set(released))
    mailable = reports[(recent | released_mask) & reports["reporter_email"].map(valid_address)]
    mailable = mailable[np.array([
        (is_recent and f"ack:{rid}" not in queued) or (
            bool(asked := wanted(missing, invalid))
            and f"missing:{rid}:{_digest(asked)}" not in queued)
        for rid, is_recent, missing, invalid in zip(
            mailable["report_id"], recent[mailable.index], _column(mailable, "missing"),
            _column(mailable, "invalid"), strict=True)], dtype=bool)]
    for (_, row), is_recent in zip(mailable.iterrows(), recent[mailable.index], strict=True):
        rid = row["report_id"]
        if is_recent:
            add(f"ack:{rid}", "acknowledgement", rid, [row["reporter_email"]],
                lambda row=row: {"report": report_context(row, rules, tz)})
        if asked := wanted(row.get("missing"), row.get("invalid")):
            add(f"missing:{rid}:{_digest(asked)}", "missing_info", rid,
                [row["reporter_email"]], lambda row=row, asked=asked: {
                    "report": report_context(row, rules, tz),
                    "missing": [rules.label(f) for f in asked if rules.knows(f)],
                    "reference_question": (reference_questions or {}).get(row.get("source")),
                    "reply": reply}, tuple(asked))

    alerting = np.array([bool(roles) or bool(risk) for roles, risk in zip(
        _column(reports, "alert_roles"), _column(reports, "notification_risk"), strict=True)],
        dtype=bool)
    for _, row in reports[recent & alerting].iterrows():
        rid = row["report_id"]
        if row.get("alert_roles"):
            add(f"alert:{rid}:{row['pathway']}", "alert_pathway", rid,
                role_addresses(row["alert_roles"]),
                lambda row=row: {"report": _staff_context(row, rules, tz)})
        if row.get("notification_risk"):
            add(f"notify:{rid}", "alert_notification", rid,
                role_addresses(rules.notification_alert),
                lambda row=row: {"report": _staff_context(row, rules, tz)})

    if "closed" in reports:
        closed = reports[reports["closed"] & reports["reporter_email"].map(valid_address)]
        def outcome(row: pd.Series) -> dict[str, Any]:
            linked = [] if actions is None or actions.empty else [
                {"action": a["action"], "status": a["status"], "outcome": a["outcome"]}
                for _, a in actions.iterrows() if row["report_id"] in a["reports"]
                or set(a["patterns"]) & set(row.get("pattern_ids") or [])]
            return {"report": report_context(row, rules, tz), "outcome": row["outcome"],
                    "nfa_reason": row["nfa_reason"], "actions": linked}

        keys = [f"outcome:{rid}:{day.isoformat() if day else 'closed'}"
                for rid, day in zip(closed["report_id"], closed["closed_on"], strict=True)]
        owes = np.array([key not in queued for key in keys], dtype=bool)
        for key, (_, row) in zip(compress(keys, owes), closed[owes].iterrows(), strict=True):
            add(key, "outcome", row["report_id"], [row["reporter_email"]],
                lambda row=row: outcome(row))

    today = now.tz_convert(tz).date()
    if actions is not None and not actions.empty:
        for _, a in actions[actions["overdue"] | actions["verification_overdue"]].iterrows():
            days = (today - a["due_now"]).days if a["overdue"] else 0
            reopened = bool(a["reopened"])
            add(f"reminder:{a['action_id']}:{today.isoformat()}", "reminder", a["action_id"],
                [a["owner_email"]], lambda a=a, days=days, reopened=reopened: {"action": {
                    "id": a["action_id"], "action": a["action"], "owner": a["owner"],
                    "due": _day(a["due"]), "linked": a["linked"], "evidence": a["evidence"],
                    # The state as it is now: a reopened action is not "Verified effective".
                    "status": "Reopened" if reopened else a["status"],
                    "days_overdue": days, "reopened": a["reopened"],
                    "reopened_on": _day(a["reopened_on"]) if reopened else "",
                    "due_again": _day(a["due_now"]) if reopened else ""}})

    if patterns is not None and not patterns.empty:
        # Rules may overlap: the same reports matching two similarity keys is one review for
        # a manager, so it is one alert naming every pattern.
        # A pattern whose latest report is older than `recent_days` is history, not news:
        # connecting a form with a long history opens hundreds of them at once.
        events = patterns[patterns["event"].isin(["opened", "reopened"])
                          & (pd.to_datetime(patterns["last_at"], utc=True)
                             >= now - pd.Timedelta(days=recent_days))]
        groups = events.groupby([events["event"], events["members"].map(tuple)], sort=False)
        for _, group in groups:
            p = group.iloc[0]
            rule = next(r for r in rules.repeats if r.id == p["rule_id"])
            suffix = "" if p["event"] == "opened" else f":{p['closed_at']:%Y-%m-%d}"
            ids = "+".join(group["pattern_id"])
            add(f"pattern:{ids}:{p['event']}{suffix}", "alert_pattern", p["pattern_id"],
                [a for r in rules.repeats if r.id in set(group["rule_id"])
                 for a in role_addresses(r.alert)], lambda p=p, rule=rule, group=group: {
                    "pattern": {
                    "id": p["pattern_id"], "event": p["event"], "label": p["key_label"],
                    "rule": rule.label, "window_days": f"{rule.window_days:g}",
                    "count": p["count"], "members": p["members"], "reason": p["reason"] or "",
                    "first": local_time(p["first_at"], tz), "last": local_time(p["last_at"], tz),
                    "also": [f"{o['pattern_id']} ({o['key_label']})"
                             for _, o in group.iloc[1:].iterrows()],
                    }})

    for brief in briefs or []:
        owed.extend(Owed(o.key, o.kind, o.entity_id, o.recipients, redacted(o.kind, o.context))
                    for o in _learning_brief(brief, reports, actions, patterns, rules, today,
                                             tz, queued))
    return owed


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column's values as a list; Nones when the frame has no such column."""
    return frame[name].tolist() if name in frame else [None] * len(frame)


def _within(value: Any, tz: ZoneInfo) -> date:
    """The local day of a pattern's first or last report (far past when unknown)."""
    return date.min if value is None or pd.isna(value) else pd.Timestamp(value).tz_convert(
        tz).date()


def _day(value: date | None) -> str:
    return value.strftime("%d %B %Y") if value else ""


# More new responses than this in one run is a form's history coming in, not a busy day.
HISTORY_RUN = 30


def digest_alerts(owed: list[Owed], above: int, new_responses: int = 0
                  ) -> tuple[list[Owed], dict[str, str]]:
    """A recipient owed more than `above` alerts in one run gets them as one digest (a form
    just connected, or a busy day, must not bury a lead in separate emails); in a run that
    brings in a form's history (over HISTORY_RUN new responses) any second alert is old
    news and joins the digest. Alerts keep their other recipients. Returns what to queue,
    and each digested alert's key -> the key of the digest that carried it (so no later
    run owes it again)."""
    if new_responses > HISTORY_RUN:
        above = 1
    per: dict[str, list[Owed]] = {}
    for o in owed:
        if o.kind in ALERT_KINDS:
            for address in o.recipients:
                per.setdefault(address, []).append(o)
    digested = {a for a, alerts in per.items() if len(alerts) > above}
    if not digested:
        return owed, {}
    out: list[Owed] = []
    for o in owed:
        if o.kind in ALERT_KINDS and digested & set(o.recipients):
            direct = [a for a in o.recipients if a not in digested]
            if direct:
                out.append(replace(o, recipients=direct))
        else:
            out.append(o)
    covered: dict[str, str] = {}
    for address in sorted(digested):
        alerts = per[address]
        key = f"digest:{address}:{_digest([o.key for o in alerts])}"
        out.append(Owed(key, "alert_digest", "digest", [address],
                        {"alerts": [{"kind": o.kind, **o.context} for o in alerts]}))
        covered.update((o.key, key) for o in alerts)
    return out, covered


def hold_mass_requests(owed: list[Owed], new_responses: int, *, above: int, share: float,
                       at_least: int, released: Iterable[str] = ()
                       ) -> tuple[list[Owed], dict[str, list[Owed]]]:
    """Split off the requests for missing items that look like a mapping problem: more than
    `above` reporters asked for the same field in one run, or more than `share` of the
    run's new responses once at least `at_least` are. Returns what may be queued and the
    held requests by field. Requests a person `released` (their keys) are never held."""
    free = set(released)
    by_field: dict[str, list[Owed]] = {}
    for o in owed:
        if o.kind == "missing_info" and o.key not in free:
            for f in o.fields:
                by_field.setdefault(f, []).append(o)
    mass = {f: asked for f, asked in by_field.items()
            if len(asked) > above or (len(asked) >= at_least
                                      and len(asked) > share * new_responses)}
    held = {o.key for asked in mass.values() for o in asked}
    return [o for o in owed if o.key not in held], mass


def _learning_brief(brief: dict[str, Any], reports: pd.DataFrame, actions: pd.DataFrame | None,
                    patterns: pd.DataFrame | None, rules: Rules, today: date, tz: ZoneInfo,
                    queued: set[str]) -> list[Owed]:
    """Last month's "you said, we did" for one team: the way anonymous reporters hear back."""
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - pd.Timedelta(days=1)
    month_start = last_month_end.replace(day=1)
    key = f"brief:{month_start:%Y-%m}:{brief['team']}"
    to = [a for a in brief["to"] if valid_address(a)]
    if key in queued or not to:
        return []
    services = set(brief.get("services") or [])
    local_day = reports["submitted_at"].dt.tz_convert(tz).dt.date
    in_month = reports[(local_day >= month_start) & (local_day <= last_month_end)]
    if services:
        in_month = in_month[in_month["service"].isin(services)]
    # A value the checks refused ("laundry mix-up" typed as a category) is not a category.
    known = rules.choices("category")
    counts = in_month["category"].map(lambda c: known.get(c, "not recorded")).value_counts()
    changes = []
    if actions is not None and not actions.empty:
        team_reports = set(reports["report_id"] if not services else
                           reports.loc[reports["service"].isin(services), "report_id"])
        for _, a in actions.iterrows():
            done_in_month = a["verified_on"] and month_start <= a["verified_on"] <= last_month_end
            linked_to_team = not services or set(a["reports"]) & team_reports or a["patterns"]
            if a["status"] == "Verified effective" and done_in_month and linked_to_team:
                changes.append({"action": a["action"], "outcome": a["outcome"]})
    # Only the month's patterns: open now, with a report in the month, and not one that
    # began after it (a September brief sent in October must not list October's).
    active = [] if patterns is None or patterns.empty else [
        {"label": p["key_label"], "count": p["count"], "status": p["status"]}
        for _, p in patterns[patterns["status"].isin(["open", "reopened", "under review"])]
        .iterrows() if (not services or set(p["key"]) & services)
        and _within(p["first_at"], tz) <= last_month_end
        and _within(p["last_at"], tz) >= month_start]
    return [Owed(key, "learning_brief", brief["team"], sorted(to), {
        "team": brief["team"], "month": f"{month_start:%B %Y}", "received": len(in_month),
        "by_category": [{"category": c, "count": int(n)} for c, n in counts.items()],
        "changes": changes, "patterns": active,
    })]


# -- what the tracker's Loop column says ---------------------------------------------------


def loop_status(view: pd.DataFrame, outbox: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    """Per report (the view's index): `loop` (what its reporter has been sent, or why not),
    `info_requested` (the local day details were last asked for), `contactable` and
    `undelivered` (emails to the reporter that could not be delivered, and why)."""
    sent = outbox[outbox["sent_at"].notna()]
    kinds: dict[str, frozenset[str]] = {}
    for rid, kind in zip(sent["entity_id"].tolist(), sent["kind"].tolist(), strict=True):
        kinds[rid] = kinds.get(rid, frozenset()) | {kind}
    requested = sent[sent["kind"] == "missing_info"].groupby("entity_id")["sent_at"].max()
    undelivered = _undelivered(outbox)
    ids = view["report_id"].tolist()  # plain lists: a long history has 100,000 reports
    asked = {rid: local_time(pd.Timestamp(t), tz, "%Y-%m-%d")
             for rid, t in requested.items() if isinstance(t, str)}
    texts: dict[tuple[frozenset[str], bool, str], str] = {}  # a handful, over every report

    def loop(rid: str, anonymous: bool) -> str:
        key = (kinds.get(rid, frozenset()), anonymous, undelivered.get(rid, ""))
        if key not in texts:
            texts[key] = _loop_text(*key)
        return texts[key]

    return pd.DataFrame({
        "loop": [loop(rid, anon) for rid, anon in zip(ids, view["anonymous"].tolist(),
                                                       strict=True)],
        "info_requested": pd.Series([asked.get(rid, "") for rid in ids], index=view.index,
                                    dtype="str"),
        "contactable": view["reporter_email"].map(valid_address),
        "undelivered": pd.Series([undelivered.get(rid, "") for rid in ids], index=view.index,
                                 dtype="str"),
    }, index=view.index)


def _undelivered(outbox: pd.DataFrame) -> dict[str, str]:
    """Per report, the emails to its reporter that could not be delivered, and why."""
    failed = outbox[outbox["sent_at"].isna() & outbox["last_error"].notna()
                    & outbox["kind"].isin(list(REPORTER_KINDS))]
    return {rid: "; ".join(
        f"{kind.replace('_', ' ')} {'refused' if gone else 'retrying'} ({error})"
        for kind, error, gone in zip(rows["kind"], rows["last_error"], rows["given_up"],
                                     strict=True)) for rid, rows in failed.groupby("entity_id")}


def _loop_text(kinds: frozenset[str], anonymous: bool, undelivered: str = "") -> str:
    done = [label for kind, label in (("acknowledgement", "acknowledged"),
                                      ("missing_info", "details requested"),
                                      ("outcome", "outcome sent")) if kind in kinds]
    if undelivered:
        done.append(f"not delivered: {undelivered}")
    if anonymous and not done:
        return "anonymous: hears back in the team brief"
    return ", ".join(done)
