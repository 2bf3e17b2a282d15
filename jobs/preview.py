"""`nearmiss preview`: the whole loop on a scratch copy of the store, sending nothing and
writing no tracker, and what it would have done.

A new provider connecting a form, or anyone changing a mapping, sees the reports by
status, what the incomplete ones lack, the pathways, the patterns and the emails that
would go out, with one of each rendered, before anybody is emailed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from config.settings import Config, StoreSettings
from connectors.base import Cell, SheetSpec, SheetWrite, Tracker
from connectors.store import Store, copy_store
from jobs.pipeline import RunFailed, RunSummary, run
from jobs.wiring import build


@dataclass
class ReadOnlyTracker:
    """The real tracker read (managers' decisions count), never written."""

    tracker: Tracker
    writes: list[SheetWrite] = field(default_factory=list)

    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        return self.tracker.read(specs)

    def write(self, writes: Sequence[SheetWrite]) -> None:
        self.writes += [w for w in writes if w]

    def version(self) -> None:
        return None  # a preview always runs in full


@dataclass
class CapturingTransport:
    """Every message the run would send, kept here."""

    messages: list[EmailMessage] = field(default_factory=list)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        def send(message: EmailMessage) -> None:
            self.messages.append(message)
        yield send


@dataclass
class Preview:
    summary: RunSummary | None
    failure: str | None
    store: Store
    tracker: ReadOnlyTracker
    transport: CapturingTransport


def preview(config: Config, scratch: Path, now: datetime | None = None,
            google: Any = None) -> Preview:
    """Run the loop on a copy, in the folder `scratch`, of the configured store (which is
    left untouched, and not created if it does not exist yet)."""
    settings = config.settings.model_copy(
        update={"store": StoreSettings(path=scratch / "preview.db")})
    copy = Store.open(settings.store)
    real = config.settings.store
    if real.url is not None or (real.path is not None and real.path.exists()):
        source = Store.open(real)
        try:
            copy_store(source, copy)
        finally:
            source.close()
    built = build(config, google, store=copy)
    tracker = ReadOnlyTracker(built.tracker)
    transport = CapturingTransport()
    connectors = replace(built, tracker=tracker, transport=transport)
    summary, failure = None, None
    try:
        summary = run(replace(config, settings=settings), now=now, connectors=connectors)
    except RunFailed as exc:  # what a real run would end with: part of the preview
        failure = str(exc)
    return Preview(summary, failure, copy, tracker, transport)


def report_lines(p: Preview, config: Config) -> list[str]:
    """What a preview shows, one line per fact, then one rendered email of each kind."""
    rules, store = config.rules, p.store
    decisions = store.decisions()
    lines = ["nearmiss preview: nothing was sent and no tracker written; the store was a "
             "scratch copy"]
    if p.summary is not None:
        lines.append(f"  the run would say: {p.summary.line()}")
    if p.failure:
        lines.append(f"  the run would end with: {p.failure}")
    status = Counter(d.get("dq_status") for d in decisions.values())
    held = p.summary.held if p.summary else 0
    lines.append(f"  reports: {store.report_count()} ({status.get('complete', 0)} complete, "
                 f"{status.get('incomplete', 0)} incomplete, {held} held)")
    wanting = Counter(f for d in decisions.values() for f in d.get("missing", []) +
                      d.get("invalid", []))
    if wanting:
        lines.append("  incomplete for want of: " + ", ".join(
            f"{rules.label(f)} {n}" for f, n in wanting.most_common()))
    pathways = Counter(d.get("pathway") for d in decisions.values() if d.get("pathway"))
    if pathways:
        lines.append("  pathways: " + ", ".join(
            f"{rules.triage.pathways[k].label if k in rules.triage.pathways else k} {n}"
            for k, n in pathways.most_common()))
    patterns = {k: v for k, v in store.patterns().items()
                if v.get("status") in ("open", "reopened")}
    lines.append(f"  patterns open: {len(patterns)}" + "".join(
        f"\n    {pid} ({v.get('rule_id')}): {len(v.get('members', []))} reports"
        for pid, v in sorted(patterns.items())))
    rows = sum(len(w.append) for w in p.tracker.writes)
    cells = sum(len(w.cells) for w in p.tracker.writes)
    lines.append(f"  tracker: {rows} rows would be added, {cells} cells updated")
    kinds = Counter(_kind(m) for m in p.transport.messages)
    lines.append(f"  emails that would go out: {sum(kinds.values())}"
                 + (" (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"
                    if kinds else ""))
    shown: set[str] = set()
    for message in p.transport.messages:
        kind = _kind(message)
        if kind in shown:
            continue
        shown.add(kind)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        lines += ["", f"--- one {kind}, to {message['To']}", f"Subject: {message['Subject']}",
                  text.rstrip()]
    return lines


def _kind(message: EmailMessage) -> str:
    """ack, missing, alert, notify, pattern, digest, outcome, reminder, brief."""
    return str(message["X-Nearmiss-Key"]).split(":")[0]
