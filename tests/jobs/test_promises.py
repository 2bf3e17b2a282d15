"""Promises of the README, end to end on a whole deployment: a tracker that cannot be read or
written, manager values while the tracker is unreadable, Ctrl-C and internal errors, a crash
mid-run, a deleted row with manager values, and the triage due time."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from connectors.store import Store, runs
from jobs import pipeline
from jobs.cli import main
from jobs.wiring import build
from tests.fakes.deployment import Deployment

ONE_LINE = "nearmiss: error: "


def cli_run(dep: Deployment, now: str, capsys, *options: str) -> tuple[int, str]:
    """`nearmiss --config ... run --now NOW` in this process: its exit code and stderr."""
    capsys.readouterr()
    code = main(["--config", str(dep.folder / "nearmiss.yaml"), *options, "run", "--now", now])
    return code, capsys.readouterr().err


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def store_of(dep: Deployment) -> Store:
    return Store.open(dep.folder / "nearmiss.db")


def statuses(dep: Deployment) -> list[str]:
    with store_of(dep).engine.connect() as conn:
        return conn.execute(select(runs.c.status).order_by(runs.c.run_id)).scalars().all()


def events(dep: Deployment, run_id: int | None = None) -> list[tuple[str, str, str]]:
    return [(e["entity_id"], e["event"], e["reason"]) for e in store_of(dep).audit_trail()
            if run_id is None or e["run_id"] == run_id]


def sent_keys(dep: Deployment) -> set[str]:
    box = store_of(dep).outbox_frame()
    return set(box.loc[box["sent_at"].notna(), "key"])


def report_ids(tracker: Path) -> list[str]:
    ws = load_workbook(tracker, read_only=True)["Reports"]
    return [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]


@pytest.fixture
def immutable() -> Iterator[tuple]:
    """`chattr +i` a path (read-only for root too), and undo it; all undone after the test."""
    done: list[Path] = []

    def make(path: Path) -> None:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        done.append(path)

    def undo(path: Path) -> None:
        subprocess.run(["chattr", "-i", str(path)], check=True)

    yield make, undo
    for path in reversed(done):
        undo(path)


def deployed(tmp_path: Path, **overrides) -> Deployment:
    dep = Deployment(tmp_path, **overrides)
    dep.add_google("2026-11-20 10:00")
    dep.config()
    return dep


# -- 1. the tracker cannot be written, or cannot be read ----------------------------------

def test_a_tracker_that_cannot_be_written_ends_in_one_line_and_the_next_run_writes_it(
        tmp_path, capsys, immutable):
    """A read-only tracker file, then a read-only tracker folder: each `nearmiss run` exits 1
    with one line naming the tracker and the fix, leaves the file as it was, stores the new
    report, sends its email and is recorded as failed; the next run with the tracker
    writable again adds the row, and no email goes out twice."""
    make, undo = immutable
    dep = deployed(tmp_path, tracker={"kind": "xlsx", "path": "tracker/tracker.xlsx",
                                      "archive_after_days": 365})
    tracker = tmp_path / "tracker" / "tracker.xlsx"
    assert cli_run(dep, "2026-11-23T09:00Z", capsys)[0] == 0
    before = tracker.read_bytes()
    for n, locked in enumerate([tracker, tracker.parent], start=2):
        dep.add_google(f"2026-11-2{n} 10:00", email=f"reporter{n}@example.org",
                       description=f"Report {n}")
        make(locked)
        code, err = cli_run(dep, f"2026-11-2{n + 2}T09:00Z", capsys)
        undo(locked)
        assert code == 1
        assert one_line(err) == (f"{ONE_LINE}cannot write the tracker {tracker}: it is "
                                 "read-only or open in another program; close it and run "
                                 "again")
        assert tracker.read_bytes() == before
        assert store_of(dep).report_count() == n
        assert f"ack:NM-00000{n}" in sent_keys(dep)
        assert statuses(dep)[-1] == "failed"
        assert any(e[1] == "tracker write failed" for e in events(dep, run_id=n))

    assert cli_run(dep, "2026-11-25T10:00Z", capsys)[0] == 0
    assert report_ids(tracker) == ["NM-000001", "NM-000002", "NM-000003"]
    acks = sorted(k for k in sent_keys(dep) if k.startswith("ack:"))
    assert acks == [f"ack:NM-00000{n}" for n in (1, 2, 3)]
    # each email sent once, none left waiting
    assert len([e for e in events(dep) if e[1] == "email sent"]) == len(sent_keys(dep))
    assert not store_of(dep).pending()


# -- 2. manager values while the tracker cannot be read -----------------------------------

ACTION = {"Linked to": "NM-000001", "Action": "Add a second check of the MAR at handover",
          "Owner": "Ana", "Owner email": "ana@example.org", "Due": "2026-11-20",
          "Status": "Open"}
TRIAGE = {"Triage status": "Triaged", "Triage date": "2026-11-23"}


def test_an_unreadable_tracker_ends_in_one_line_and_no_manager_value_is_lost(tmp_path, capsys):
    """A tracker that is not a workbook: one line naming it and the fix, exit 1, the file left
    as it is (nothing written blind), the new report and its email stored and sent. The run
    works from the manager values last read (the overdue action still gets its daily
    reminder) and keeps them stored as they were; once the workbook is back, the missing row
    is added and what managers typed, before and since, is all still there."""
    dep = deployed(tmp_path)
    assert cli_run(dep, "2026-11-23T09:00Z", capsys)[0] == 0
    dep.edit_tracker("Reports", "NM-000001", **TRIAGE)
    dep.edit_tracker("Actions", "", **ACTION)
    assert cli_run(dep, "2026-11-24T09:00Z", capsys)[0] == 0
    assert "reminder:A-0001:2026-11-24" in sent_keys(dep)
    stored = {title: store_of(dep).manager_values(title) for title in ("Reports", "Actions")}
    assert stored["Actions"]["A-0001"]["Owner email"] == "ana@example.org"
    backup = dep.tracker_path.read_bytes()

    garbage = b"PK\x03\x04 this is not a workbook"
    dep.tracker_path.write_bytes(garbage)
    dep.add_google("2026-11-24 10:00", email="jo@example.org", description="Second one")
    code, err = cli_run(dep, "2026-11-25T09:00Z", capsys)
    assert code == 1
    assert re.fullmatch(
        rf"{ONE_LINE}the tracker {re.escape(str(dep.tracker_path))} is not a readable Excel "
        r"workbook \(\w+\): restore it from a backup or move it away to start a new one",
        one_line(err)), err
    assert dep.tracker_path.read_bytes() == garbage
    assert store_of(dep).report_count() == 2
    # the new report is acknowledged, and the action is still known
    assert {"ack:NM-000002", "reminder:A-0001:2026-11-25"} <= sent_keys(dep)
    assert statuses(dep)[-1] == "failed"
    assert {t: store_of(dep).manager_values(t) for t in stored} == stored
    assert not [e for e in events(dep, run_id=3) if e[1] == "manager change"]

    dep.tracker_path.write_bytes(backup)
    dep.edit_tracker("Reports", "NM-000001", **{"Just-culture classification": "Human error"})
    assert cli_run(dep, "2026-11-26T09:00Z", capsys)[0] == 0
    assert report_ids(dep.tracker_path) == ["NM-000001", "NM-000002"]
    report = next(r for r in dep.sheet("Reports") if r["Report ID"] == "NM-000001")
    assert {k: report[k] for k in TRIAGE} == TRIAGE
    assert report["Just-culture classification"] == "Human error"
    action = next(r for r in dep.sheet("Actions") if r["Action ID"] == "A-0001")
    assert {k: action[k] for k in ACTION} == ACTION
    now_stored = store_of(dep).manager_values("Reports")["NM-000001"]
    assert now_stored == {**stored["Reports"]["NM-000001"],
                          "Just-culture classification": "Human error"}
    assert store_of(dep).manager_values("Actions") == stored["Actions"]


# -- 5. Ctrl-C and internal errors ----------------------------------------------------------

def test_ctrl_c_during_a_run_exits_130_with_one_line_and_loses_nothing(
        tmp_path, capsys, monkeypatch):
    """Ctrl-C once the responses are stored: exit 130 and one line; the report stays stored
    and the run is recorded as crashed."""
    dep = deployed(tmp_path)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "validate_and_triage", interrupted)
    try:
        code, err = cli_run(dep, "2026-11-23T09:00Z", capsys)
    except KeyboardInterrupt:  # not let out of the test: it would stop the whole session
        pytest.fail("Ctrl-C went through `nearmiss run` as a traceback")
    assert code == 130
    assert one_line(err) == "nearmiss: interrupted; nothing stored was lost"
    assert store_of(dep).report_count() == 1
    assert statuses(dep) == ["crashed"]


def test_an_internal_error_in_a_run_is_one_line_without_a_traceback_unless_verbose(
        tmp_path, capsys, monkeypatch):
    """An unexpected exception inside `nearmiss run`: exit 1 and one line naming its type and
    where it was raised, never its message; with --verbose the exception itself surfaces."""
    dep = deployed(tmp_path)

    def broken(*args):
        raise ValueError("report text: MAR showed the evening dose as given already")

    monkeypatch.setattr(pipeline, "validate_and_triage", broken)
    code, err = cli_run(dep, "2026-11-23T09:00Z", capsys)
    assert code == 1
    line = one_line(err)
    assert re.fullmatch(r"nearmiss: internal error: ValueError in jobs/pipeline\.py:\d+ "
                        r"\(run with --verbose for details\)", line), line
    assert statuses(dep) == ["crashed"]
    with pytest.raises(ValueError, match="report text"):
        cli_run(dep, "2026-11-23T09:05Z", capsys, "--verbose")


# -- 6. a crash mid-run ---------------------------------------------------------------------

class Counting:
    """A transport that counts what it delivers, and fails as a bug would after `crash_after`
    messages."""

    def __init__(self, inner, crash_after: int | None = None) -> None:
        self.inner, self.crash_after = inner, crash_after
        self.sent: list[str] = []

    @contextmanager
    def connect(self):
        with self.inner.connect() as send:
            def counted(message):
                if self.crash_after is not None and len(self.sent) >= self.crash_after:
                    raise RuntimeError("the transport broke")
                note = send(message)
                self.sent.append(message["X-Nearmiss-Key"])
                return note
            yield counted


def test_a_crash_mid_send_loses_nothing_and_the_next_run_finishes_without_duplicates(
        tmp_path):
    """A crash after the first of two emails went out: both reports stay stored, the sent one
    is marked sent, the run is recorded as crashed; the next run sends only the other and
    writes the tracker, and each email went out exactly once."""
    dep = deployed(tmp_path)
    dep.add_google("2026-11-21 10:00", email="jo@example.org", description="Second one")
    c = build(dep.config())
    first = c.transport = Counting(c.transport, crash_after=1)
    with pytest.raises(RuntimeError, match="the transport broke"):
        dep.run(connectors=c)
    assert store_of(dep).report_count() == 2
    assert statuses(dep) == ["crashed"]
    assert sent_keys(dep) == set(first.sent) == {"ack:NM-000001"}

    c = build(dep.config())
    second = c.transport = Counting(c.transport)
    dep.run("2026-11-23 09:05", connectors=c)
    assert statuses(dep) == ["crashed", "ok"]
    assert sorted(first.sent + second.sent) == ["ack:NM-000001", "ack:NM-000002"]
    assert sent_keys(dep) == {"ack:NM-000001", "ack:NM-000002"}
    assert report_ids(dep.tracker_path) == ["NM-000001", "NM-000002"]
    assert [e[0] for e in events(dep) if e[1] == "email sent"] == ["NM-000001", "NM-000002"]


# -- 9. a deleted row that had manager values -----------------------------------------------

def test_a_deleted_row_comes_back_with_its_manager_values_and_own_column(tmp_path):
    """A manager types into a Reports row and a column of their own, then deletes the row:
    the next run puts it back with those values and that text, and audits it restored."""
    dep = deployed(tmp_path)
    dep.add_google("2026-11-21 10:00", email="jo@example.org", description="Second one")
    dep.run()
    typed = {"Triage status": "Triaged", "Just-culture classification": "Human error",
             "Notification decision": "Not notifiable"}
    dep.edit_tracker("Reports", "NM-000002", **typed)
    wb = load_workbook(dep.tracker_path)
    ws = wb["Reports"]
    own = ws.max_column + 1
    ws.cell(1, own, "Manager notes")
    row = next(r[0].row for r in ws.iter_rows(min_row=2) if r[0].value == "NM-000002")
    ws.cell(row, own, "Called Jo back on Tuesday")
    wb.save(dep.tracker_path)
    dep.run("2026-11-23 10:00")
    assert store_of(dep).manager_values("Reports")["NM-000002"]["Triage status"] == "Triaged"

    wb = load_workbook(dep.tracker_path)
    wb["Reports"].delete_rows(row)
    wb.save(dep.tracker_path)
    assert report_ids(dep.tracker_path) == ["NM-000001"]
    restored = dep.run("2026-11-23 11:00")

    back = next(r for r in dep.sheet() if r["Report ID"] == "NM-000002")
    assert {k: back[k] for k in typed} == typed
    assert back["Manager notes"] == "Called Jo back on Tuesday"
    assert back["What happened"] == "Second one"
    assert ("NM-000002", "row restored") in {e[:2] for e in events(dep, restored.run_id)}
    assert not [e for e in events(dep, restored.run_id) if e[1] == "manager change"]


# -- 4. the triage due time, end to end ---------------------------------------------------

def test_a_report_is_overdue_only_once_its_triage_due_time_has_passed(tmp_path):
    """Due at 10:00: a run at 09:00 shows it not overdue, and a run at 10:00:01 the same day
    with nothing new shows it overdue."""
    dep = deployed(tmp_path)
    dep.run("2026-11-21 09:00")
    (row,) = dep.sheet()
    assert str(row["Triage due"])[:16] == "2026-11-21 10:00" and not row["Overdue"]
    dep.run("2026-11-21 10:00:01")
    assert dep.sheet()[0]["Overdue"] == "overdue"


def test_a_run_exactly_at_the_triage_due_time_does_not_hide_the_overdue_until_midnight(
        tmp_path):
    """Due at 10:00: a run at exactly 10:00 shows it not yet overdue, and a run at 15:00 the
    same day with nothing new shows it overdue."""
    dep = deployed(tmp_path)
    dep.run("2026-11-21 10:00")
    assert str(dep.sheet()[0]["Triage due"])[:16] == "2026-11-21 10:00"
    assert not dep.sheet()[0]["Overdue"]
    dep.run("2026-11-21 15:00")
    assert dep.sheet()[0]["Overdue"] == "overdue"
