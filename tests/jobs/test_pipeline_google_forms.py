"""The whole loop with a Google Form read through the Forms API (the local fake), the
tracker and outbox as local files: form drift is named and holds only the reports that
answer the changed questions; injected quota and server errors lose and duplicate nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import KEY_ENV, write_service_account_key
from tests.fakes.google_deployment import SOURCE, GoogleDeployment, qid


@pytest.fixture
def dep(tmp_path, monkeypatch) -> Iterator[GoogleDeployment]:
    monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
        tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
    with GoogleFakeServer(seed=21) as server:
        yield GoogleDeployment(tmp_path, server)
        server.assert_no_violations()


def test_form_drift_is_named_and_holds_only_the_reports_that_answer_it(dep):
    dep.add("2026-11-16 10:00")
    dep.add("2026-11-17 11:00", service="Riverside Supported Living")
    first = dep.run()
    assert (first.new_responses, first.reports, first.held) == (2, 2, 0)
    assert first.unmapped == []

    nearby = dep.server.forms.add_question(dep.form_id, "Was anyone else nearby?", "radio",
                                           options=["Yes", "No"], question_id="q-nearby")
    dep.server.forms.rename_question(dep.form_id, qid("shift"), "Which shift were you on?")
    dep.add("2026-11-18 09:00", extra={nearby: "No"}, shift=None)  # answers the new question
    dep.add("2026-11-19 09:00")  # answers the renamed question under its new title
    dep.add("2026-11-20 09:00", shift=None)  # answers neither
    second = dep.run()

    assert (second.new_responses, second.reports, second.held) == (3, 5, 2)
    assert sorted(second.unmapped) == [
        f"{SOURCE}: 'Was anyone else nearby? (q-nearby)' (1 responses)",
        f"{SOURCE}: 'Which shift were you on? (q-shift)' (1 responses)"]
    drift = {(e["event"], e["reason"]) for e in dep.store.audit_trail(SOURCE)}
    assert ("question added", "'Was anyone else nearby?'") in drift
    assert ("question renamed", "'Which shift?' -> 'Which shift were you on?'") in drift
    reports = dep.sheet()
    # The old reports were given under the old title: the rename does not unmap them.
    assert set(reports) == {"NM-000001", "NM-000002", "NM-000005"}
    assert reports["NM-000001"]["Shift"] == "Late (2pm-10pm)"
    quality = dep.sheet("Data quality")
    assert quality["NM-000003"]["Status"] == quality["NM-000004"]["Status"] == "Held"

    dep.data["mapping"]["Which shift were you on?"] = "shift"
    dep.data["sources"][0]["mapping"] = {"q-nearby": "ignore"}  # by id: survives renames
    third = dep.run()
    assert (third.new_responses, third.held, third.unmapped) == (0, 0, [])
    reports = dep.sheet()
    assert set(reports) == {f"NM-00000{i}" for i in range(1, 6)}
    assert reports["NM-000004"]["Shift"] == "Late (2pm-10pm)"


def test_quota_and_server_errors_lose_and_duplicate_nothing(dep):
    dep.server.faults.set_rate(0.3, statuses=(429, 500, 503), seed=7, only="forms")
    made = [dep.add(f"2026-11-{16 + i // 8} {9 + i % 8}:00") for i in range(16)]
    dep.run("2026-11-20 18:00")
    made += [dep.add(f"2026-11-20 {h}:00") for h in (19, 20, 21)]
    dep.run("2026-11-20 22:00")  # the same day: an incremental read
    assert len(dep.server.faults.injected) >= 2
    latest = dep.store.latest_responses()
    assert sorted(latest["response_id"]) == sorted(made)
    assert (latest["version"] == 1).all()  # every response stored exactly once
    assert len(dep.sheet()) == len(made)
    lists = [r for r in dep.server.requests if r.method_id == "forms.forms.responses.list"]
    assert lists[-1].param("filter") == "timestamp >= 2026-11-17T15:50:00.000000000Z"


def test_an_edit_to_an_old_response_is_found_by_the_daily_full_read(tmp_path, monkeypatch):
    # If the API filters on creation time, an incremental read never sees this edit.
    monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
        tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
    with GoogleFakeServer(seed=3, filter_on="createTime") as server:
        dep = GoogleDeployment(tmp_path, server)
        old = dep.add("2026-11-01 10:00")
        dep.add("2026-11-20 10:00")
        dep.run("2026-11-20 18:00")
        server.forms.edit_response(dep.form_id, old, {qid("description"): "Edited later"},
                                   at=pd.Timestamp("2026-11-20 19:00", tz="UTC"))
        same_day = dep.run("2026-11-20 20:00")
        assert same_day.new_versions == 0  # the incremental read cannot see it
        filters = [r.param("filter") for r in server.requests
                   if r.method_id == "forms.forms.responses.list"]
        assert filters[0] is None and filters[1].startswith("timestamp >= ")
        next_day = dep.run("2026-11-21 07:00")
        assert next_day.new_versions == 1
        assert dep.sheet()["NM-000001"]["What happened"] == "Edited later"
        server.assert_no_violations()
