"""Governance end to end: the weekly review and the board summary go once per period,
late runs catch up, their charts travel inline, and the Summary sheet's native charts
read the right cells (XLSX and Google Sheets)."""

from __future__ import annotations

import email
import io
import re
import zipfile
from collections import Counter
from email import policy

import pandas as pd
import pytest
from PIL import Image

from tests.fakes.deployment import Deployment

SERVICES = ["Oak House", "Riverside Supported Living", "Northgate Home Care"]
GOVERNANCE = {"weekly_review": {"to": ["registered_manager", "board@oakfield.example"],
                                "day": "monday", "hour": 8},
              "board_summary": {"to": ["registered_manager"], "day": 1, "hour": 8},
              "summary_sheet": True}


def history(dep: Deployment, weeks: int = 6) -> None:
    """Three or four complete reports a week from Monday 12 October, in daytime."""
    for week in range(weeks):
        for i in range(3 + week % 2):
            at = pd.Timestamp("2026-10-12 10:00", tz="UTC") + pd.Timedelta(days=7 * week + i)
            dep.add_google(at, service=SERVICES[i % 3],
                           occurred_at=(at - pd.Timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))


def sent(dep: Deployment) -> Counter:
    keys = Counter()
    for path in dep.emails():
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        keys[str(message["X-Nearmiss-Key"])] += 1
    return keys


def governance_keys(dep: Deployment) -> dict[str, int]:
    return {k: n for k, n in sent(dep).items() if k.startswith(("review:", "board:"))}


@pytest.fixture
def dep(tmp_path) -> Deployment:
    made = Deployment(tmp_path, governance=GOVERNANCE)
    history(made)
    return made


def test_each_period_is_sent_once_across_repeated_and_late_runs(dep):
    dep.run("2026-11-23 07:00")  # before Monday's slot: last week's review is still owed
    assert governance_keys(dep) == {"review:2026-W46": 1, "board:2026-10": 1}
    dep.run("2026-11-23 08:01")  # nothing new, but the slot has come: not a steady run
    assert governance_keys(dep) == {"review:2026-W46": 1, "review:2026-W47": 1,
                                    "board:2026-10": 1}
    for now in ("2026-11-24 10:00", "2026-11-30 07:00"):
        dep.run(now)
    dep.run("2026-12-02 15:00")  # the job was down on Monday and on the 1st: caught up
    assert governance_keys(dep) == {"review:2026-W46": 1, "review:2026-W47": 1,
                                    "review:2026-W48": 1, "board:2026-10": 1,
                                    "board:2026-11": 1}


def test_a_review_shows_its_charts_inline_and_reads_as_plain_text(dep):
    dep.run("2026-11-23 09:00")
    path = next(p for p in dep.emails() if "review" in p.name)
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "board@oakfield.example, registered.manager@oakfield-care.example"
    assert message["Subject"] == "Weekly operational review, 2026-W47: 4 near misses"
    html = message.get_body(preferencelist=("html",)).get_content()
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert cids and sorted(cids) == sorted(p["Content-ID"].strip("<>") for p in images)
    for part in images:
        picture = Image.open(io.BytesIO(part.get_payload(decode=True)))
        assert picture.size == (720, 360)
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
        background = max(colours)[0]
        assert sum(n for n, _ in colours) - background > 0.02 * 720 * 360  # not blank
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "16 November to 22 November 2026" in text
    assert "  - Reports submitted: 4\n" in text
    assert "\n\nBy service:\n  - Northgate Home Care: 1 reported;" in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_the_summary_sheet_charts_read_its_category_and_week_tables(dep):
    dep.run("2026-11-23 09:00")
    rows = dep.sheet_values()["Summary"]
    with zipfile.ZipFile(dep.tracker_path) as book:
        charts = [re.findall(r"<(?:c:)?f>'Summary'!([^<]+)</(?:c:)?f>", book.read(n).decode())
                  for n in sorted(book.namelist()) if n.startswith("xl/charts/chart")]
    tables = {}
    for name, labels, values in charts:  # the series' name, its categories, its values
        header = int(name.lstrip("$ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        first, last = (int(n) for n in re.findall(r"\$(\d+)", labels))
        assert (first, last) == tuple(int(n) for n in re.findall(r"\$(\d+)", values))
        assert first == header + 1 and rows[header - 1][:2] == (rows[header - 1][0], "Reports")
        assert all(r[0] not in (None, "") for r in rows[first - 1:last])  # every label
        assert last == len(rows) or rows[last][0] in (None, "")  # and nothing more
        tables[rows[header - 1][0]] = [r[0] for r in rows[first - 1:last]]
    assert set(tables) == {"Category", "Week"}
    assert tables["Category"][:2] == ["Medication", "Transport"]
    assert tables["Week"][-1] == "2026-W48" and len(tables["Week"]) == 8
    before = dep.tracker_path.read_bytes()
    dep.run("2026-11-23 09:05")  # nothing changed: no cell written, no save
    assert dep.tracker_path.read_bytes() == before


def test_on_google_sheets_the_summary_charts_are_added_once_and_valid(tmp_path, monkeypatch):
    from tests.fakes.google import GoogleFakeServer
    from tests.jobs.test_pipeline_google import deployment, fill

    with GoogleFakeServer(seed=5) as server:
        workspace = deployment(tmp_path, monkeypatch, server)
        workspace.data["governance"] = {"summary_sheet": True}
        fill(workspace, 30)
        workspace.run("2026-11-23 09:00")
        workspace.run("2026-11-23 10:00")  # the next run updates cells, adds no chart
        book = server.sheets.spreadsheets[workspace.sheet_id]
        summary = next(s for s in book.sheets if s.title == "Summary")
        rows = workspace.rows("Summary")
        assert len(summary.charts) == 2
        for chart in summary.charts:
            basic = chart["spec"]["basicChart"]
            (domain,) = basic["domains"][0]["domain"]["sourceRange"]["sources"]
            (series,) = basic["series"][0]["series"]["sourceRange"]["sources"]
            header = rows[domain["startRowIndex"]]
            assert header[:2] == [header[0], "Reports"] and header[0] in ("Category", "Week")
            assert (domain["startRowIndex"], domain["endRowIndex"]) == (
                series["startRowIndex"], series["endRowIndex"])
            assert all(r and r[0] for r in rows[domain["startRowIndex"]:domain["endRowIndex"]])
        server.assert_no_violations()  # every addChart as the discovery document allows
