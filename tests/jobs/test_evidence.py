"""`nearmiss evidence`: a pack holds exactly the reports and audit events of its range,
and person-served references only when asked for."""

from __future__ import annotations

import re

import pandas as pd
from openpyxl import load_workbook

from connectors.store import Store
from jobs.cli import main
from tests.fakes.deployment import Deployment


def test_the_pack_holds_exactly_the_range(tmp_path, capsys):
    dep = Deployment(tmp_path)
    # Reports submitted in October and November; runs (and their audit events) in both.
    dep.add_google("2026-09-30 23:30", person_ref="OH-014", service="Oak House")  # 00:30 BST
    dep.add_google("2026-10-05 10:00", person_ref="RS-201")
    dep.run("2026-10-31 12:00")
    dep.add_google("2026-11-01 00:30", person_ref="NG-777")  # GMT again: November
    dep.run("2026-11-23 09:00")
    config = str(dep.config().path)
    assert main(["--config", config, "evidence", "--from", "2026-10-01", "--to",
                 "2026-10-31"]) == 0
    out = capsys.readouterr().out
    book_path = tmp_path / "evidence" / "evidence-2026-10-01-to-2026-10-31.xlsx"
    assert f"wrote {book_path}" in out or "wrote evidence/" in out
    book = load_workbook(book_path)
    assert book.sheetnames == ["Figures", "Reports", "Escalations", "Patterns", "Actions",
                               "Audit trail"]
    reports = [r[0] for r in book["Reports"].iter_rows(min_row=2, values_only=True)]
    assert reports == ["NM-000001", "NM-000002"]  # local days: not 00:30 on 1 November
    audit = list(book["Audit trail"].iter_rows(min_row=2, values_only=True))
    assert audit and {a[0][:10] for a in audit} == {"2026-10-31"}  # the October run's only
    store = Store.open(tmp_path / "nearmiss.db")
    at = pd.Series([e["at"] for e in store.audit_trail()])
    assert len(audit) == int(((at >= "2026-10-01") & (at < "2026-11-01")).sum())
    everything = " ".join(str(c) for ws in book for row in ws.iter_rows(values_only=True)
                          for c in row if c is not None)
    assert "OH-014" not in everything and "Person ref" not in everything
    html = (tmp_path / "evidence" / "evidence-2026-10-01-to-2026-10-31.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 1
    assert "Person-served references are left out" in html
    assert re.search(r"Reports submitted</td><td[^>]*><strong>2</strong>", html)

    assert main(["--config", config, "evidence", "--from", "2026-10-01", "--to", "2026-11-30",
                 "--with-person-refs", "--out", str(tmp_path / "full")]) == 0
    book = load_workbook(tmp_path / "full" / "evidence-2026-10-01-to-2026-11-30.xlsx")
    rows = list(book["Reports"].iter_rows(values_only=True))
    refs = [r[rows[0].index("Person ref")] for r in rows[1:]]
    assert refs == ["OH-014", "RS-201", "NG-777"]


def test_a_range_backwards_is_refused_in_one_line(tmp_path, capsys):
    dep = Deployment(tmp_path)
    assert main(["--config", str(dep.config().path), "evidence", "--from", "2026-11-01",
                 "--to", "2026-10-01"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is before --from 2026-11-01" in err[0]
