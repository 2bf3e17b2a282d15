"""Brute-force repeat detection: the semantics of transforms.repeats as plain loops.

Deliberately naive (one event at a time, windows re-counted from scratch, sets for
membership) so it can be read against the module docstring; the property test checks the
vectorised detect() against it. Only the `when` filter is shared (transforms.conditions).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from config.conditions import holds
from config.rules import Rules


@dataclass
class Episode:
    rule_id: str
    key: tuple[Any, ...]
    members: list[tuple[pd.Timestamp, Any]] = field(default_factory=list)
    continues: str | None = None


def natural(pattern_id: str) -> list[tuple[int, int, str]]:
    """"RP-9" before "RP-10"."""
    out = []
    for i, part in enumerate(re.split(r"(\d+)", pattern_id)):
        out.append((0, int(part), "") if i % 2 else (1, 0, part))
    return out


def missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return False
    return bool(pd.isna(value))


def key_values(value: Any) -> list[Any]:
    """The values a report has for one key field: a list's distinct elements or the scalar."""
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for v in value:
            if not missing(v) and v not in out:
                out.append(v)
        return out
    return [] if missing(value) else [value]


def utc(value: Any) -> pd.Timestamp | None:
    if value is None or (not isinstance(value, pd.Timestamp) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def reference(reports: pd.DataFrame, rules: Rules, prior: pd.DataFrame | None = None,
              closures: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """One dict per pattern: pattern_id (None if new), rule_id, key, members, status,
    closed_at, reopened_by."""
    priors: dict[str, dict[str, Any]] = {}
    if prior is not None:
        for row in prior.to_dict("records"):
            pid = row["pattern_id"]
            if pid is None or pd.isna(pid) or str(pid) in priors:
                continue
            priors[str(pid)] = {"rule_id": row["rule_id"], "key": tuple(row["key"]),
                                "members": list(row["members"])}
    closes: list[tuple[pd.Timestamp, str]] = []
    if closures is not None:
        for row in closures.to_dict("records"):
            at = utc(row["closed_at"])
            if at is not None and str(row["pattern_id"]) in priors:
                closes.append((at, str(row["pattern_id"])))
    closes = sorted(set(closes), key=lambda c: (c[0], natural(c[1])))
    last_close: dict[str, pd.Timestamp] = {}
    for at, pid in closes:
        last_close[pid] = max(at, last_close.get(pid, at))

    records = reports.to_dict("records")
    episodes: list[Episode] = []
    for rule in rules.repeats:
        window = pd.Timedelta(days=rule.window_days)
        ok = holds(reports, rule.when, rules).tolist()
        groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for row, passes in zip(records, ok, strict=True):
            at = utc(row["occurred_at"])
            if not passes or at is None:
                continue
            choices = [key_values(row.get(name)) for name in rule.key]
            for key in itertools.product(*choices):
                groups.setdefault(key, []).append((at, 0, row["report_id"]))
        for at, pid in closes:
            pat = priors[pid]
            if pat["rule_id"] == rule.id and len(pat["key"]) == len(rule.key):
                if any(missing(v) for v in pat["key"]):
                    continue
                groups.setdefault(tuple(pat["key"]), []).append((at, 1, pid))
        for key in sorted(groups, key=repr):
            events = sorted(groups[key], key=lambda e: (e[0], e[1],
                                                        natural(e[2]) if e[1] else e[2]))
            seen: list[tuple[pd.Timestamp, Any]] = []
            active: Episode | None = None
            last: pd.Timestamp | None = None
            for at, kind, ident in events:
                if last is not None and at - last > window:
                    active = None
                last = at
                if kind == 1:
                    if active is None:
                        active = Episode(rule.id, key, continues=ident)
                        episodes.append(active)
                    continue
                seen.append((at, ident))
                if active is not None:
                    active.members.append((at, ident))
                    continue
                recent = [(s, r) for s, r in seen if at - window <= s <= at]
                if len(recent) >= rule.threshold:
                    active = Episode(rule.id, key, members=list(recent))
                    episodes.append(active)
    episodes = [e for e in episodes if e.members]

    # identity: continuations keep the closed pattern's id; other episodes, in time order
    # per rule and key, take the oldest unused prior sharing a member
    ids: list[str | None] = [e.continues for e in episodes]
    used: set[str] = set()
    order = sorted(range(len(episodes)),
                   key=lambda i: (episodes[i].rule_id, repr(episodes[i].key),
                                  episodes[i].members[0][0]))
    for i in order:
        ep = episodes[i]
        if ep.continues is not None:
            continue
        ep_ids = {r for _, r in ep.members}
        free = [pid for pid, pat in priors.items()
                if pid not in used and pat["rule_id"] == ep.rule_id
                and tuple(pat["key"]) == ep.key and ep_ids & set(pat["members"])]
        if free:
            best = min(free, key=natural)
            used.add(best)
            ids[i] = best

    merged: dict[Any, list[Episode]] = {}
    for i, (ep, pid) in enumerate(zip(episodes, ids, strict=True)):
        merged.setdefault(pid if pid is not None else ("new", i), []).append(ep)
    out = []
    for name, eps in merged.items():
        pid = name if isinstance(name, str) else None
        members = sorted({m for ep in eps for m in ep.members})
        closed = last_close.get(pid) if pid is not None else None
        after = [r for at, r in members if closed is not None and at > closed]
        status = "open" if closed is None else "reopened" if after else "closed"
        out.append({"pattern_id": pid, "rule_id": eps[0].rule_id, "key": eps[0].key,
                    "members": [r for _, r in members], "status": status,
                    "closed_at": closed, "reopened_by": after})
    taken = {pid for pid in ids if pid is not None}
    for pid, pat in priors.items():
        if pid not in taken:
            out.append({"pattern_id": pid, "rule_id": pat["rule_id"], "key": pat["key"],
                        "members": pat["members"], "status": "dissolved",
                        "closed_at": last_close.get(pid), "reopened_by": []})
    return out


def synthetic_reports(n: int, seed: int = 0, years: float = 3.0) -> pd.DataFrame:
    """n plausible reports for timing detect(): minute times over `years`, 8 categories,
    60 services, n/25 people, 1-3 contributing factors each, ids not in time order."""
    rng = np.random.default_rng(seed)
    categories = ["medication", "transport", "mealtime", "escalation", "safeguarding",
                  "environment", "behaviour", "workflow"]
    factors = np.array(["handover", "staffing", "new_agency_staff", "communication",
                        "documentation", "time_pressure", "equipment", "training"], dtype=object)
    minutes = rng.integers(0, int(years * 365 * 24 * 60), n)
    picks = rng.integers(0, len(factors), (n, 3))
    sizes = rng.integers(1, 4, n)
    return pd.DataFrame({
        "report_id": [f"NM-{k:07d}" for k in rng.permutation(n)],
        "occurred_at": pd.Timestamp("2024-01-01", tz="UTC")
        + pd.to_timedelta(minutes, unit="min"),
        "category": pd.Series(np.array(categories)[rng.integers(0, 8, n)], dtype="str"),
        "service": pd.Series([f"Service {k:02d}" for k in rng.integers(0, 60, n)], dtype="str"),
        "person_ref": pd.Series([f"P-{k:05d}" for k in rng.integers(0, max(n // 25, 1), n)],
                                dtype="str"),
        "contributing_factors": [list(dict.fromkeys(row[:k]))
                                 for row, k in zip(factors[picks], sizes, strict=True)],
    })
