"""The near-miss learning loop, one run, top to bottom.

capture -> (nothing new and nothing due: the last run's results stand) -> normalise
-> validate -> triage (those three only for reports with something new: the last results of
the others are kept; the checks run while the tracker is read and repeats are found) -> read
the tracker (manager decisions) -> repeats -> audit
-> emails owed -> governance emails due -> send -> write the tracker (and its Summary)
-> run summary

Each step is a small function below `run`. A failing connector (a source offline, the
tracker locked, the mail server down) does not stop the steps that do not need it: what
could be stored is stored, and the run ends with that connector's one-line message and a
non-zero exit. Nothing stored is ever lost; the next run picks up where this one stopped.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from checks.quality import check_reports, import_great_expectations
from config.rules import Rules
from config.settings import Config, fields_of
from connectors.base import Tracker
from connectors.errors import MailError, NearmissError
from connectors.mail import build_message
from connectors.store import OutboxItem, SourceMemory, Store
from domain.ids import action_id, action_number, pattern_id, report_id
from domain.records import AuditEvent, Cell, SheetWrite, merge_writes
from jobs import governance, progress
from jobs.lock import run_lock
from jobs.wiring import Connectors, build
from transforms import normalize, repeats, results
from transforms.actions import action_state, linked_members, pattern_closures, report_closure
from transforms.audit import (
    ENTITY_OF_SHEET,
    decision_events,
    manager_events,
    move_events,
    pattern_events,
    question_events,
)
from transforms.governance import next_slot
from transforms.horizon import next_change
from transforms.loop import (
    Owed,
    digest_alerts,
    hold_mass_requests,
    loop_status,
    owed_messages,
)
from transforms.tracker import (
    ACTIONS,
    DATA_QUALITY,
    PATTERNS,
    REPORTS,
    SHEETS,
    SheetState,
    actions_rows,
    archive_targets,
    archived_in,
    assign_ids,
    closed_days,
    family,
    manager_changes,
    manager_updates,
    patterns_rows,
    plan_family,
    quality_rows,
    read_states,
    reports_rows,
)
from transforms.triage import triage

log = logging.getLogger("nearmiss")


class RunFailed(NearmissError):
    """The run finished what it could; these connectors failed."""


@dataclass
class RunSummary:
    run_id: int = 0
    new_responses: int = 0
    new_versions: int = 0
    reports: int = 0
    reports_changed: int = 0
    incomplete: int = 0
    held: int = 0
    patterns_open: int = 0
    emails_queued: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    emails_pending: int = 0
    backlog_runs: int = 0  # runs the waiting emails need at mail.max_per_run
    tracker_cells: int = 0
    tracker_rows: int = 0
    tracker_archived: int = 0  # rows moved into a yearly archive sheet
    tracker_returned: int = 0  # rows moved back out of one (reopened)
    manager_changes: int = 0
    unmapped: list[str] = field(default_factory=list)
    # about a whole source: a column in both day orders, a line quarantined, an encoding
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.new_responses} new, {self.new_versions} edited; {self.reports} reports "
                f"({self.incomplete} incomplete, {self.held} held); {self.patterns_open} open "
                f"patterns; {self.emails_queued} emails queued, {self.emails_sent} sent, "
                f"{self.emails_failed} failed, {self.emails_pending} waiting"
                + (f" (about {self.backlog_runs} runs to send them all)"
                   if self.backlog_runs > 1 else "") + "; tracker: "
                f"{self.tracker_rows} rows added, "
                f"{self.tracker_cells} cells updated"
                + (f", {self.tracker_archived} rows archived" if self.tracker_archived else "")
                + (f", {self.tracker_returned} rows back from an archive"
                   if self.tracker_returned else ""))


@dataclass
class Run:
    """What the steps share: config, connectors, the run's clock and its summary."""

    config: Config
    c: Connectors
    now: pd.Timestamp
    summary: RunSummary = field(default_factory=RunSummary)
    events: list[AuditEvent] = field(default_factory=list)
    id_writes: list[SheetWrite] = field(default_factory=list)  # ids given to new actions
    # what becomes true only once the tracker holds it: ids taken, actions added
    taken: dict[str, int] = field(default_factory=dict)  # counter -> highest number used
    on_write: list[AuditEvent] = field(default_factory=list)
    written: dict[str, set[str]] = field(default_factory=dict)  # tracker keys known written
    summary_sheet: list[list[Any]] | None = None  # the tracker's Summary sheet, as read
    # The last results of the reports whose responses did not change (by report id),
    # computed at `kept_at`; None: every report is computed. `changed`: the reports
    # combined again; `recomputed`: those checked and triaged again; `memory`: what their
    # results are computed with, stored with them; `columns`: a report's own columns.
    kept: pd.DataFrame | None = None
    kept_at: pd.Timestamp | None = None
    changed: pd.Index | None = None
    recomputed: pd.Index | None = None
    columns: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    check: Checker = field(default_factory=lambda: Checker())

    @property
    def tz(self) -> ZoneInfo:
        return self.config.settings.tz

    def failed(self, what: str, exc: NearmissError | str) -> None:
        log.debug("%s failed: %s", what, exc)  # the CLI prints the run's failure line once
        self.summary.failures.append(str(exc))
        self.events.append(AuditEvent("run", str(self.summary.run_id), f"{what} failed", str(exc)))

    @contextmanager
    def saving(self) -> Iterator[Store]:
        """What the block stores commits in one transaction with the events gathered so far,
        the audit of that very state: a run killed anywhere loses both or neither."""
        try:
            with self.c.store.atomic():
                yield self.c.store
                self.c.store.audit(self.events, self.now)
        finally:
            self.events.clear()  # stored with their state, or rolled back with it


def run(config: Config, now: datetime | None = None,
        connectors: Connectors | None = None) -> RunSummary:
    """Run the loop once. Raises RunFailed (after storing everything it could) if any
    connector failed, NearmissError for problems that stop the run before it starts."""
    now_ts = pd.Timestamp(now or datetime.now(UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    c = connectors or build(config)
    with run_lock(config.settings.store):
        r = Run(config, c, now_ts)
        r.summary.run_id = c.store.begin_run(now_ts)
        try:
            # The tracker is read in a thread while the reports are captured (when a manager
            # saved it since the last run: this run computes) or else normalised and
            # checked: the parse of a workbook (calamine) and the requests of a cloud
            # tracker run outside the GIL.
            with ThreadPoolExecutor(1, thread_name_prefix="tracker") as reading:
                tables = reading.submit(read_sheets, c.tracker) if tracker_saved(r) else None
                capture(r)
                captured = list(r.summary.warnings)
                steady = unchanged(r, captured)
                if steady is None:
                    tables = tables or reading.submit(read_sheets, c.tracker)
                    start_worker(r)
                    reports, held = normalise(r)
                    checking = start_checks(r, reports)
                    sheets, manager = read_tracker(r, tables)
                    view, actions, patterns = decide(r, reports, manager)
                    view = validate_and_triage(r, view, checking)
                    # A pattern's alert is owed by the run that sees it open: the emails are
                    # queued in the transaction that records the decisions, or a stopped run
                    # loses them.
                    with r.saving():
                        audit_decisions(r, view, held, patterns)
                        queue_emails(r, view, actions, patterns, held)
                    frames = governance.Frames(view, patterns, actions)
                    queue_governance(r, frames)
                    send_emails(r)
                    if sheets is not None:
                        write_tracker(r, sheets, manager, view, held, actions, patterns, frames)
                    until = min(next_change([view, held], r.now, r.tz),
                                next_slot(r.now, r.tz, *governance.schedule(r.config)))
                    steady = {"inputs": inputs(r, captured), "at": r.now.isoformat(),
                              "until": until.isoformat(),
                              "summary": {k: getattr(r.summary, k) for k in RESTORED}}
        except BaseException:
            try:
                with r.saving() as store:
                    store.finish_run(now_ts, "crashed", {"summary": r.summary.line()})
            except NearmissError as exc:  # a StoreError: the store itself failed, and the
                log.debug("could not record the crash: %s", exc)  # first error says why
            raise
        finally:
            r.check.close()
        s = r.summary
        r.events.append(AuditEvent("run", str(s.run_id), "run finished", s.line(),
                                   {"failures": s.failures} if s.failures else None))
        with r.saving() as store:
            store.finish_run(now_ts, "failed" if s.failures else "ok", {"summary": s.line()}
                             if s.failures else {"summary": s.line(), "steady": steady})
    if s.failures:
        raise RunFailed(s.failures[0] if len(s.failures) == 1 else
                        f"{s.failures[0]} (and {len(s.failures) - 1} more: see the audit log)")
    return s


# -- 1. capture -----------------------------------------------------------------------------

def capture(r: Run) -> None:
    """Append every source's new responses and edits to the raw table, and name form drift."""
    store = r.c.store
    today = r.now.tz_convert(r.tz).date().isoformat()
    progress.step(f"reading {len(r.c.sources)} form source(s)")
    for source in r.c.sources:
        memory = store.source_memory(source.name)
        # Once a day read everything: whether the Forms API filters on creation or last
        # submission is undocumented, and an edit to an old response is only certain to be
        # seen by a full read.
        try:
            pulled = source.pull(memory.watermark if memory.full_read_on == today else None)
        except NearmissError as exc:
            r.failed(f"source {source.name}", exc)
            continue
        if pulled.unchanged:  # an export file as it was: what it said then still holds
            r.summary.warnings += [f"{source.name}: {w}" for w in memory.warnings]
            continue
        questions = pulled.questions or memory.questions
        retired = normalize.retired_questions(memory.retired, memory.questions, questions)
        responses = pulled.responses
        if retired:  # a re-read without the question must not erase what was answered
            before = store.latest_payloads(source.name)
            responses = [replace(x, answers=normalize.keep_answers(
                x.answers, before.get(x.response_id), retired)) for x in responses]
        changed = question_events(source.name, memory.questions, pulled.questions)
        with r.saving():
            added = store.add_raw(responses, r.now)
            r.events += changed
            store.remember_source(source.name, SourceMemory(
                pulled.watermark, today, pulled.warnings, questions, retired), r.now)
        r.summary.new_responses += added.new
        r.summary.new_versions += added.versions
        r.summary.warnings += [f"{source.name}: {w}" for w in pulled.warnings]
        # said in this run's output too, once: the audit log keeps it
        r.summary.warnings += [f"{e.entity_id}: {e.event} {e.reason}" for e in changed]
        log.info("%s: %d new, %d edited, %d unchanged", source.name, added.new, added.versions,
                 added.unchanged)


# -- 2. anything new? -----------------------------------------------------------------------

# What a run that recomputes nothing says of the reports: the figures of the run it repeats.
RESTORED = ("reports", "incomplete", "held", "patterns_open", "unmapped", "warnings")


def inputs(r: Run, captured: list[str]) -> dict[str, Any]:
    """Everything but the clock that a run's results depend on, each as a cheap token."""
    return {"config": r.config.fingerprint(), "code": code_version(),
            "store": r.c.store.change_marks(), "tracker": r.c.tracker.version(),
            "captured": captured}


@cache
def code_version() -> str:
    """The source of the packages that compute results: an upgrade recomputes everything."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for package in ("checks", "config", "domain", "transforms"):
        for path in sorted((root / package).glob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def last_steady(store: Store) -> dict[str, Any] | None:
    """What the last run said its results depend on, if it ended well: one that failed may
    have stored decisions its tracker write never showed."""
    last = store.previous_run()
    return (last.get("summary") or {}).get("steady") if last and last["status"] == "ok" \
        else None


def tracker_saved(r: Run) -> bool:
    """The tracker is not as the last run left it (a manager saved it): this run computes,
    and may read it while the forms are read, when it shares no client with them."""
    if not r.c.tracker_apart:
        return False
    steady = last_steady(r.c.store)
    return not steady or steady["inputs"]["tracker"] != r.c.tracker.version()


def unchanged(r: Run, captured: list[str]) -> dict[str, Any] | None:
    """The results of the last run, when nothing they depend on has changed since and no
    time it noted has come (an email now due to be retried counts as a change): this run
    then has nothing to compute, to queue or to write. None: the loop runs in full."""
    store = r.c.store
    steady = last_steady(store)
    if not steady or not (pd.Timestamp(steady["at"]) <= r.now < pd.Timestamp(steady["until"])):
        return None
    now = inputs(r, captured)
    # A tracker that cannot tell whether it changed is read every run, and the loop with it.
    if now["tracker"] is None or now != steady["inputs"] or store.pending(r.now, limit=1):
        return None
    for key in RESTORED:
        setattr(r.summary, key, steady["summary"][key])
    waiting(r)  # those whose retry is not due yet
    log.info("nothing new since the last run, and nothing has fallen due: its results stand")
    return steady


# -- 3. normalise ---------------------------------------------------------------------------

def normalise(r: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map answers to report fields, give each new response a report number (or join the
    report it quotes), combine responses into reports. Returns (active, held) reports.

    When the last results still hold (`transforms.results`), only the responses stored
    since are mapped and only their reports combined; the others are as last stored."""
    s, store = r.config.settings, r.c.store
    mappings = {src.name: s.mapping_for(src) for src in s.sources}
    value_maps = {src.name: s.value_maps_for(src) for src in s.sources}

    def mapped_of(responses: pd.DataFrame, proofs: Any = None) -> normalize.Mapped:
        return normalize.map_answers(responses, mappings, r.config.rules, r.tz, s.dayfirst,
                                     value_maps, proofs)

    memory = store.results_memory()
    token = {"config": r.config.fingerprint(), "code": code_version()}
    r.memory = {**token, "at": r.now.isoformat(), "raw": store.last_raw_id()}
    mapped = None
    # (a memory written by hand or cut short is not used: every report is computed)
    if memory and {k: memory.get(k) for k in token} == token and {
            "at", "raw", "proofs", "notes", "unmapped"} <= memory.keys() \
            and pd.Timestamp(memory["at"]) <= r.now:
        fresh = store.latest_responses(after=memory["raw"])
        # An edited response may have been a column's proof of its day order: read all.
        if not (fresh["version"] > 1).any():
            progress.step(f"reading {len(fresh):,} response(s) stored since the last run")
            mapped = mapped_of(fresh, memory["proofs"])
            if not results.orders_hold(memory["proofs"], mapped.proofs, s.dayfirst):
                mapped = None
    kept = _kept_view(r) if mapped is not None else None
    incremental = kept is not None
    if not incremental:
        # Every report is computed (a first run, or after an upgrade): the cycles pandas
        # leaves are worth collecting again, which the command turns off for the runs that
        # compute little (`jobs.cli.script`). Without, such a run's peak is a fifth higher.
        gc.enable()
        responses = store.latest_responses()
        progress.step(f"reading {len(responses):,} responses into reports")
        mapped = mapped_of(responses)
        counts, notes = mapped.unmapped, mapped.column_notes
    else:
        counts = normalize.add_counts(pd.DataFrame(memory["unmapped"], columns=[
            "source", "question", "responses"]), mapped.unmapped)
        notes = memory["notes"]
    r.memory.update(proofs=mapped.proofs, notes=notes, unmapped=counts.values.tolist())
    # Combining every report needs every link; combining the fresh responses' reports, the
    # links of those and of the reports they quote.
    links = store.links(mapped.responses, normalize.quoted(mapped.responses)) \
        if incremental else store.links()
    plan = normalize.plan_links(mapped.responses, links)
    unmapped = [f"{row.source}: {row.question!r} ({row.responses} responses)"
                for row in counts.itertuples()]
    r.summary.unmapped = unmapped
    r.summary.warnings += notes
    with r.saving():  # numbers are taken with the links that use them: no gaps
        links = normalize.with_links(links, _number(r, plan.needs_number))
        joined, orphans = normalize.resolve_follow_ups(plan.follow_ups,
                                                       set(links.report_id))
        store.add_links(joined, r.now)
        links = normalize.with_links(links, joined, _number(r, orphans))
        if incremental:
            reports, changed = _recombine(r, mapped.responses, links, mapped_of, kept)
            r.changed = pd.Index(changed["report_id"])
        else:
            reports = changed = normalize.combine(mapped.responses, links, r.config.rules)
        r.columns = list(reports.columns)
        r.summary.reports_changed = store.save_reports(normalize.to_records(changed), r.now)
        if unmapped != store.notices("unmapped"):
            r.events += [AuditEvent("source", u.split(":")[0], "unmapped question", u)
                         for u in unmapped]
            store.save_notices("unmapped", unmapped, r.now)
        if r.summary.warnings != store.notices("warnings"):  # said once in the audit
            r.events += [AuditEvent("source", w.split(":")[0], "warning", w)
                         for w in r.summary.warnings]
            store.save_notices("warnings", r.summary.warnings, r.now)
    held = reports[reports["held"].notna()]
    r.summary.held = len(held)
    r.summary.reports = len(reports)
    return reports[reports["held"].isna()].reset_index(drop=True), held.reset_index(drop=True)


def _kept_view(r: Run) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The reports and results the last run kept (`results.from_parts`), or None when they
    cannot stand for every stored report: a part missing or unreadable (a store edited or
    copied in part, a run stopped between storing reports and their results)."""
    store = r.c.store
    try:
        kept = results.from_parts(store.view_parts(), r.config.rules)
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("the results kept by the last run cannot be read (%s): every report "
                    "is computed again", type(exc).__name__)
        return None
    if len(kept[0]) != store.report_count():
        log.info("the results kept by the last run miss some reports: all are computed again")
        return None
    return kept


def _recombine(r: Run, fresh: pd.DataFrame, links: pd.DataFrame,
               mapped_of: Callable[..., normalize.Mapped],
               kept_view: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every report, those combined again): the reports the fresh responses belong to are
    combined again, with the earlier responses of each; the others are as `kept_view` has
    them, and their last results are kept in `r.kept`."""
    store = r.c.store
    touched, earlier = normalize.touched(links, fresh)
    parts = [fresh]
    if len(earlier):  # (then fresh has rows too: they are what touched those reports)
        before = store.latest_responses(response_ids=earlier["response_id"])
        # the same response id on another form is another response
        before = before.merge(earlier, on=["source", "response_id"])
        parts.append(mapped_of(before, r.memory["proofs"]).responses)
    changed = normalize.combine(pd.concat(parts, ignore_index=True) if len(parts) > 1
                                else fresh, touched, r.config.rules)
    stored, kept = kept_view
    r.kept = kept[~kept.index.isin(changed["report_id"])]
    r.kept_at = pd.Timestamp(store.results_memory()["at"])
    return normalize.updated(stored, changed), changed


def _number(r: Run, responses: pd.DataFrame) -> pd.DataFrame:
    """Each response a new report number; the links made."""
    numbers = r.c.store.allocate("report", len(responses))
    links = responses[["source", "response_id"]].assign(
        report_id=[report_id(n) for n in numbers], how="new")
    r.c.store.add_links(links, r.now)
    return links


# -- 4, 5. validate and triage ---------------------------------------------------------------

# From this many reports, the checks of a run's new reports go to a worker process: there
# great-expectations is imported (2.5 s) on the other core while this one normalises and
# reads the tracker, and the checks run while it finds repeats, which need no check.
CHECK_WORKER_FROM = 20_000


def worker_start() -> None:
    """The checks worker's first step: great-expectations imported without the cyclic
    collector walking the objects its modules make (a fifth of the import), and those
    objects then left out of the collections the checks cause."""
    gc.disable()
    try:
        import_great_expectations()
    finally:
        gc.freeze()
        gc.enable()


class Checker:
    """`check_reports`, here or in a worker process."""

    def __init__(self) -> None:
        self.worker: ProcessPoolExecutor | None = None

    def submit(self, reports: pd.DataFrame, rules: Rules, now: pd.Timestamp, *,
               apart: bool = False) -> Callable[[], pd.DataFrame]:
        """The checks of `reports`, under way (in a worker process when `apart`): call what
        this returns for their results. A worker that could not start, or died, leaves
        them to this process."""
        future = None
        if apart:
            try:
                future = self.start().submit(check_reports, reports, rules, now)
            except BrokenProcessPool:  # its first step failed already
                self._stopped()
        else:
            self.close()  # started for checks that turned out to be none
        if future is None:
            checked = check_reports(reports, rules, now)
            return lambda: checked

        def result() -> pd.DataFrame:
            try:
                return future.result()
            except BrokenProcessPool:
                self._stopped()
                return check_reports(reports, rules, now)
            finally:
                self.close()  # one check a run

        return result

    def start(self) -> ProcessPoolExecutor:
        """The worker process, started ahead of the checks: its first step then overlaps
        the run's steps before them."""
        if self.worker is None:
            self.worker = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=worker_start)
            with contextlib.suppress(BrokenProcessPool):
                self.worker.submit(int)  # the process is spawned for its first task
        return self.worker

    def _stopped(self) -> None:
        log.warning("the checks worker stopped: the reports are checked in this process")
        self.close()

    def close(self) -> None:
        # not waited for: the worker's exit (a second) overlaps the rest of the run
        if self.worker is not None:
            self.worker.shutdown(wait=False, cancel_futures=True)
            self.worker = None


@dataclass
class Checking:
    todo: pd.DataFrame  # the reports checked and triaged again
    results: Callable[[], pd.DataFrame]  # their checks' results, once they are done


def start_worker(r: Run) -> None:
    """New responses over a long history: the checks worker starts now, and imports
    great-expectations on the other core while the reports are normalised and the tracker
    is read (started with the checks, it was the last step ready by a second)."""
    if r.summary.new_responses + r.summary.new_versions and \
            r.c.store.report_count() >= CHECK_WORKER_FROM:
        r.check.start()


def start_checks(r: Run, reports: pd.DataFrame) -> Checking:
    """The checks of every report, or of those without results kept (new, changed, or with
    a time that was ahead when the kept results were computed), started: in the worker,
    they run while the tracker is read."""
    rules = r.config.rules
    todo = results.to_compute(reports, rules, r.kept, r.kept_at)
    progress.step(f"checking and triaging {len(todo):,} of {len(reports):,} reports")
    return Checking(todo, r.check.submit(
        todo, rules, r.now, apart=len(todo) > 0 and len(reports) >= CHECK_WORKER_FROM))


def validate_and_triage(r: Run, reports: pd.DataFrame, checking: Checking) -> pd.DataFrame:
    """Every report with its checks and triage: those computed now, and the others'
    kept."""
    todo = checking.todo
    view = results.attach(reports, checking.results(), triage(todo, r.config.rules, r.tz),
                          r.kept)
    r.recomputed = pd.Index(todo["report_id"])
    r.summary.incomplete = int((view["dq_status"] == "incomplete").sum())
    return view


# -- 6. read the tracker ----------------------------------------------------------------------

def read_sheets(tracker: Tracker) -> tuple[dict[str, SheetState], list[list[Cell]] | None]:
    """Every sheet of the tracker (archives included) as read, and its Summary sheet."""
    read = tracker.read([*SHEETS, governance.SUMMARY])
    return read_states(SHEETS, read), read.get(governance.SUMMARY.title)


def read_tracker(r: Run, tables: Future[tuple[dict[str, SheetState], list[list[Cell]] | None]]
                 ) -> tuple[dict[str, SheetState] | None, dict[str, dict[str, dict[str, str]]]]:
    """The sheets as `read_sheets` read them, and every manager value: new ones are audited
    and stored. A manager value typed into an archived row counts as one
    typed into the live sheet.

    If the tracker cannot be read the values last seen are used and nothing is written to
    it this run: writing blind could overwrite what managers typed.
    """
    store = r.c.store
    progress.step("reading the tracker")
    stored = {spec.title: store.manager_values(spec.title) for spec in SHEETS}
    try:
        states, r.summary_sheet = tables.result()
    except NearmissError as exc:
        r.failed("tracker read", exc)
        return None, stored
    actions = states[ACTIONS.title]
    assigned: dict[str, int] = {}
    if actions.unkeyed:  # rows managers added: each gets the next action id
        # Taken (and audited) only once the tracker holds it: a run stopped before that
        # gives the same rows the same ids next time.
        ids = [action_id(n) for n in store.peek("action", len(actions.unkeyed))]
        write, assigned = assign_ids(actions, ids)
        r.id_writes.append(write)
        r.taken["action"] = max(map(action_number, assigned), default=0)
        r.on_write += [AuditEvent("action", aid, "action added",
                                  f"row {row} of {ACTIONS.title}") for aid, row in assigned.items()]
    # An action id in the sheet that the tracker is not known to hold was written by a run
    # stopped before it could say so (or typed by a manager): it is added now. Known only
    # once the store records what the tracker holds (every run since that began).
    # Keys the tracker is known to hold: stored only after a write succeeded, so a run
    # stopped before writing never makes the next one think a manager deleted a row.
    r.written = {spec.title: store.tracker_keys(spec.title) for spec in SHEETS}
    written = r.written[ACTIONS.title]
    unsaid = [(k, row) for k, row in actions.rows.items() if k not in written
              and k not in assigned] if r.written[REPORTS.title] else []
    r.events += [AuditEvent("action", k, "action added", f"row {row} of {ACTIONS.title}")
                 for k, row in unsaid]
    manager: dict[str, dict[str, dict[str, str]]] = {}
    with r.saving():
        # An id the sheet already holds is taken, even if the run that wrote it was stopped
        # before it could say so.
        store.reserve("action", max((action_number(k) for k in actions.rows
                                     if k not in assigned), default=0))
        for spec in SHEETS:
            values, changes = manager_changes(states[spec.title], stored[spec.title],
                                              family(states, spec)[1:])
            manager[spec.title] = values
            r.events += manager_events(changes)
            r.summary.manager_changes += len(changes)
            store.save_manager_values(spec.title, manager_updates(values, stored[spec.title]),
                                      r.now)
    return states, manager


# -- 7. manager decisions and repeats -------------------------------------------------------

def decide(r: Run, view: pd.DataFrame, manager: dict[str, dict[str, dict[str, str]]]
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Closed reports, action tracking, and repeat patterns (closures reopen on recurrence).
    Repeat rules key on the reports' own fields: none of this waits for their checks."""
    s, rules, store = r.config.settings, r.config.rules, r.c.store
    today = r.now.tz_convert(r.tz).date()
    progress.step("finding repeats")
    closure = report_closure(manager[REPORTS.title], view["report_id"], s.dayfirst)
    closures = pattern_closures(manager[PATTERNS.title], manager[ACTIONS.title], r.tz,
                                s.dayfirst)

    prior_state = store.patterns()
    prior = pd.DataFrame([{"pattern_id": pid, **st} for pid, st in prior_state.items()],
                         columns=["pattern_id", "rule_id", "key", "members"])
    found = repeats.merge_same_reports(repeats.detect(view, rules, prior, closures))
    fresh = found.patterns.loc[found.patterns["pattern_id"].isna(), "fingerprint"].tolist()
    numbers = store.peek("pattern", len(fresh))  # taken with the patterns' state
    r.taken["pattern"] = numbers[-1] if numbers else 0
    ids = [pattern_id(n) for n in numbers]
    found = repeats.assign_ids(found, dict(zip(fresh, ids, strict=True)))
    patterns = found.patterns.copy()
    review = {pid: v.get("Review status", "") for pid, v in manager[PATTERNS.title].items()}
    patterns["display_status"] = [
        "under review" if st == "open" and review.get(pid, "").casefold() == "under review"
        else st for pid, st in zip(patterns["pattern_id"], patterns["status"], strict=True)]
    members = linked_members(manager[ACTIONS.title],
                             zip(patterns["pattern_id"], patterns["members"], strict=True),
                             view["occurred_at"].set_axis(view["report_id"]))
    actions = action_state(manager[ACTIONS.title], members, today, r.tz, s.dayfirst)

    view = view.merge(closure.drop(columns=["report_id"]), left_index=True, right_index=True)
    view["pattern_ids"] = repeats.pattern_ids(found.links, view["report_id"])
    triage_status = {k: v.get("Triage status", "").casefold()
                     for k, v in manager[REPORTS.title].items()}
    # bool, even with no report (an empty map would give pandas' string dtype)
    view["triaged"] = view["report_id"].map(
        lambda k: triage_status.get(k, "") in ("triaged", "closed")).astype(bool) | view[
        "closed"].astype(bool)
    r.summary.patterns_open = int(patterns["status"].isin(["open", "reopened"]).sum())
    return view, actions, patterns


# -- 8. audit ----------------------------------------------------------------------------------

def audit_decisions(r: Run, view: pd.DataFrame, held: pd.DataFrame,
                    patterns: pd.DataFrame) -> None:
    """Log what changed since the last run: checks, rules fired, risk flags, patterns."""
    store, rules = r.c.store, r.config.rules
    # Reports whose results were kept decided what they decided last run: nothing to log.
    todo = view if r.kept is None else view[view["report_id"].isin(r.recomputed)]
    previous = store.decisions(None if r.kept is None else todo["report_id"])
    events, state = decision_events(todo, previous, rules, r.tz, r.now)
    done = r.kept["completed_at"].to_dict() if r.kept is not None else {}
    view["completed_at"] = view["report_id"].map(
        lambda k: state[k].get("completed_at") if k in state else done.get(k)).astype(object)
    prior_patterns = store.patterns()
    p_events, happened, p_state = pattern_events(patterns, prior_patterns, r.tz)
    patterns["event"] = happened
    r.events += events + p_events
    with r.saving():
        store.save_decisions(_changed(state, previous), r.now)
        # the reports as they are now (held ones too) and their results, for the next run
        store.save_view(results.to_parts(
            results.kept_view(view, held, r.columns),
            None if r.kept is None else r.changed.union(r.recomputed)), r.memory, r.now)
        if p_events or p_state.keys() != prior_patterns.keys():
            store.reserve("pattern", r.taken.get("pattern", 0))
            store.replace_patterns({pid: {**st, "rule_id": rule, "key": key}
                                    for (pid, st), rule, key in zip(
                                        p_state.items(), patterns["rule_id"],
                                        patterns["key"], strict=True)}, r.now)


# -- 9, 10. the closed loop: emails owed, and sending them ------------------------------------

def queue_emails(r: Run, view: pd.DataFrame, actions: pd.DataFrame,
                 patterns: pd.DataFrame, held: pd.DataFrame) -> None:
    """Render and queue what the loop owes. Reporters' messages carry no person-served
    reference of any report: the view's nor the held reports'."""
    s, store = r.config.settings, r.c.store
    # The question a follow-up quotes the report's id in, by its title on each form.
    asks = {src.name: next((q for q, f in s.mapping_for(src).items()
                            if "report_reference" in fields_of(f)), None) for src in s.sources}
    reference_questions = {name: store.source_memory(name).questions.get(q, q) if q else None
                           for name, q in asks.items()}
    on_hold = store.held_requests()
    released = {k for k, v in on_hold.items() if v.get("released")}
    owed = owed_messages(
        view, r.config.rules, roles=s.roles, queued=store.outbox_keys() | store.digested_alerts(),
        now=r.now, tz=r.tz,
        recent_days=s.mail.recent_days, actions=actions, patterns=patterns,
        briefs=[b.model_dump() for b in s.mail.learning_briefs],
        reference_questions=reference_questions, reply=s.mail.reply_to is not None,
        person_refs=held.get("person_ref", ()),
        released=[on_hold[k]["report"] for k in released])
    brake, mass = s.mail.hold_requests, {}
    if brake is not None:
        owed, mass = hold_mass_requests(
            owed, r.summary.new_responses + r.summary.new_versions, above=brake.above,
            share=brake.share, at_least=brake.at_least, released=released)
    hold_requests(r, on_hold, mass, {o.key for o in owed})
    if s.mail.digest_alerts_above is not None:
        owed, covered = digest_alerts(owed, s.mail.digest_alerts_above,
                                      r.summary.new_responses)
        store.add_digested_alerts(covered, r.now)
    common = {"provider": s.provider, "tracker": r.c.tracker_location}
    items = []
    for o in owed:
        subject, text, html = r.c.renderer.render(o.kind, {**common, **o.context})
        items.append(OutboxItem(o.key, o.kind, o.entity_id, o.recipients, subject, text, html))
    added = store.enqueue(items, r.now)
    r.summary.emails_queued = len(added)


def queue_governance(r: Run, frames: governance.Frames) -> None:
    """The weekly review and the monthly board summary, once each period, when due."""
    items = governance.owed(r.config, r.c.store, r.c.renderer, frames, r.now,
                            r.c.tracker_location)
    if items:
        progress.step(f"queuing {len(items)} governance email(s)")
        r.events += [AuditEvent("team", i.entity_id, "governance email queued",
                                f"{i.kind} to {', '.join(i.recipients)}") for i in items]
        with r.saving() as store:
            r.summary.emails_queued += len(store.enqueue(items, r.now))


def hold_requests(r: Run, before: dict[str, dict[str, Any]], mass: dict[str, list[Owed]],
                  queued: set[str]) -> None:
    """Remember the requests held this run (audited once each), forget those no longer
    held, and end the run with the one line that says why."""
    store, rules = r.c.store, r.config.rules
    now_held = {o.key: {"report": o.entity_id, "fields": list(o.fields), "released": False}
                for asked in mass.values() for o in asked}
    fresh = {k: v for k, v in now_held.items() if k not in before}
    store.hold_requests(fresh, r.now)
    store.forget_held(k for k in before if k not in now_held and (
        k in queued or not before[k].get("released")))
    r.events += [AuditEvent("report", v["report"], "request held",
                            "asks for " + ", ".join(rules.label(f) for f in v["fields"])
                            + ": many reporters at once; see the run's line")
                 for v in fresh.values()]
    if mass:
        field, asked = max(mass.items(), key=lambda item: len(item[1]))
        more = f" (and {len(mass) - 1} more items)" if len(mass) > 1 else ""
        r.failed("mail", f"{len(now_held)} requests for missing items are held: "
                 f"{len(asked)} reporters would be asked for {rules.label(field)!r}{more} in "
                 "one run, which looks like a mapping problem (compare the form's questions "
                 "and options with the config); fix the mapping, or send them with "
                 "`nearmiss release missing-info`")


def send_emails(r: Run) -> None:
    """Drain the outbox through the transport, one connection, marking each message as it
    goes so a failure part-way loses nothing and sends nothing twice."""
    s, store = r.config.settings, r.c.store
    pending = store.pending(r.now, limit=s.mail.max_per_run)
    refused: list[MailError] = []
    if pending:
        try:
            with r.c.transport.connect() as send:
                for item in progress.bar(pending, len(pending), "sending emails"):
                    message = build_message(item, s.mail.sender, s.mail.reply_to, r.now)
                    try:
                        note = send(message)
                    except MailError as exc:
                        refused.append(exc)
                        r.summary.emails_failed += 1
                        r.events.append(AuditEvent(_entity(item), item["entity_id"],
                                                   "email failed", f"{item['kind']}: {exc}",
                                                   {"key": item["key"]}))
                        with r.saving():
                            store.mark_failed(item["key"], str(exc), r.now,
                                              final=not exc.retry_later)
                        if exc.stop_run:
                            raise
                        continue
                    # The window for a duplicate: the server has the message and this
                    # commit has not happened yet; a run killed here sends it again.
                    r.events.append(AuditEvent(
                        _entity(item), item["entity_id"], "email sent",
                        f"{item['kind']} to {', '.join(item['recipients'])}"
                        + (f" ({note})" if note else ""), {"key": item["key"]}))
                    with r.saving():
                        store.mark_sent(item["key"], r.now)
                    r.summary.emails_sent += 1
        except MailError as exc:
            r.failed("mail", exc)
        else:
            if refused:
                r.failed("mail", _not_sent(refused))
    waiting(r)


def waiting(r: Run) -> None:
    """Emails not sent yet, and how many runs they need: a first run over a long history
    can owe more than one run may send."""
    r.summary.emails_pending = len(r.c.store.pending())
    r.summary.backlog_runs = -(-r.summary.emails_pending // r.config.settings.mail.max_per_run)


def _not_sent(refused: list[MailError]) -> str:
    """One line for the emails a run could not send: how many, the first reason, and what
    happens next (a temporary refusal is retried; a permanent one needs a person)."""
    parts = []
    for later, what, then in ((True, "not sent", "retried on a later run"),
                              (False, "refused for good", "see the Loop column and the Data "
                                                          "quality sheet")):
        errors = [e for e in refused if e.retry_later is later]
        if errors:
            n = len(errors)
            parts.append(f"{n} email{'s' if n > 1 else ''} {what}: {errors[0]}; {then}")
    return "; ".join(parts)


def _entity(item: dict[str, Any]) -> str:
    kind, entity = item["kind"], item["entity_id"]
    if entity.startswith("NM-"):
        return "report"
    if entity.startswith("PT-"):
        return "pattern"
    if entity.startswith("A-"):
        return "action"
    return "team" if kind in ("learning_brief", "weekly_review", "board_summary") else "email"


# -- 11. write the tracker ----------------------------------------------------------------------

def write_tracker(r: Run, sheets: dict[str, SheetState],
                  manager: dict[str, dict[str, dict[str, str]]], view: pd.DataFrame,
                  held: pd.DataFrame, actions: pd.DataFrame, patterns: pd.DataFrame,
                  frames: governance.Frames) -> None:
    """Write changed system cells and new rows of every sheet in one batch, move rows
    closed long ago to their yearly archive sheet (and reopened ones back), and bring the
    Summary sheet up to date."""
    store, rules, tz = r.c.store, r.config.rules, r.tz
    progress.step("writing the tracker")
    view = view.join(loop_status(view, store.outbox_frame(), tz))
    writes = list(r.id_writes)
    plans = [
        (REPORTS, reports_rows(view, rules, tz, r.now)),
        (PATTERNS, patterns_rows(patterns, tz)),
        (ACTIONS, actions_rows(actions)),
        (DATA_QUALITY, quality_rows(view, held, rules)),
    ]
    written = r.written
    closed_on = closed_days(view, patterns, tz)
    days = r.config.settings.tracker.archive_after_days
    cutoff = r.now.tz_convert(tz).date() - timedelta(days=days) if days else None
    restored_events: list[AuditEvent] = []
    moves: list[tuple[str, str, str, str]] = []  # sheet, key, from, to
    appended = 0
    for spec, desired in plans:
        states = family(sheets, spec)
        targets = archive_targets(closed_on[spec.title], archived_in(states), cutoff
                                  ) if spec.title in closed_on else {}
        plan = plan_family(states, desired, manager[spec.title], written[spec.title], targets)
        writes += plan.writes
        appended += len(plan.added) + len(plan.restored)
        restored_events += [AuditEvent(ENTITY_OF_SHEET[spec.title], k, "row restored",
                                       f"{spec.title} row was deleted; restored")
                            for k in plan.restored]
        restored_events += [AuditEvent(ENTITY_OF_SHEET[spec.title], k, "copied row",
                                       f"{sheet} row {row} repeats {k}: row {counted} is the "
                                       "one read; the copy is marked")
                            for sheet, k, row, counted in plan.copies]
        moves += [(spec.title, *move) for move in plan.moved]
    summary = governance.summary_write(r.config, store, frames, r.now, r.summary_sheet)
    writes = merge_writes(*writes, *([summary] if summary else []))
    try:
        r.c.tracker.write(writes)
    except NearmissError as exc:
        r.failed("tracker write", exc)
        return
    r.events += restored_events + move_events(moves, closed_on, days) + r.on_write
    with r.saving():
        store.reserve("action", r.taken.get("action", 0))
        for spec, desired in plans:
            store.add_tracker_keys(spec.title, (k for k in desired.index
                                                if k not in written[spec.title]), r.now)
    # the data sheets' cells: the Summary sheet is rewritten as a whole view, not edits
    r.summary.tracker_cells = sum(len(w.cells) for w in writes
                                  if w.spec.title != governance.SUMMARY.title)
    r.summary.tracker_rows = appended
    r.summary.tracker_returned = sum(target == sheet for sheet, _, _, target in moves)
    r.summary.tracker_archived = len(moves) - r.summary.tracker_returned


def _changed(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Only the entries that differ: a run over a long history rewrites little."""
    return {k: v for k, v in now.items() if before.get(k) != v}
