"""A run that keeps the last results of unchanged reports ends exactly where a run that
recomputes every report does: same reports, decisions, audit, emails and tracker."""

from __future__ import annotations

import gc
import sqlite3
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest

from jobs import pipeline
from tests.fakes.deployment import Deployment


def _forget_results(folder: Path) -> None:
    """The twin recomputes everything: it never has results to keep."""
    with sqlite3.connect(folder / "nearmiss.db") as db:
        db.execute("DELETE FROM entity_state WHERE kind = 'value' AND entity_id = 'results'")


def _outcome(dep: Deployment) -> list[str]:
    with sqlite3.connect(dep.folder / "nearmiss.db") as db:
        tables = {
            "reports": db.execute("SELECT report_id, version, data FROM reports "
                                  "ORDER BY report_id").fetchall(),
            "state": db.execute("SELECT kind, entity_id, data FROM entity_state WHERE kind "
                                "NOT IN ('value') ORDER BY kind, entity_id").fetchall(),
            "audit": db.execute("SELECT entity, entity_id, event, reason FROM audit "
                                "WHERE entity != 'run' ORDER BY id").fetchall(),
            "outbox": db.execute("SELECT key, recipients, subject, body_text FROM outbox "
                                 "ORDER BY key").fetchall(),
        }
    # the twins differ in their folder alone, which emails name (the tracker's location)
    return pformat({**tables, "tracker": dep.sheet_values()}, width=100).replace(
        str(dep.folder), "~").splitlines()


@pytest.fixture
def twins(tmp_path: Path) -> tuple[Deployment, Deployment]:
    return Deployment(tmp_path / "kept"), Deployment(tmp_path / "full")


def test_kept_results_end_where_a_full_recompute_does(twins, monkeypatch):
    kept, full = twins
    steps: list[str] = []
    monkeypatch.setattr("jobs.progress.on_terminal", lambda: True)
    monkeypatch.setattr("jobs.progress.step", steps.append)

    def both(action: Any) -> None:
        for dep in twins:
            action(dep)

    def run(now: str) -> list[str]:
        steps.clear()
        kept_summary = kept.run(now)
        kept_steps = list(steps)
        _forget_results(full.folder) if (full.folder / "nearmiss.db").exists() else None
        full_summary = full.run(now)
        assert kept_summary.line() == full_summary.line()
        assert _outcome(kept) == _outcome(full)
        return kept_steps

    # A history: complete and incomplete reports on both forms, one dated day-first.
    both(lambda d: d.add_google("2026-11-20 10:00"))
    both(lambda d: d.add_google("2026-11-20 11:00", occurred_at="19/11/2026 08:00",
                                medication_name=None))
    both(lambda d: d.add_microsoft("2026-11-21 09:00", category="Falls prevention"))
    run("2026-11-23 09:00")

    # New reports: one dated ahead of the run, and a follow-up supplying what one lacked.
    both(lambda d: d.add_google("2026-11-23 09:30", occurred_at="2026-11-23 12:00"))
    both(lambda d: d.add_google("2026-11-23 09:40", report_reference="NM-000002",
                                medication_name="Amlodipine 5mg", description=None))
    said = run("2026-11-23 10:00")
    assert "reading 2 response(s) stored since the last run" in said
    assert "checking and triaging 2 of 4 reports" in said  # the new one, and the one added to

    # Time passes the report dated ahead; a manager triages one; nothing else arrives.
    both(lambda d: d.edit_tracker("Reports", "NM-000001", **{"Triage status": "Triaged"}))
    said = run("2026-11-23 13:00")
    assert "reading 0 response(s) stored since the last run" in said
    assert "checking and triaging 1 of 4 reports" in said  # the one no longer ahead

    # Hostile answers arrive: control characters, "N/A", a label the rules do not know, the
    # hour the clocks went back, and a broken line. Each marks its own report; the kept
    # results of the others still stand.
    both(lambda d: d.add_google("2026-11-23 13:10", description="Bed rail\x07 loose\x00 again",
                                potential_harm="N/A", category="Medicines",
                                occurred_at="2026-10-25 01:30"))
    both(lambda d: d.add_microsoft("2026-11-23 13:20", service="  Oak   House ",
                                   description="=HYPERLINK(\"x\")\u202e"))
    for dep in twins:
        with (dep.folder / "exports" / "near-miss-google-form.csv").open("a") as export:
            export.write('2026/11/23 1:30:00 PM GMT,kim@example.org,"Medication,"never closed\n')
    said = run("2026-11-23 14:00")
    assert "reading 3 response(s) stored since the last run" in said
    assert "checking and triaging 2 of 6 reports" in said  # the broken line's is held

    # A month-first date changes how the column reads: everything is read again.
    both(lambda d: d.add_google("2026-11-23 14:00", occurred_at="11/22/2026 08:00"))
    said = run("2026-11-23 15:00")
    assert any(s.startswith("reading 9 responses into reports") for s in said)

    # An edited response may have been a column's proof: everything is read again.
    both(lambda d: d.edit_microsoft(1, "2026-11-23 16:00", shift="Night (10pm-8am)"))
    said = run("2026-11-23 17:00")
    assert any(s.startswith("reading 9 responses into reports") for s in said)

    # The kept view damaged, then lost (a store edited by hand): everything is read again.
    for damage in ("UPDATE entity_state SET data = '{\"report_id\": [\"NM-000001\"]}' "
                   "WHERE kind = 'view part'", "DELETE FROM entity_state WHERE kind = 'view part'",
                   "UPDATE entity_state SET data = json_remove(data, '$.value.proofs') "
                   "WHERE kind = 'value' AND entity_id = 'results'"):
        with sqlite3.connect(kept.folder / "nearmiss.db") as db:
            db.execute(damage)
        both(lambda d: d.add_google("2026-11-23 18:00"))
        said = run("2026-11-23 19:00")
        assert any(s.startswith("reading") and "responses into reports" in s for s in said)


def test_checks_in_a_worker_process_end_where_checks_here_do(twins, monkeypatch, caplog):
    """A long history checks new reports in a worker process, which imports
    great-expectations while the tracker is read; one that cannot start leaves them to this
    one."""
    worker, here = twins
    started: list[int] = []

    class Spawned(ProcessPoolExecutor):  # the real pool, counted
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("jobs.pipeline.ProcessPoolExecutor", Spawned)
    for dep in twins:
        dep.add_google("2026-11-20 10:00")
        dep.add_microsoft("2026-11-21 09:00", category="Falls prevention")
        dep.run("2026-11-23 09:00")

    def run_both(now: str) -> None:
        monkeypatch.setattr("jobs.pipeline.CHECK_WORKER_FROM", 0)
        worker.run(now)
        monkeypatch.setattr("jobs.pipeline.CHECK_WORKER_FROM", 10**9)
        here.run(now)
        assert _outcome(worker) == _outcome(here)

    # New responses: the worker starts before the reports are normalised, and its first
    # step overlaps that; the same worker then checks them.
    ahead: list[bool] = []
    normalise = pipeline.normalise

    def watched(r: pipeline.Run) -> Any:
        ahead.append(r.check.worker is not None)
        return normalise(r)

    monkeypatch.setattr("jobs.pipeline.normalise", watched)
    for dep in twins:
        dep.add_google("2026-11-23 09:30", medication_name=None)
        dep.add_microsoft("2026-11-23 09:40", potential_harm="N/A")
    run_both("2026-11-23 10:00")
    assert started == [1] and ahead == [True, False]

    # The worker cannot start (its first step fails): the reports are checked here.
    monkeypatch.setattr("jobs.pipeline.worker_start", sys.exit)
    for dep in twins:
        dep.add_google("2026-11-23 10:30", description=None)
    run_both("2026-11-23 11:00")
    assert started == [1, 1]
    assert "the checks worker stopped: the reports are checked in this process" in caplog.text


def test_the_collector_is_back_on_only_for_a_run_that_computes_every_report(tmp_path):
    """The command runs without the cyclic collector (`jobs.cli.script`); a run computing
    every report turns it back on, one building on the last results leaves it off."""


    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    try:
        gc.disable()
        dep.run("2026-11-23 09:00")  # the first: every report
        assert gc.isenabled()
        gc.disable()
        dep.add_google("2026-11-23 09:30", category="Falls prevention")
        dep.run("2026-11-23 10:00")  # the new one alone
        assert not gc.isenabled()
    finally:
        gc.enable()
