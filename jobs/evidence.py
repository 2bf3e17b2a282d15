"""`nearmiss evidence --from DATE --to DATE`: the pack an inspector or commissioner asks for.

One workbook (the reports of the range, escalations and notification decisions, patterns,
actions with their verification, the audit trail of the range) and one HTML report with
the range's figures and charts, from what the store holds; nothing is sent or changed.
"""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path

import pandas as pd

from config.settings import Config
from connectors import charts
from connectors.evidence_files import write_page, write_workbook
from connectors.store import Store
from connectors.templates import Renderer
from jobs.governance import HEADLINES, all_services, shown
from transforms import evidence
from transforms.actions import action_state, linked_members
from transforms.metrics import ALL, LABELS, control_chart, period_metrics, signal_warnings, span
from transforms.tracker import ACTIONS, REPORTS


def make_pack(config: Config, start: date, end: date, folder: Path, *,
              person_refs: bool = False, now: pd.Timestamp | None = None) -> list[Path]:
    """Write the pack for the local days `start` to `end` into `folder`; its two paths."""
    s, rules = config.settings, config.rules
    tz, now = s.tz, pd.Timestamp(now or pd.Timestamp.now(tz="UTC"))
    store = Store.open(s.store)
    try:
        patterns_state = store.patterns()
        reports = evidence.report_frame(store.stored_reports(), store.decisions(),
                                        store.manager_values(REPORTS.title), patterns_state,
                                        tz, s.dayfirst)
        patterns = evidence.pattern_frame(patterns_state, reports, tz)
        manager = store.manager_values(ACTIONS.title)
        members = linked_members(manager, zip(patterns["pattern_id"], patterns["members"],
                                              strict=True),
                                 reports["occurred_at"].set_axis(reports["report_id"]))
        actions = action_state(manager, members, now.tz_convert(tz).date(), tz, s.dayfirst)
        events = store.audit_frame()
        outbox = store.outbox_frame()
    finally:
        store.close()
    period = span(start, end)
    sheets = evidence.tables(reports, patterns, actions, events, period, tz, rules,
                             person_refs)
    figures = period_metrics(reports, patterns, actions, events, outbox, period, tz, now,
                             rules)
    sheets = {"Figures": figures.figures.rename(index=LABELS).reset_index(), **sheets}
    stem = f"evidence-{start:%Y-%m-%d}-to-{end:%Y-%m-%d}"
    book = write_workbook(folder / f"{stem}.xlsx", sheets)
    chart = control_chart(reports, tz, now)
    pictures = [charts.bars(f"Reports by category, {period.label}",
                            *all_services(figures.by_category, "category"))]
    weeks = figures.by_week[figures.by_week["service"] == ALL]
    if len(weeks):
        pictures.append(charts.weekly("Reports per week", weeks["week"].tolist(),
                                      {ALL: weeks["reports"].tolist()}))
    html = Renderer(s.mail.templates).page("evidence", {
        "provider": s.provider, "period": period.label, "made": now.tz_convert(tz)
        .strftime("%Y-%m-%d %H:%M"), "person_refs": person_refs,
        "figures": [{"label": LABELS[k], "value": shown(k, figures.figures.at[k, ALL])}
                    for k in HEADLINES],
        "warnings": signal_warnings(chart),
        "counts": {title: len(frame) for title, frame in sheets.items() if title != "Figures"},
        "workbook": book.name,
        "charts": ["data:image/png;base64," + base64.b64encode(p).decode("ascii")
                   for p in pictures],
    })
    return [book, write_page(folder / f"{stem}.html", html)]

