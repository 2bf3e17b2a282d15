"""Repeat detection: N similar near misses within D days open a manager review of the pattern.

"Repetition matters more than outcome", so every repeat rule (threshold N, window
D = `window_days`, similarity key K, filter `when`) is applied to the whole report history
on each run and the result is reconciled with the patterns known from earlier runs.

* Eligible reports: `when` holds, `occurred_at` is set and every key field has a value
  (blank text counts as missing). A list-valued key field (multi-select) puts the report in
  one group per distinct element; an empty list is not eligible. Times are instants: any
  zone gives the result of its UTC conversion (naive times are read as UTC).
* A group's events are its reports in (occurred_at, report_id) order plus its closures; a
  closure sorts after reports of the same instant, so a report at closed_at is "before" it.
  Events more than D apart end a chain. "Within D" is inclusive everywhere.
* A pattern opens at the first report of a chain at which the group's reports in [t - D, t]
  reach N; those are its first members and every later report of the chain joins it.
* A closure (pattern_id, closed_at) of a prior pattern is an event of that pattern's group:
  it keeps the chain alive for D days, and when no pattern is open in the chain at that
  moment the later reports of the chain join the closed pattern rather than start a new
  one - a recurrence soon after a review was closed belongs to that review. A pattern with a
  member strictly after its latest closed_at is "reopened" (reopened_by, reason), one with a
  closure and none after it "closed", others "open". Closures of patterns not in `prior`
  cannot be placed and are ignored.
* Identity across runs: a chain's pattern takes the id of the oldest (ids compared with
  their digits as numbers) prior pattern of the same rule and key that shares a member and
  that no earlier chain of the group took. A continuation after a closure takes the closed
  pattern's id, merging with the chain of that id if there is one. Otherwise pattern_id is NA
  and `fingerprint` (rule + key + first member) names it until the caller allocates an id
  (`assign_ids`). Prior patterns nothing took come back "dissolved" with their old members,
  so a correction that breaks a pattern is visible instead of the review silently vanishing.

Output: `patterns` (one row per pattern, dissolved included; times UTC, members in time
order) and `links` (report_id -> pattern_id / fingerprint, current members only; a report
may sit in several patterns). Reasons date events in `tz` (UTC by default).

Pure: no I/O and no clock. Vectorised per rule: one sort by (group, time), chains from
time gaps, window counts from one searchsorted on a (group, time rank) key; Python loops
run only per pattern, never per report.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.conditions import holds
from config.rules import RepeatRule, Rules
from transforms.normalize import display

PATTERN_COLUMNS = ["pattern_id", "fingerprint", "rule_id", "rule_label", "key", "key_label",
                   "members", "count", "first_at", "last_at", "status", "closed_at",
                   "reopened_by", "reason"]
LINK_COLUMNS = ["report_id", "pattern_id", "fingerprint", "rule_id"]
_NO = np.iinfo(np.int64).max  # "no such event" in per-chain index arrays
_DIGITS = re.compile(r"(\d+)")
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class RepeatResult:
    """Patterns (one row each, dissolved ones included) and report -> pattern links."""

    patterns: pd.DataFrame
    links: pd.DataFrame


@dataclass(frozen=True)
class _Prior:
    pattern_id: str
    rule_id: str
    key: tuple[Any, ...]
    members: tuple[Any, ...]


@dataclass
class _Chain:
    """One chain of a group that has members: a new episode or a closure's continuation."""

    rule: int
    key: tuple[Any, ...]
    links: np.ndarray  # positions (rows of `reports`) of members, in (time, report_id) order
    times: np.ndarray  # their occurred_at, int64 ns UTC
    opened_ns: int | None  # when the threshold was reached; None for a continuation
    continues: str | None  # pattern_id of the closure this chain continues


def id_order(pattern_id: str) -> tuple[Any, ...]:
    """Sort key making "RP-9" older than "RP-10": digit runs compare as numbers."""
    parts = _DIGITS.split(str(pattern_id))
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts))


def fingerprint(rule_id: str, key: Sequence[Any], first_member: Any) -> str:
    """Stable name of a pattern without an id: its rule, key and first member."""
    text = json.dumps([rule_id, list(key), first_member], default=str, ensure_ascii=False)
    return f"{rule_id}/{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _utc_ns(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Instants as int64 ns since the epoch (UTC) and a mask of the known ones."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        times = values
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        times = values.dt.tz_localize("UTC")
    else:  # objects: Timestamps / datetimes in mixed zones, or text
        times = pd.to_datetime(values, utc=True)
    known = times.notna().to_numpy()
    ns = times.to_numpy(dtype="datetime64[ns]").view("int64")
    return np.where(known, ns, 0), known


def _sortable(key: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in key)


def _timestamp(ns: int, tz: ZoneInfo | None = None) -> pd.Timestamp:
    stamp = pd.Timestamp(ns, unit="ns", tz="UTC")
    return stamp.tz_convert(tz) if tz is not None else stamp


def _days(value: float) -> str:
    return f"{value:g} day" + ("" if value == 1 else "s")


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _as_list(value: Any) -> list[Any]:
    """A prior's key or members: a list/tuple/array, or its JSON text (from a spreadsheet)."""
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, list) else [loaded]
    if isinstance(value, np.ndarray | pd.Series):
        return list(value.tolist())
    if isinstance(value, list | tuple):
        return list(value)
    return []


def _read_prior(prior: pd.DataFrame | None) -> dict[str, _Prior]:
    if prior is None or prior.empty:
        return {}
    out: dict[str, _Prior] = {}
    for pid, rule_id, key, members in zip(prior["pattern_id"], prior["rule_id"], prior["key"],
                                          prior["members"], strict=True):
        if pd.isna(pid) or str(pid) in out:  # unallocated, or a repeated row
            continue
        out[str(pid)] = _Prior(str(pid), str(rule_id), tuple(_as_list(key)),
                               tuple(_as_list(members)))
    return out


def _read_closures(closures: pd.DataFrame | None, known: dict[str, _Prior]
                   ) -> list[tuple[int, str]]:
    """(closed_at ns, pattern_id) of closures of known patterns, in event order."""
    if closures is None or closures.empty:
        return []
    ns, ok = _utc_ns(closures["closed_at"])
    pids = closures["pattern_id"].to_numpy(dtype=object)
    found = {(int(t), str(p)) for t, p, good in zip(ns, pids, ok, strict=True)
             if good and not pd.isna(p) and str(p) in known}
    return sorted(found, key=lambda item: (item[0], id_order(item[1])))


def _blank_codes(uniques: Sequence[Any]) -> np.ndarray:
    """Per unique value: True for blank text, which is treated as missing."""
    return np.array([isinstance(u, str) and not u.strip() for u in uniques], dtype=bool)


def _codes(values: pd.Series, extra: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Integer codes (-1 = missing) for a key column and for `extra` values (closures' keys)
    in the same code space, plus the value of each code."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = [_scalar(u) for u in uniques]
    blank = _blank_codes(uniques)
    if blank.any():
        codes = np.where((codes >= 0) & ~blank[np.maximum(codes, 0)], codes, -1)
    lookup = {u: i for i, u in enumerate(uniques)}
    extra_codes = np.empty(len(extra), dtype=np.int64)
    for i, value in enumerate(extra):
        if value is None or (isinstance(value, str) and not value.strip()) or (
                not isinstance(value, Hashable)):
            extra_codes[i] = -1
            continue
        if value not in lookup:
            lookup[value] = len(uniques)
            uniques.append(value)
        extra_codes[i] = lookup[value]
    return codes.astype(np.int64), extra_codes, uniques


@dataclass(frozen=True)
class _Clock:
    """Report times (int64 ns UTC) and their ranks among all instants of the run: sorting and
    window bounds use ranks, so the (group, time) key fits int64 at any time resolution."""

    times: np.ndarray
    known: np.ndarray
    instants: np.ndarray  # sorted distinct instants of reports and closures
    ranks: np.ndarray  # rank of each report's time in `instants`


def _clock(times: np.ndarray, known: np.ndarray, closure_times: list[int]) -> _Clock:
    everything = np.concatenate([times, np.array(closure_times, dtype=np.int64)])
    order = np.argsort(everything, kind="stable")
    ordered = everything[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, bool)
    ranks = np.empty(len(everything), dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return _Clock(times, known, ordered[new], ranks[:len(times)])


def _rule_chains(rule_index: int, rule: RepeatRule, reports: pd.DataFrame, rules: Rules,
                 clock: _Clock, closures: list[tuple[int, str]], prior: dict[str, _Prior]
                 ) -> list[_Chain]:
    """Chains with members of one rule, in (group, time) order."""
    window = pd.Timedelta(days=rule.window_days).value
    eligible = holds(reports, rule.when, rules).to_numpy() & clock.known
    rows = np.flatnonzero(eligible)
    mine = [(t, pid) for t, pid in closures
            if prior[pid].rule_id == rule.id and len(prior[pid].key) == len(rule.key)]
    if not len(rows):
        return []

    # One row per (report, key combination): list fields explode, missing values drop out.
    frame = pd.DataFrame(index=rows)
    for j, field in enumerate(rule.key):
        column = reports[field] if field in reports.columns else pd.Series(
            None, index=reports.index, dtype=object)
        frame[j] = column.iloc[rows].array
    for j in range(len(rule.key)):
        if frame[j].dtype == object:
            frame = frame.explode(j)
    pos = frame.index.to_numpy(dtype=np.int64)
    n_rows, n_closures = len(frame), len(mine)

    # Group code per row and per closure (same code space), mixed radix re-compressed at
    # each field so the combined code cannot overflow.
    group = np.zeros(n_rows + n_closures, dtype=np.int64)
    valid = np.ones(n_rows + n_closures, dtype=bool)
    uniques: list[list[Any]] = []
    per_field: list[np.ndarray] = []
    for j in range(len(rule.key)):
        codes, extra, values = _codes(frame[j], [prior[pid].key[j] for _, pid in mine])
        column_codes = np.concatenate([codes, extra])
        uniques.append(values)
        per_field.append(column_codes)
        valid &= column_codes >= 0
        group = pd.factorize(group * (len(values) + 1) + column_codes + 1)[0].astype(np.int64)
    key_codes = np.column_stack(per_field)
    closure_valid = valid[n_rows:]
    closure_pids = [pid for (_, pid), ok in zip(mine, closure_valid, strict=True) if ok]
    if not valid[:n_rows].any():
        return []

    # Events: report rows, then closures (in (time, id) order, kept by the stable sort).
    closure_times = np.array([c for c, _ in mine], dtype=np.int64)
    g = group[valid]
    t = np.concatenate([clock.times[pos], closure_times])[valid]
    rank = np.concatenate([clock.ranks[pos],
                           np.searchsorted(clock.instants, closure_times)]
                          ).astype(np.int64)[valid]
    p = np.concatenate([pos, np.cumsum(closure_valid) - 1])[valid]  # closure: closure_pids
    kind = np.concatenate([np.zeros(n_rows, np.int8), np.ones(n_closures, np.int8)])[valid]
    key_codes = key_codes[valid]

    span = 2 * (len(clock.instants) + 1)
    sort_key = g * span + 2 * rank + kind
    order = np.argsort(sort_key, kind="stable")
    sort_key, g, t, p, kind, key_codes = (sort_key[order], g[order], t[order], p[order],
                                          kind[order], key_codes[order])
    # A report listing the same value twice is one member of that group, not two.
    repeat = np.r_[False, (sort_key[1:] == sort_key[:-1]) & (p[1:] == p[:-1]) & (kind[1:] == 0)]
    if repeat.any():
        live = ~repeat
        sort_key, g, t, p, kind, key_codes = (sort_key[live], g[live], t[live], p[live],
                                              kind[live], key_codes[live])
    n = len(t)
    is_report = kind == 0
    idx = np.arange(n)

    # Chains: a new group or a gap of more than D starts one.
    starts = np.r_[True, (g[1:] != g[:-1]) | (np.diff(t) > window)]
    chain = np.cumsum(starts) - 1
    n_chains = int(chain[-1]) + 1

    # Reports in [t - D, t] up to each event: first event of the group at or after t - D.
    low_rank = np.searchsorted(clock.instants, t - window, side="left")
    low = np.searchsorted(sort_key, g * span + 2 * low_rank, side="left")
    reports_before = np.r_[0, np.cumsum(is_report)]
    in_window = reports_before[idx + 1] - reports_before[low]

    def first_per_chain(hits: np.ndarray) -> np.ndarray:
        out = np.full(n_chains, _NO, dtype=np.int64)
        if len(hits):
            c = chain[hits]
            first = np.r_[True, c[1:] != c[:-1]]
            out[c[first]] = hits[first]
        return out

    trigger = first_per_chain(np.flatnonzero(is_report & (in_window >= rule.threshold)))
    closure = first_per_chain(np.flatnonzero(~is_report))
    continued = closure < trigger
    opened = ~continued & (trigger != _NO)
    begin = np.full(n_chains, _NO, dtype=np.int64)
    begin[continued] = closure[continued] + 1
    begin[opened] = low[trigger[opened]]
    member = is_report & (idx >= begin[chain])
    members = np.flatnonzero(member)
    if not len(members):
        return []

    # Members of one chain sit together; put same-instant members in report_id order.
    ids = reports["report_id"].to_numpy(dtype=object)
    mchain, mt = chain[members], t[members]
    tied = np.r_[False, (mchain[1:] == mchain[:-1]) & (mt[1:] == mt[:-1])]
    if tied.any():
        runs = tied | np.r_[tied[1:], False]
        slots = np.flatnonzero(runs)
        sub = pd.DataFrame({"c": mchain[slots], "t": mt[slots], "id": ids[p[members[slots]]],
                            "m": members[slots]})
        members = members.copy()
        members[slots] = sub.sort_values(["c", "t", "id"], kind="stable")["m"].to_numpy()

    bounds = np.flatnonzero(np.r_[True, chain[members][1:] != chain[members][:-1], True])
    out: list[_Chain] = []
    for a, b in itertools.pairwise(bounds):
        first = members[a]
        c = chain[first]
        key = tuple(uniques[j][key_codes[first, j]] for j in range(len(rule.key)))
        out.append(_Chain(
            rule=rule_index, key=key, links=p[members[a:b]], times=t[members[a:b]],
            opened_ns=int(t[trigger[c]]) if opened[c] else None,
            continues=closure_pids[p[closure[c]]] if continued[c] else None))
    return out


def _assign(chains: list[_Chain], rules: Rules, prior: dict[str, _Prior],
            positions: pd.Index) -> list[str | None]:
    """Prior pattern id per chain (None: new). Continuations take their closure's id;
    other chains the oldest unused prior of the same rule and key sharing a member."""
    ids: list[str | None] = [c.continues for c in chains]
    rule_index = {r.id: i for i, r in enumerate(rules.repeats)}
    plist = [pat for pat in prior.values() if pat.rule_id in rule_index and pat.members]
    opened = [i for i, c in enumerate(chains) if c.continues is None]
    if not plist or not opened:
        return ids
    # Join chain members and prior members on (rule, report position).
    size = len(positions) + 1
    at = positions.get_indexer([m for pat in plist for m in pat.members])
    owner = np.repeat(np.arange(len(plist)), [len(pat.members) for pat in plist])
    rule_of = np.array([rule_index[pat.rule_id] for pat in plist], dtype=np.int64)
    right = pd.DataFrame({"prior": owner, "k": rule_of[owner] * size + at})[at >= 0]
    left = pd.DataFrame({
        "chain": np.repeat(opened, [len(chains[i].links) for i in opened]),
        "k": np.concatenate([chains[i].rule * size + chains[i].links for i in opened]),
    })
    pairs = left.merge(right, on="k")[["chain", "prior"]].drop_duplicates()
    candidates: dict[int, list[_Prior]] = {}
    for ci, pk in zip(pairs["chain"].tolist(), pairs["prior"].tolist(), strict=True):
        if plist[pk].key == chains[ci].key:
            candidates.setdefault(ci, []).append(plist[pk])
    used: set[str] = set()
    # Chains are in (rule, group, time) order and a prior id only fits one group, so this
    # greedy pass hands each id to the earliest chain of its group that shares a member.
    for ci in sorted(candidates):
        free = [pat for pat in candidates[ci] if pat.pattern_id not in used]
        if free:
            best = min(free, key=lambda pat: id_order(pat.pattern_id))
            used.add(best.pattern_id)
            ids[ci] = best.pattern_id
    return ids


def _key_label(rules: Rules, fields: Sequence[str], key: Sequence[Any]) -> str:
    return " · ".join(display(rules, field, value)
                      for field, value in zip(fields, key, strict=False))


def _reopen_reason(report_id: Any, at: int, closed: int, tz: ZoneInfo | None) -> str:
    day, closed_day = _timestamp(at, tz).date(), _timestamp(closed, tz).date()
    gap = (day - closed_day).days
    when = (f"is {_days(gap)} after" if gap > 0 else "came after")
    return f"{report_id} on {day.isoformat()} {when} the review was closed on " \
           f"{closed_day.isoformat()}"


def detect(reports: pd.DataFrame, rules: Rules, prior: pd.DataFrame | None = None,
           closures: pd.DataFrame | None = None, *, tz: ZoneInfo | None = None
           ) -> RepeatResult:
    """Repeat patterns of every repeat rule over the whole report history.

    `prior`: pattern_id, rule_id, key (list), members (list of report ids) from earlier
    runs; `closures`: pattern_id, closed_at of patterns whose review or action was closed.
    `tz` only dates the reasons (UTC when not given); detection itself is zone-free.
    """
    if reports["report_id"].duplicated().any():
        dup = reports.loc[reports["report_id"].duplicated(), "report_id"].iloc[0]
        raise ValueError(f"report_id {dup!r} appears more than once: pass one row per report")
    known_prior = _read_prior(prior)
    closure_events = _read_closures(closures, known_prior)
    closed_at: dict[str, int] = {}
    for at, pid in closure_events:
        closed_at[pid] = max(at, closed_at.get(pid, at))
    times, known = _utc_ns(reports["occurred_at"])
    clock = _clock(times, known, [c for c, _ in closure_events])
    ids = reports["report_id"].to_numpy(dtype=object)

    chains: list[_Chain] = []
    for i, rule in enumerate(rules.repeats):
        chains += _rule_chains(i, rule, reports, rules, clock, closure_events, known_prior)
    assigned = _assign(chains, rules, known_prior, pd.Index(ids))

    # Chains sharing an id are one pattern (same rule and key, disjoint in time).
    grouped: dict[Any, list[_Chain]] = {}
    for n, (chain_, pid) in enumerate(zip(chains, assigned, strict=True)):
        grouped.setdefault(pid if pid is not None else ("new", n), []).append(chain_)

    rows: list[dict[str, Any]] = []
    for name, parts in grouped.items():
        parts.sort(key=lambda c: int(c.times[0]))
        rule = rules.repeats[parts[0].rule]
        at = np.concatenate([c.links for c in parts]) if len(parts) > 1 else parts[0].links
        when = np.concatenate([c.times for c in parts]) if len(parts) > 1 else parts[0].times
        members = ids[at].tolist()
        pid = name if isinstance(name, str) else None
        fp = fingerprint(rule.id, parts[0].key, members[0])
        closed = closed_at.get(pid) if pid is not None else None
        after = np.flatnonzero(when > closed) if closed is not None else _NONE
        opened = next((c.opened_ns for c in parts if c.opened_ns is not None), None)
        if closed is None:
            status = "open"
            reason = (f"reached {rule.threshold} reports within {_days(rule.window_days)} "
                      f"on {_timestamp(opened, tz).date().isoformat()}"
                      if opened is not None else None)
        elif len(after):
            status = "reopened"
            reason = _reopen_reason(members[after[0]], int(when[after[0]]), closed, tz)
        else:
            status, reason = "closed", None
        rows.append({
            "pattern_id": pid, "fingerprint": fp, "rule_id": rule.id, "rule_label": rule.label,
            "key": list(parts[0].key), "key_label": _key_label(rules, rule.key, parts[0].key),
            "members": members, "count": len(members), "first_at": int(when[0]),
            "last_at": int(when[-1]), "status": status, "closed_at": closed,
            "reopened_by": [members[k] for k in after], "reason": reason, "_at": at,
            "_order": (parts[0].rule, int(when[0]), _sortable(parts[0].key), fp)})

    taken = {pid for pid in assigned if pid is not None}
    rule_by_id = {r.id: (i, r) for i, r in enumerate(rules.repeats)}
    for pat in known_prior.values():
        if pat.pattern_id in taken:
            continue
        index, rule = rule_by_id.get(pat.rule_id, (len(rules.repeats), None))
        reason = (f"its reports no longer make {rule.threshold} within "
                  f"{_days(rule.window_days)} under this key" if rule is not None
                  else f"repeat rule {pat.rule_id!r} is no longer in the rules")
        first = pat.members[0] if pat.members else None
        rows.append({
            "pattern_id": pat.pattern_id, "fingerprint": fingerprint(pat.rule_id, pat.key, first),
            "rule_id": pat.rule_id, "rule_label": rule.label if rule is not None else None,
            "key": list(pat.key),
            "key_label": _key_label(rules, rule.key if rule is not None else [], pat.key),
            "members": list(pat.members), "count": len(pat.members), "first_at": None,
            "last_at": None, "status": "dissolved", "closed_at": closed_at.get(pat.pattern_id),
            "reopened_by": [], "reason": reason, "_at": None,
            "_order": (index, np.iinfo(np.int64).max, _sortable(pat.key), pat.pattern_id)})

    rows.sort(key=lambda r: r["_order"])
    current = [r["_at"] for r in rows if r["_at"] is not None]
    patterns = pd.DataFrame(rows, columns=PATTERN_COLUMNS)
    for col in ("first_at", "last_at", "closed_at"):
        patterns[col] = _to_utc(patterns[col])
    for col in ("pattern_id", "fingerprint", "rule_id", "rule_label", "key_label", "status",
                "reason"):
        patterns[col] = patterns[col].astype("string")
    patterns["count"] = patterns["count"].astype("int64")

    # Links: current members only (a dissolved pattern's old members are no longer linked).
    live = (patterns["status"] != "dissolved").to_numpy()
    which = np.repeat(np.arange(len(patterns))[live], patterns["count"].to_numpy()[live])
    links = pd.DataFrame({
        "report_id": ids[np.concatenate(current)] if current else np.zeros(0, dtype=object),
        **{col: patterns[col].array.take(which) for col in LINK_COLUMNS[1:]},
    }, columns=LINK_COLUMNS)
    return RepeatResult(patterns=patterns, links=links)


def _to_utc(values: pd.Series) -> pd.Series:
    """int ns / None -> datetime64[ns, UTC] without a round trip through float."""
    missing = np.iinfo(np.int64).min  # NaT
    ns = np.array([missing if v is None or pd.isna(v) else int(v) for v in values],
                  dtype=np.int64)
    return pd.Series(ns.view("datetime64[ns]"), index=values.index).dt.tz_localize("UTC")


def merge_same_reports(result: RepeatResult) -> RepeatResult:
    """One cluster, one pattern: a new pattern whose reports are exactly those of another
    pattern (two rules matching the same reports: category and service, category and
    contributing factor) joins it instead of taking an id of its own. The pattern keeps
    the id it already had, so a second rule that starts matching later changes nothing a
    manager relies on; its row names every rule and key it meets.

    Patterns that already have ids are left as they are, and one whose reports later
    differ from the other's becomes a pattern of its own then. Call before `assign_ids`.
    """
    patterns = result.patterns
    live = patterns[patterns["status"] != "dissolved"]
    lead: dict[tuple[str, ...], int] = {}
    gone: list[int] = []
    labels: dict[int, tuple[list[str], list[str]]] = {}
    # plain dicts by row: thousands of `.at` lookups cost a third of a second
    pid = {i: None if pd.isna(p) else str(p)
           for i, p in zip(live.index, live["pattern_id"].tolist(), strict=True)}
    members_of = dict(zip(live.index, live["members"].tolist(), strict=True))
    # leads first: patterns with ids (oldest), then new ones in rule order
    ordered = sorted(live.index, key=lambda i: (pid[i] is None, id_order(pid[i])
                                                if pid[i] is not None else (), i))
    for i in ordered:
        members = tuple(members_of[i])
        if members in lead and pid[i] is None:
            first = lead[members]
            rule_labels, key_labels = labels.setdefault(
                first, ([str(patterns.at[first, "rule_label"])],
                        [str(patterns.at[first, "key_label"])]))
            rule_labels.append(str(patterns.at[i, "rule_label"]))
            key_labels.append(str(patterns.at[i, "key_label"]))
            gone.append(i)
        else:
            lead.setdefault(members, i)
    if not gone:
        return result
    merged = patterns.drop(index=gone).copy()
    for i, (rule_labels, key_labels) in labels.items():
        merged.at[i, "rule_label"] = "; ".join(dict.fromkeys(rule_labels))
        merged.at[i, "key_label"] = " / ".join(dict.fromkeys(key_labels))
    dropped = set(patterns.loc[gone, "fingerprint"])
    links = result.links[~result.links["fingerprint"].isin(dropped)]
    return RepeatResult(patterns=merged.reset_index(drop=True),
                        links=links.reset_index(drop=True))


def pattern_ids(links: pd.DataFrame, report_ids: pd.Series) -> pd.Series:
    """The ids of the patterns each report belongs to, sorted (a list, empty for none)."""
    of: dict[str, set[str]] = {}
    # plain lists: iterating pandas' string arrays costs a second at 100,000 reports
    for rid, pid in zip(links["report_id"].tolist(), links["pattern_id"].tolist(), strict=True):
        of.setdefault(rid, set()).add(pid)
    return pd.Series([sorted(of[rid]) if rid in of else [] for rid in report_ids.tolist()],
                     index=report_ids.index, dtype=object)


def assign_ids(result: RepeatResult, ids: dict[str, str]) -> RepeatResult:
    """Fill pattern_id of new patterns from ids allocated by the caller, keyed by fingerprint."""
    def fill(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        given = frame["fingerprint"].map(ids).astype("string")
        frame["pattern_id"] = frame["pattern_id"].fillna(given)
        return frame

    return RepeatResult(patterns=fill(result.patterns), links=fill(result.links))
