"""The whole loop on Google Workspace: the Forms API source, the Google Sheets tracker and
Gmail, all against the local fakes over real HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from jobs.pipeline import RunFailed, RunSummary
from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import KEY_ENV, write_service_account_key
from tests.fakes.google_deployment import NOW, WorkspaceDeployment

SERVICES = ["Oak House", "Riverside Supported Living", "Northgate Home Care",
            "Elm Court Day Service", "Community Outreach East"]


def deployment(tmp_path, monkeypatch, server: GoogleFakeServer) -> WorkspaceDeployment:
    monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
        tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
    return WorkspaceDeployment(tmp_path, server)


def fill(dep: WorkspaceDeployment, n: int) -> None:
    for i in range(n):
        day, minute = 2 + i % 20, i % 600
        dep.add(f"2026-11-{day:02d} {8 + minute // 60}:{minute % 60:02d}",
                service=SERVICES[i % len(SERVICES)],
                person_ref=f"P-{i:04d}", contributing_factors=["Handover"][: i % 2])


def sheets_requests(server: GoogleFakeServer) -> Counter:
    return Counter(r.method_id for r in server.requests if r.api == "sheets")


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Iterator[WorkspaceDeployment]:
    with GoogleFakeServer(seed=5) as server:
        yield deployment(tmp_path, monkeypatch, server)
        server.assert_no_violations()


def test_500_reports_and_20_manager_edits_cost_a_bounded_number_of_requests(workspace):
    dep, server = workspace, workspace.server
    fill(dep, 500)
    first: RunSummary = dep.run(NOW)
    assert first.reports == 500 and not first.failures
    first_sheets = sheets_requests(server)
    print(f"\nfirst run, 500 reports: Sheets requests {dict(first_sheets)}")
    assert sum(first_sheets.values()) <= 4

    for i in range(1, 21):
        dep.type_into(f"NM-{i:06d}", **{"Triage status": "Triaged",
                                        "Just-culture classification": "Human error"})
    server.requests.clear()
    steady = dep.run("2026-11-23 09:15")
    assert steady.manager_changes == 40 and steady.new_responses == 0
    steady_sheets = sheets_requests(server)
    print(f"steady run, 20 manager edits: Sheets requests {dict(steady_sheets)}")
    assert sum(steady_sheets.values()) <= 4
    lists = [r for r in server.requests if r.method_id == "forms.forms.responses.list"]
    assert len(lists) == 1 and lists[0].param("filter")  # one page, incremental
    records = dep.records()
    assert len(records) == 500
    assert records["NM-000007"]["Suggested response"] == "System redesign and coaching"
    assert records["NM-000007"]["Triage status"] == "Triaged"


def test_30_percent_quota_and_server_errors_end_in_the_clean_final_state(tmp_path,
                                                                         monkeypatch):
    states = []
    for faulty in (False, True):
        folder = tmp_path / ("faulty" if faulty else "clean")
        folder.mkdir()
        with GoogleFakeServer(seed=5) as server:
            dep = deployment(folder, monkeypatch, server)
            fill(dep, 60)
            if faulty:
                server.faults.set_rate(0.3, statuses=(429, 500), seed=11)
            runs = 0
            for _ in range(3):  # a scheduled job: whatever failed is picked up next time
                runs += 1
                try:
                    dep.run(NOW)
                    break
                except RunFailed:
                    continue
            server.faults.set_rate(0.0)
            dep.run(NOW)  # and one more, which must change nothing
            if faulty:
                assert len(server.faults.injected) > 50
                print(f"\n{len(server.faults.injected)} faults injected, {runs} run(s)")
            tracker, emails = dep.final_state()
            ids = [r[0] for r in tracker["Reports"][1:]]
            assert len(ids) == len(set(ids)) == 60  # no report lost, no duplicate row
            assert set(emails.values()) == {1}  # no email twice
            states.append((tracker, emails))
            server.assert_no_violations()
    assert states[0] == states[1]
