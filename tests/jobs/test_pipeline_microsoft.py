"""The whole loop on Microsoft 365: the Forms response workbook, the Excel tracker and
Exchange Online, all through Graph (office365 and msal over real HTTP) against the fakes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from jobs.pipeline import RunFailed, RunSummary
from tests.fakes.http import DROP, LOST
from tests.fakes.microsoft import MicrosoftFakeServer
from tests.fakes.microsoft_deployment import NOW, MicrosoftDeployment

SERVICES = ["Oak House", "Riverside Supported Living", "Northgate Home Care",
            "Elm Court Day Service", "Community Outreach East"]


def fill(dep: MicrosoftDeployment, n: int) -> None:
    for i in range(n):
        day, minute = 2 + i % 20, i % 600
        dep.add(f"2026-11-{day:02d} {8 + minute // 60}:{minute % 60:02d}",
                service=SERVICES[i % len(SERVICES)], person_ref=f"P-{i:04d}",
                contributing_factors=["Handover"][: i % 2])


def graph_requests(server: MicrosoftFakeServer) -> Counter:
    """HTTP requests to Graph (a $batch is one, whatever it holds)."""
    return Counter(r.method_id for r in server.requests
                   if r.api == "graph" and r.header("Host"))  # $batch parts have none


def token_requests(server: MicrosoftFakeServer) -> int:
    return sum(r.method_id == "identity.token" for r in server.requests)


@pytest.fixture
def m365(tmp_path) -> Iterator[MicrosoftDeployment]:
    with MicrosoftFakeServer(seed=5) as server:
        yield MicrosoftDeployment(tmp_path, server)
        server.assert_no_violations()


def test_500_reports_and_20_manager_edits_cost_a_bounded_number_of_requests(m365):
    dep, server = m365, m365.server
    fill(dep, 500)
    first: RunSummary = dep.run(NOW)
    assert first.reports == 500 and not first.failures and first.emails_sent > 0
    counts = graph_requests(server)
    print(f"\nfirst run, 500 reports: {sum(counts.values())} Graph requests "
          f"{dict(counts)}, {token_requests(server)} token request(s)")
    # Rows cost nothing extra; each new sheet's columns cost one format request per run of
    # like columns (widths and wraps: about 80 for a first run's five sheets, 4 $batch).
    assert sum(counts.values()) - counts["graph.sendMail"] <= 18
    assert counts["graph.sendMail"] == first.emails_sent  # one per message
    assert len(server.graph.sent) == first.emails_sent

    server.requests.clear()
    steady = dep.run("2026-11-23 09:05")
    counts = graph_requests(server)
    print(f"steady run, nothing new: {sum(counts.values())} Graph requests {dict(counts)}, "
          f"{token_requests(server)} token request(s)")
    assert steady.reports == 500 and steady.tracker_cells == 0
    assert sum(counts.values()) <= 3 and token_requests(server) <= 1

    for i in range(1, 21):
        dep.type_into(f"NM-{i:06d}", **{"Triage status": "Triaged",
                                        "Just-culture classification": "Human error"})
    server.requests.clear()
    edited = dep.run("2026-11-23 09:15")
    counts = graph_requests(server)
    print(f"run after 20 manager edits: {sum(counts.values())} Graph requests {dict(counts)}")
    assert edited.manager_changes == 40 and edited.new_responses == 0
    assert sum(counts.values()) <= 10
    records = dep.records()
    assert len(records) == 500
    assert records["NM-000007"]["Triage status"] == "Triaged"
    assert records["NM-000007"]["Suggested response"] == "System redesign and coaching"


def test_30_percent_faults_end_in_the_clean_final_state(tmp_path):
    """Throttling, server errors, dropped connections and answers lost after Graph applied
    the request: a scheduled job ends where a clean one does."""
    states = []
    for faulty in (False, True):
        folder = tmp_path / ("faulty" if faulty else "clean")
        folder.mkdir()
        with MicrosoftFakeServer(seed=5) as server:
            dep = MicrosoftDeployment(folder, server)
            fill(dep, 60)
            if faulty:
                server.faults.set_rate(0.3, statuses=(429, 503, 504, DROP, LOST), seed=11)
            runs = 0
            for _ in range(4):  # whatever failed is picked up by the next run
                runs += 1
                try:
                    dep.run(NOW)
                    break
                except RunFailed:
                    continue
            server.faults.set_rate(0.0)
            dep.run(NOW)  # and one more, which must change nothing
            if faulty:
                assert len(server.faults.injected) > 20
                print(f"\n{len(server.faults.injected)} faults injected, {runs} run(s)")
            tracker, emails = dep.final_state()
            ids = [r[0] for r in tracker["Reports"][1:]]
            assert len(ids) == len(set(ids)) == 60  # no report lost, no duplicate row
            states.append((tracker, set(emails)))
            server.assert_no_violations()
    assert states[0] == states[1]
