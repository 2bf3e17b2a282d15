"""A thousand rows of real-world exports (tests/fakes/hostile.py) through `nearmiss run`:
every run completes with exit 0, every row is stored, every bad value marks its own report
with its reason, and the tracker is written."""

from __future__ import annotations

from collections import Counter

import yaml
from openpyxl import load_workbook
from sqlalchemy import func, select

from connectors.store import Store, raw_responses, reports
from tests.fakes.deployment import Deployment
from tests.fakes.hostile import write_corpus
from tests.jobs.test_cli import nearmiss


def test_a_hostile_corpus_is_stored_marked_and_tracked(tmp_path):
    corpus = write_corpus(tmp_path / "exports")
    dep = Deployment(tmp_path)
    dep.data["sources"] = corpus.sources
    dep.data["mail"]["max_per_run"] = 5000  # all owed in the first run: the second is idle
    dep.data["mail"]["hold_requests"] = None  # bad values by design: asked
    # the governance figures and charts are drawn from the same hostile reports
    dep.data["governance"] = {"weekly_review": {"to": ["registered_manager"]},
                              "summary_sheet": True}
    config = tmp_path / "nearmiss.yaml"
    config.write_text(yaml.safe_dump(dep.data, sort_keys=False))

    done = nearmiss("--config", str(config), "run", "--now", "2026-11-27T09:00Z", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "a\x00b" not in done.stdout + done.stderr
    assert "warning: google-bom: line" in done.stdout  # quarantined lines are named
    assert list((tmp_path / "outbox").glob("review_*.eml"))
    assert "Summary" in load_workbook(tmp_path / "tracker.xlsx", read_only=True).sheetnames

    store = Store.open(tmp_path / "nearmiss.db")
    with store.engine.connect() as conn:
        stored = Counter(dict(conn.execute(
            select(raw_responses.c.source, func.count(func.distinct(raw_responses.c.response_id)))
            .group_by(raw_responses.c.source)).all()))
        data = [d for (d,) in conn.execute(select(reports.c.data))]
        raw = [p for (p,) in conn.execute(select(raw_responses.c.payload))]
    assert stored == Counter(corpus.rows)  # every row, each its own response

    by_token = {d["description"].split()[0]: d for d in data if d.get("description")}
    quarantined = [p["raw_text"] for p in raw if p.get("quarantined")]
    for expect in corpus.expect:
        if expect.quarantined:
            assert any(expect.token in text for text in quarantined), expect.token
            continue
        report = by_token[expect.token]
        problems = " | ".join(report["problems"])
        for mark in expect.marks:
            assert mark in problems, (expect.token, mark, problems)
        for field, value in expect.fields.items():
            assert report[field] == value, (expect.token, field)
            assert field not in report["invalid_fields"]

    wb = load_workbook(tmp_path / "tracker.xlsx", read_only=True)
    listed = {row[0] for row in wb["Reports"].iter_rows(min_row=2, values_only=True)}
    held = {row[0]: row[3] for row in wb["Data quality"].iter_rows(min_row=2, values_only=True)
            if row[3] == "Held"}
    assert len(listed) + len(held) == len(data)
    assert len(held) == sum(e.quarantined for e in corpus.expect)

    again = nearmiss("--config", str(config), "run", "--now", "2026-11-27T09:15Z", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 edited" in again.stdout and "0 cells updated" in again.stdout
