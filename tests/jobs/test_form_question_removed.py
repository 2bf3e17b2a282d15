"""A question removed from a Google Form: its column disappears from the responses export.
The run names it, once, and no report is lost."""

from __future__ import annotations

import pandas as pd
import pytest

from connectors.store import Store
from jobs.cli import main
from tests.fakes.deployment import Deployment, Q

REMOVED = Q["staff_involved"]  # "Which staff were involved?"


@pytest.fixture
def dep(tmp_path) -> Deployment:
    """Two reports read, then the question removed from the form and the export downloaded
    again without its column."""
    d = Deployment(tmp_path)
    d.add_google("2026-11-20 10:00")
    d.add_google("2026-11-21 10:00", email="jo@example.org", description="Second one")
    d.run()
    export = tmp_path / "exports" / "near-miss-google-form.csv"
    rows = pd.read_csv(export, dtype=str, keep_default_na=False)
    rows.drop(columns=[REMOVED]).to_csv(export, index=False)
    return d


def store_of(dep: Deployment) -> Store:
    return Store.open(dep.folder / "nearmiss.db")


def test_a_removed_question_is_named_once_in_the_audit_and_no_report_is_lost(dep):
    """The run after the question went audits "question removed" with its title, once; both
    reports stay, with the answer given before still stored."""
    second = dep.run("2026-11-23 10:00")
    dep.run("2026-11-23 11:00")
    store = store_of(dep)
    removed = [(e["run_id"], e["entity_id"], e["reason"]) for e in store.audit_trail()
               if e["event"] == "question removed"]
    assert removed == [(second.run_id, "google-form", repr(REMOVED))]
    assert store.report_count() == 2
    assert [r["Report ID"] for r in dep.sheet()] == ["NM-000001", "NM-000002"]
    for response_id in store.latest_responses()["response_id"]:
        versions = store.raw_versions("google-form", response_id)
        assert versions[0]["payload"]["answers"][REMOVED] == "JT, AB"


def test_a_removed_question_is_named_in_the_runs_output(dep, capsys):
    """`nearmiss run` prints the removed question's title."""
    capsys.readouterr()
    assert main(["--config", str(dep.folder / "nearmiss.yaml"), "run",
                 "--now", "2026-11-23T10:00Z"]) == 0
    out = capsys.readouterr()
    assert REMOVED in out.out + out.err


def test_reports_keep_the_answer_they_gave_to_a_removed_question(dep):
    """Reports complete before the question went stay complete, and nobody is asked for it."""
    summary = dep.run("2026-11-23 10:00")
    assert summary.incomplete == 0
    assert {r["Data quality"] for r in dep.sheet()} == {"Complete"}
    assert not [p.name for p in dep.emails() if p.name.startswith("missing_")]
