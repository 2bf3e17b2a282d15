"""nearmiss init on a provider's own form: other question titles, other option labels, US
dates. The starter config, once a person settles the lines marked DECIDE, passes check,
and a run marks no report incomplete or invalid because of a label."""

import csv
import re
from pathlib import Path

import pytest

from connectors.store import Store
from jobs.cli import main

# The provider's own wording, and a person's decisions on what init was unsure of.
HEADER = ["Timestamp", "Email Address", "Type of near miss", "Describe what happened",
          "What did you do immediately?", "Which home or service?", "Type of setting",
          "Date and time of the near miss", "Shift", "Resident initials",
          "How serious could it have been?", "What made it possible?", "Contributing factors",
          "Stage of work affected", "Staff involved"]
OPTIONS = {
    "Type of near miss": ["Medicines", "Travel / transport", "Workflow / scheduling"],
    "Type of setting": ["Residential home", "Supported living flat", "Community outing"],
    "Shift": ["Days (08:00-20:00)", "Nights (20:00-08:00)"],
    "How serious could it have been?": ["1 - Minor", "2 - Moderate", "3 - Serious"],
    "Contributing factors": ["Handover", "Staff shortage", "Time pressure"],
    "Stage of work affected": ["Planning / scheduling", "Giving support", "Recording"],
}
DECISIONS = {  # text -> what a person writes (a field, a value, or null)
    "What did you do immediately?": "immediate_action",
    "Stage of work affected": "workflow_stage",
    "Medicines": "medication", "Travel / transport": "transport",
    "Supported living flat": "supported_living",
    "Days (08:00-20:00)": "early", "Nights (20:00-08:00)": "night",
    "1 - Minor": "low", "2 - Moderate": "moderate", "3 - Serious": "severe",
    "Staff shortage": "staffing", "Giving support": "delivery",
}


def write_export(path: Path, n: int = 24) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(n):
            day = 2 + i  # November: M/D/YYYY, days past 12 settle the order
            row = {"Timestamp": f"11/{day}/2026 {9 + i % 8}:15:00",
                   "Email Address": f"carer{i}@example.org",
                   "Describe what happened": f"Near miss {i}: caught before harm",
                   "What did you do immediately?": "Stopped and checked with the nurse",
                   "Which home or service?": ["Oak House", "Elm Court"][i % 2],
                   "Date and time of the near miss": f"11/{day}/2026 {1 + i % 8}:05 AM",
                   "Resident initials": f"R{i:02d}",
                   "What made it possible?": "Two charts for one person",
                   "Staff involved": "Two carers"}
            for title, options in OPTIONS.items():
                row[title] = options[i % len(options)]
            row["Contributing factors"] = ", ".join(OPTIONS["Contributing factors"][:1 + i % 3])
            out.writerow([row[h] for h in HEADER])


def decide(text: str) -> str:
    """A person's pass over the starter config: every DECIDE line settled."""
    def settle(m: re.Match[str]) -> str:
        indent, quoted = m.group(1), m.group(2)
        return f"{indent}{quoted}: {DECISIONS[quoted.strip(chr(34))]}"
    settled = re.sub(r"^(\s*)# DECIDE (\"[^\"]+\"): .*$", settle, text, flags=re.M)
    assert "# DECIDE \"" not in settled
    return settled


def test_init_maps_a_providers_own_form_and_its_labels(tmp_path, capsys):
    (tmp_path / "exports").mkdir()
    export = tmp_path / "exports" / "our-form.csv"
    write_export(export)
    out = tmp_path / "nearmiss.yaml"
    assert main(["init", "--from", str(export), "--out", str(out),
                 "--timezone", "America/New_York", "--provider", "Maple Care"]) == 0
    said = capsys.readouterr().out
    assert "13 questions (" in said and "line(s) marked DECIDE need a person" in said
    assert "\"Residential home\":" not in out.read_text()  # the taxonomy reads it as is
    text = out.read_text()
    assert "dayfirst: false" in text  # 11/13/2026 cannot be day-first
    assert '"Type of near miss": category' in text
    assert '"Date and time of the near miss": occurred_at' in text
    assert '# DECIDE "3 - Serious": severe' in text  # a guess, left to a person
    assert main(["init", "--from", str(export), "--out", str(out)]) == 1  # never overwrites
    assert "exists" in capsys.readouterr().err

    out.write_text(decide(text))
    assert main(["check", "--config", str(out)]) == 0
    assert "data:" not in capsys.readouterr().out  # every answer is read once decided
    assert main(["preview", "--config", str(out), "--now", "2026-11-27T15:00Z"]) == 0
    shown = capsys.readouterr().out
    assert "reports: 24 (0 complete, 24 incomplete, 0 held)" in shown  # category sets
    assert "pathways: Operational fix 16, Medication safety review 8" in shown
    would = int(shown.split("emails that would go out: ")[1].split()[0])
    assert main(["run", "--config", str(out), "--now", "2026-11-27T15:00Z"]) == 0
    assert f"{would} emails queued, {would} sent" in capsys.readouterr().out
    store = Store.open(tmp_path / "nearmiss.db")
    decisions = store.decisions()
    store.close()
    assert len(decisions) == 24
    minimum = {"category", "description", "immediate_action", "service", "setting",
               "occurred_at", "shift", "person_ref", "potential_harm", "conditions",
               "contributing_factors", "workflow_stage", "staff_involved"}
    for d in decisions.values():
        assert d["invalid"] == [] and not minimum & set(d["missing"]), d


@pytest.mark.parametrize("name", ["notes.txt", "form.ods"])
def test_init_refuses_what_is_not_a_form_export(tmp_path, capsys, name):
    (tmp_path / name).write_text("x")
    assert main(["init", "--from", str(tmp_path / name), "--out",
                 str(tmp_path / "n.yaml")]) == 1
    assert "not a form export" in capsys.readouterr().err


def test_init_from_a_live_google_form_maps_its_questions_and_options(tmp_path, capsys):
    """The demo form's questions, read through the Forms API fake: every one mapped with
    full confidence; options the taxonomy reads need no map, others are guessed."""
    import argparse

    from jobs.cli import cmd_init
    from tests.fakes.deployment import Q
    from tests.fakes.google import GoogleFakeServer, QuestionSpec
    from tests.fakes.google_credentials import fake_clients

    with GoogleFakeServer(seed=3) as server:
        specs = [QuestionSpec(title, "radio" if field == "potential_harm" else "text",
                              options=["Low", "Moderate", "3 - Serious"]
                              if field == "potential_harm" else (),
                              question_id=f"q{i}") for i, (field, title) in enumerate(Q.items())]
        form_id = server.forms.create_form("Near-miss report", specs)
        out = tmp_path / "nearmiss.yaml"
        args = argparse.Namespace(export=None, google_form=form_id, out=out, force=False,
                                  timezone="Europe/London", provider="Oakfield Care")
        assert cmd_init(args, google=fake_clients(server)) == 0
    text = out.read_text()
    assert f'form_id: "{form_id}"' in text and "kind: google_forms_api" in text
    assert "# DECIDE \"" in text and text.count("# DECIDE \"") == 1
    assert '# DECIDE "3 - Serious": severe' in text and '"Low":' not in text
    assert all(f'{field}    # 1.00' in text for field in ("category", "occurred_at"))
    assert f"{len(Q)} questions ({len(Q)} mapped)" in capsys.readouterr().out
    out.write_text(text.replace('# DECIDE "3 - Serious": severe', '"3 - Serious": severe'))
    assert main(["check", "--config", str(out)]) == 0


def test_forms_create_makes_the_standard_form_and_init_reads_it_back(tmp_path, capsys):
    """Against the Forms fake (every request validated against the discovery document):
    the created form, read back through init --google-form, maps every question with full
    confidence and needs no value map."""
    import argparse

    from config.settings import load_rules
    from jobs.cli import cmd_forms, cmd_init
    from tests.fakes.google import GoogleFakeServer
    from tests.fakes.google_credentials import fake_clients

    rules = load_rules()
    with GoogleFakeServer(seed=4) as server:
        clients = fake_clients(server)
        assert cmd_forms(argparse.Namespace(title="Near-miss report",
                                            config=tmp_path / "none.yaml"), google=clients) == 0
        said = capsys.readouterr().out
        form_id = said.split("created the form ")[1].split()[0]
        assert f"({len(rules.fields)} questions), not shared" in said
        assert f"form_id: {form_id}" in said
        sent = [r.method_id for r in server.requests if r.api == "forms"]
        assert sent == ["forms.forms.create", "forms.forms.batchUpdate"]
        server.assert_no_violations()
        out = tmp_path / "nearmiss.yaml"
        assert cmd_init(argparse.Namespace(export=None, google_form=form_id, out=out,
                                           force=False, timezone="Europe/London",
                                           provider="Oakfield Care"), google=clients) == 0
    text = out.read_text()
    assert "DECIDE \"" not in text and "value_maps" not in text
    assert text.count("    # 1.00") == len(rules.fields)
    assert main(["check", "--config", str(out)]) == 0


def test_init_on_hostile_titles_and_lines_writes_a_config_check_accepts_undecided(
        tmp_path, capsys):
    """Quotes, a colon and '#', a line break, a control character, an emoji and a
    right-to-left mark in titles; a broken line; the only dates in a question init is
    unsure of. Left undecided, the config still loads (a section whose lines are all
    commented out is empty), and the dates' order is read all the same."""
    export = tmp_path / "weird.csv"
    with export.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([
            ["Timestamp", "Email Address", 'Type of "near miss": #1?', "What\nhappened?\x07",
             "Shift 🙂", "Severity \u202e (1-3)", "When? (MM/DD)"],
            ["11/20/2026 9:15:00", "a@x.org", "Medicines", "x", "Nights", "3 - Serious",
             "11/19/2026 8:00 PM"],
            ["3/8/2026 2:30:00", "b@x.org", "Falls", "y", "Days", "n/a", "3/8/2026 2:30 AM"],
            ["11/21/2026 9:15:00", "c@x.org", '"unclosed']])
    out = tmp_path / "nearmiss.yaml"
    assert main(["init", "--from", str(export), "--out", str(out),
                 "--timezone", "America/New_York"]) == 0
    text = out.read_text()
    assert "dayfirst: false" in text and '"Type of \\"near miss\\": #1?": category' in text
    assert main(["check", "--config", str(out)]) == 0
    said = capsys.readouterr().out
    assert "data: source form: line 5 has 3 fields" in said  # the broken line, named
    assert main(["run", "--config", str(out), "--now", "2026-11-27T15:00Z"]) == 0
