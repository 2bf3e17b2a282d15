"""Governance, wired: the weekly review and the monthly board summary as emails with their
charts, and the tracker's Summary sheet. The figures come from transforms.metrics, the
schedule and the sheet's layout from transforms.governance, the pictures from
connectors.charts; this module only puts them together for the pipeline."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from config.settings import WEEKDAYS, Config
from connectors import charts
from connectors.store import OutboxItem, Store
from connectors.templates import Renderer
from domain.records import Cell, SheetSpec, SheetWrite
from transforms import governance
from transforms.metrics import (
    ALL,
    LABELS,
    Metrics,
    Period,
    control_chart,
    month_of,
    period_metrics,
    signal_warnings,
)
from transforms.tracker import cell_text

log = logging.getLogger("nearmiss")

SUMMARY = SheetSpec(title="Summary", columns=[], key_column="")
TITLES = {"weekly_review": "Weekly operational review",
          "board_summary": "Monthly board summary"}
# The figures an email lists (all services), in this order; the rest are in the sheet.
HEADLINES = ["reports", "incomplete_share", "median_days_to_triage", "triaged_on_time_share",
             "notification_risk", "notification_decided", "patterns_opened",
             "patterns_reopened", "patterns_closed", "patterns_open_now", "actions_issued",
             "actions_completed", "actions_overdue_now", "actions_verified_effective",
             "actions_not_effective", "loops_closed_share"]


@dataclass(frozen=True)
class Frames:
    """What the run computed that the figures are drawn from."""

    reports: pd.DataFrame
    patterns: pd.DataFrame
    actions: pd.DataFrame


def schedule(config: Config) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(weekday, hour) of the weekly review and (day, hour) of the board summary."""
    g = config.settings.governance
    weekly = (WEEKDAYS.index(g.weekly_review.day), g.weekly_review.hour) \
        if g.weekly_review else None
    monthly = (g.board_summary.day, g.board_summary.hour) if g.board_summary else None
    return weekly, monthly


def metrics(config: Config, store: Store, frames: Frames, period: Period,
            now: pd.Timestamp) -> Metrics:
    s = config.settings
    tz = s.tz
    since = pd.Timestamp(period.start - timedelta(days=1)).tz_localize("UTC")
    events = store.audit_frame(("pattern", "action"), since=since)
    return period_metrics(frames.reports, frames.patterns, frames.actions, events,
                          store.outbox_frame(), period, tz, now, config.rules)


def owed(config: Config, store: Store, renderer: Renderer, frames: Frames,
         now: pd.Timestamp, tracker: str) -> list[OutboxItem]:
    """The governance emails due by now that were never queued, rendered with charts."""
    s = config.settings
    local = now.tz_convert(s.tz).tz_localize(None).to_pydatetime()
    queued = store.outbox_keys()
    items = []
    for kind, period in governance.due(local, *schedule(config)):
        key = governance.key(kind, period)
        if key in queued:
            continue
        review = getattr(s.governance, kind)
        to = sorted({a for who in review.to for a in s.roles.get(who, [who])})
        figures = metrics(config, store, frames, period, now)
        chart = control_chart(frames.reports, s.tz, now)
        context, images = _email(kind, figures, chart, s.provider, tracker)
        subject, text, html = renderer.render("governance", context)
        items.append(OutboxItem(key, kind, period.label, to, subject, text, html, images))
    return items


def summary_write(config: Config, store: Store, frames: Frames, now: pd.Timestamp,
                  current: list[list[Cell]] | None) -> SheetWrite | None:
    """The Summary sheet's changed cells (the month so far), created with its charts when
    the tracker has none; None when nothing differs."""
    if not config.settings.governance.summary_sheet:
        return None
    tz = config.settings.tz
    today = now.tz_convert(tz).date()
    figures = metrics(config, store, frames, month_of(today), now)
    rows, made = governance.summary_grid(
        figures, governance.weekly_counts(frames.reports, tz, today))
    desired = {(r, c): value for r, row in enumerate(rows, 1)
               for c, value in enumerate(row, 1) if value not in (None, "")}
    if current is None:
        return SheetWrite(spec=SUMMARY, create=True, cells=desired, charts=made)
    shown = {(r, c): value for r, row in enumerate(current, 1)
             for c, value in enumerate(row, 1) if value not in (None, "")}
    cells = {k: v for k, v in desired.items() if cell_text(shown.get(k)) != cell_text(v)}
    cells.update({k: None for k in shown if k not in desired})  # left over from before
    return SheetWrite(spec=SUMMARY, cells=cells) if cells else None


def _email(kind: str, m: Metrics, chart: pd.DataFrame, provider: str, tracker: str
           ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The template's context and the charts it shows inline."""
    figures = m.figures
    services = [c for c in figures.columns if c != ALL]
    warnings = signal_warnings(chart)
    repeats = m.repeats_after_action
    period = m.period
    words = (f"{period.start:%-d %B} to {period.end:%-d %B %Y}" if period.kind == "week"
             else f"{period.start:%B %Y}")
    context = {
        "title": TITLES[kind], "period": period.label, "period_words": words,
        "provider": provider, "tracker": tracker,
        "reports": int(figures.at["reports", ALL]),
        "figures": [{"label": LABELS[k], "value": shown(k, figures.at[k, ALL])}
                    for k in HEADLINES],
        "warnings": warnings,
        "repeats": [{"action": r.action_id, "pattern": r.pattern_id, "label": r.key_label,
                     "window": int(r.window_days), "before": int(r.before),
                     "after": int(r.after), "fell": bool(r.fell) and bool(r.complete),
                     "complete": bool(r.complete)} for r in repeats.itertuples()],
        "services": [{"name": name, "reports": int(figures.at["reports", name]),
                      "incomplete": shown("incomplete_share",
                                           figures.at["incomplete_share", name]),
                      "on_time": shown("triaged_on_time_share",
                                        figures.at["triaged_on_time_share", name])}
                     for name in services],
    }
    pictures = [("by-category", f"Reports by category, {period.label}", _drawn(
        charts.bars, f"Reports by category, {period.label}",
        *all_services(m.by_category, "category")))]
    weeks = chart[chart["service"] == chart["service"].iloc[0]]["week"].tolist() \
        if len(chart) else []
    totals = chart.groupby("week", sort=False)["count"].sum() if len(chart) else None
    if weeks and totals is not None:
        pictures.append(("per-week", "Reports per week, all services", _drawn(
            charts.weekly, "Reports per week, all services", weeks,
            {ALL: [totals[w] for w in weeks]})))
    for service in sorted(set(chart.loc[chart["flag"], "service"])) if len(chart) else []:
        rows = chart[chart["service"] == service]
        last = rows.iloc[-1]
        pictures.append((f"signal-{len(pictures)}", f"Weekly reports at {service}",
                         _drawn(charts.control, f"Weekly reports at {service}",
                                rows["week"].tolist(), rows["count"].tolist(),
                                float(last["centre"]), float(last["lcl"]), float(last["ucl"]),
                                rows["flag"].tolist())))
    if len(repeats):
        pictures.append(("repeats", "Similar reports before and after each action",
                         _drawn(charts.before_after,
                                "Similar reports before and after each verified action",
                                [f"{r.action_id} {r.pattern_id}"
                                 for r in repeats.itertuples()],
                                repeats["before"].tolist(), repeats["after"].tolist())))
    pictures = [p for p in pictures if p[2]]
    context["charts"] = [{"cid": f"{name}@nearmiss", "alt": alt, "width": 720}
                         for name, alt, _ in pictures]
    images = [{"cid": f"{name}@nearmiss", "name": f"{name}.png",
               "png": base64.b64encode(png).decode("ascii")} for name, _, png in pictures]
    return context, images


def _drawn(draw: Callable[..., bytes], *args: Any) -> bytes:
    """A chart, or nothing when the data cannot make a readable one (too many series or
    categories for the size): the email still goes, with its figures."""
    try:
        return draw(*args)
    except ValueError as exc:
        log.warning("a governance chart was left out: %s", exc)
        return b""


def all_services(frame: pd.DataFrame, field: str) -> tuple[list[str], list[int]]:
    """A breakdown's labels and counts over all services, for a bar chart."""
    rows = frame[frame["service"] == ALL]
    return rows[field].astype(str).tolist(), [int(n) for n in rows["reports"]]


def shown(measure: str, value: float) -> str:
    """A figure as an email says it: counts whole, shares in per cent, days with one
    decimal; "none to measure" when there was nothing to count."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none to measure"
    if measure.endswith("_share"):
        return f"{100 * float(value):.0f}%"
    if measure.startswith("median"):
        return f"{float(value):.1f} days"
    return f"{int(value)}"
