"""A great-expectations check that errors instead of running never lets a report pass as
complete: the check raises, and a run stops loudly before anything is marked complete."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from checks import quality
from checks.quality import check_reports
from connectors.store import Store, runs
from jobs.cli import main
from tests.checks.test_quality import NOW, frame, report
from tests.fakes.deployment import Deployment

BROKEN = "__given__medication_name"  # the column of "medication name: required ..."


@pytest.fixture
def broken_check(monkeypatch) -> None:
    """The batch great-expectations validates lacks the column one expectation reads: GX
    catches the error inside that expectation and reports it in the result, raising
    nothing; the rest of the checks work on the whole check frame."""
    real = quality._validate

    def validate_without_column(frame, *args):
        return real(frame.drop(columns=[BROKEN]), *args)

    monkeypatch.setattr(quality, "_validate", validate_without_column)


def test_an_expectation_that_errors_raises_instead_of_passing(rules, broken_check):
    """The report would otherwise be complete: the check says which expectation failed to
    run, and returns no verdict."""
    with pytest.raises(RuntimeError, match=re.escape(
            "data-quality check failed to run: medication name: required when category is "
            "medication (medication):")) as failed:
        check_reports(frame(rules, report()), rules, NOW)
    assert BROKEN in str(failed.value)


def test_a_run_whose_check_errors_fails_loudly_and_marks_nothing_complete(
        tmp_path, capsys, broken_check):
    """`nearmiss run`: exit 1 with one line, the response kept, the run recorded as crashed;
    no decision stored, no tracker row and no acknowledgement for the report."""
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    code = main(["--config", str(dep.config().path), "run", "--now", "2026-11-23T09:00Z"])
    assert code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"nearmiss: internal error: RuntimeError in checks/quality\.py:\d+ "
                        r"\(run with --verbose for details\)", line), line
    store = Store.open(tmp_path / "nearmiss.db")
    assert store.report_count() == 1
    assert store.decisions() == {}
    assert store.outbox_keys() == set()
    assert not dep.tracker_path.exists()
    with store.engine.connect() as conn:
        assert conn.execute(select(runs.c.status)).scalars().all() == ["crashed"]
