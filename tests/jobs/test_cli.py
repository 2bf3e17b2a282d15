"""The command line: exit codes and one-line messages, on real files."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from jobs.cli import main
from tests.fakes.deployment import Deployment

ROOT = Path(__file__).resolve().parents[2]


def nearmiss(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["check"], ["explain"], ["fields"],
                                     ["release"],
                                     ["doctor"], ["auth"]])
def test_help_on_everything(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "usage: nearmiss" in capsys.readouterr().out


def test_config_with_two_mistakes_prints_both_and_exits_2(tmp_path):
    dep = Deployment(tmp_path)
    dep.data["timezone"] = "Europe/Londn"
    dep.data["tracker"] = {"kind": "xlsx"}
    config = tmp_path / "nearmiss.yaml"
    config.write_text(yaml.safe_dump(dep.data))
    done = nearmiss("--config", str(config), "run", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert any("timezone: unknown time zone 'Europe/Londn'" in line for line in lines)
    assert any("tracker.path: required" in line for line in lines)


def test_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "run"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_missing_input_file_names_it_and_exits_1(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.config()
    (tmp_path / "exports" / "near-miss-google-form.csv").unlink()
    assert main(["--config", str(tmp_path / "nearmiss.yaml"), "run",
                 "--now", "2026-11-23T09:00Z"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nearmiss: error: google-form: export file not found")
    assert err.endswith("near-miss-google-form.csv") and "\n" not in err


def test_run_explain_and_check(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    config = str(dep.config().path)
    assert main(["--config", config, "run", "--now", "2026-11-23T09:00Z"]) == 0
    assert "1 new, 0 edited; 1 reports" in capsys.readouterr().out
    assert main(["--config", config, "explain", "NM-000001"]) == 0
    out = capsys.readouterr().out
    assert "received" in out and "rule fired" in out and "email sent" in out
    assert main(["--config", config, "explain", "NM-999999"]) == 1
    assert main(["--config", config, "check"]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out and "check: medication name: required" in out
    assert main(["--config", config, "run", "--now", "yesterday-ish"]) == 2


def test_options_after_the_command_ids_however_typed_and_the_version(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    config = str(dep.config().path)
    # --config after the command, and a wrong one before it that the later one replaces
    assert main(["--config", "nope.yaml", "run", "--config", config,
                 "--now", "2026-11-23T09:00Z"]) == 0
    capsys.readouterr()
    for typed in ("nm-1", " NM 000001 ", "nm_01"):
        assert main(["explain", typed, "--config", config]) == 0
        assert "received" in capsys.readouterr().out
    assert main(["explain", "pt-9", "--config", config]) == 1
    assert "nothing recorded for PT-0009" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"nearmiss \S+\n", capsys.readouterr().out)


def test_check_notes_a_form_without_a_reference_question(tmp_path, capsys):
    dep = Deployment(tmp_path)
    config = str(dep.config().path)
    assert main(["check", "--config", config]) == 0
    assert "no question maps to report_reference" not in capsys.readouterr().out
    dep.data["mapping"] = {q: f for q, f in dep.data["mapping"].items()
                           if f != "report_reference"}
    assert main(["check", "--config", str(dep.config().path)]) == 0
    out = capsys.readouterr().out
    assert "note: google-form: no question maps to report_reference" in out
    assert "ask reporters to reply by email" in out  # the demo has a reply-to address
    dep.data["mail"].pop("reply_to", None)
    assert main(["check", "--config", str(dep.config().path)]) == 0
    assert "give the items to their manager (set mail.reply_to" in capsys.readouterr().out


def test_check_looks_at_the_exports_on_this_machine_too(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00", shift="Nights (20:00-08:00)")
    dep.google_rows[-1]["Was anyone else nearby?"] = "No"
    dep.write_exports()
    assert main(["check", "--config", str(dep.config().path)]) == 0  # data: not config
    out = capsys.readouterr().out
    assert ("  data: source google-form: 1 answer(s) to 'shift' match no value: "
            "'Nights (20:00-08:00)' (1)") in out
    assert "  data: source google-form: 1 question(s) not in the mapping" in out


def test_fields_lists_labels_values_when_required_and_what_fills_them(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.data["value_maps"] = {"potential_harm": {"3 - Serious": "severe", "n/a": None}}
    assert main(["fields", "--config", str(dep.config().path)]) == 0
    out = capsys.readouterr().out
    assert "medication_name: medication name (text)\n  required (medication): when category " \
           "is medication\n" in out
    assert "  required (minimum dataset): always\n" in out
    assert "  values: none (No harm likely), low (Low), moderate (Moderate)" in out
    assert "  value map (google-form): '3 - Serious' -> severe\n" in out
    assert "  value map (google-form): 'n/a' -> no answer\n" in out
    assert "  from: 'What kind of near miss was it?'" in out


def test_the_run_line_says_how_many_runs_the_email_backlog_needs(tmp_path, capsys):
    dep = Deployment(tmp_path)
    for day in range(10, 20):
        dep.add_google(f"2026-11-{day} 10:00")
    dep.data["mail"]["max_per_run"] = 4
    dep.data["mail"]["hold_requests"] = {"at_least": 50}  # six of ten are incomplete
    config = str(dep.config().path)
    assert main(["--config", config, "run", "--now", "2026-11-23T09:00Z"]) == 0
    out = capsys.readouterr().out
    assert "17 emails queued, 4 sent, 0 failed, 13 waiting (about 4 runs to send them all)" in out
    for waiting, more in ((9, " (about 3 runs"), (5, " (about 2 runs"), (1, ";"), (0, ";")):
        assert main(["--config", config, "run", "--now", "2026-11-23T09:05Z"]) == 0
        assert f"0 failed, {waiting} waiting{more}" in capsys.readouterr().out


def test_demo_runs_twice_and_the_second_adds_nothing(tmp_path):
    first = nearmiss("demo", "--workdir", str(tmp_path / "demo"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "tracker:" in first.stdout and "tracker.xlsx" in first.stdout
    assert "emails written:" in first.stdout
    assert (tmp_path / "demo" / "tracker.xlsx").exists()
    second = nearmiss("demo", "--workdir", str(tmp_path / "demo"), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "this run: 0 new, 0 edited" in second.stdout
    assert "0 emails queued, 0 sent" in second.stdout
    # One of each governance email, and notification-risk flags only where a Registered
    # Manager would act: the safeguarding reports and the unexplained bruising (README).
    assert "1 board_summary" in first.stdout and "1 weekly_review" in first.stdout
    book = load_workbook(tmp_path / "demo" / "tracker.xlsx")
    assert "Summary" in book.sheetnames
    rows = list(book["Reports"].iter_rows(values_only=True))
    flagged = [r[0] for r in rows[1:] if r[rows[0].index("Notification risk")]]
    assert flagged == [f"NM-{n:06d}" for n in (5, 12, 26, 35, 51, 68, 72, 82)]


# -- failures end in one line: the cause and the fix, never SQL or report text -------------

SECRET = "MAR showed the evening dose as given already"  # a report's own words
SQL_WORDS = ("INSERT", "UPDATE", "SELECT", "[SQL", "Traceback")


def assert_one_clean_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for leak in (*SQL_WORDS, SECRET):
        assert leak not in stderr
    return lines[0]


@pytest.fixture
def immutable():
    """`chattr +i` paths for the test: the one way to make a file read-only for root too."""
    done: list[Path] = []

    def make(*paths: Path) -> None:
        for path in paths:
            if shutil.which("chattr") is None or subprocess.run(
                    ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here")
            done.append(path)

    yield make
    for path in reversed(done):
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_store_that_is_a_folder_ends_in_one_line(tmp_path):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00", description=SECRET)
    dep.data["store"] = {"path": "store/nearmiss.db"}
    (tmp_path / "store" / "nearmiss.db").mkdir(parents=True)
    done = nearmiss("--config", str(dep.config().path), "run", "--now", "2026-11-23T09:00Z",
                    cwd=tmp_path)
    assert done.returncode == 1
    line = assert_one_clean_line(done.stderr)
    assert line.startswith("nearmiss: error: the store ")
    assert "cannot be opened: it must be a file (not a folder)" in line


def test_a_read_only_store_ends_in_one_line_and_keeps_what_it_holds(tmp_path, immutable):
    from connectors.store import Store

    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00", description=SECRET)
    dep.data["store"] = {"path": "store/nearmiss.db"}
    config = str(dep.config().path)
    first = nearmiss("--config", config, "run", "--now", "2026-11-23T09:00Z", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    store = tmp_path / "store" / "nearmiss.db"
    immutable(store, store.parent)  # SQLite can only open it read-only now
    dep.add_google("2026-11-21 10:00", description=SECRET + ", again")
    done = nearmiss("--config", config, "run", "--now", "2026-11-24T09:00Z", cwd=tmp_path)
    assert done.returncode == 1
    line = assert_one_clean_line(done.stderr)
    assert line == (f"nearmiss: error: the store {store} is read-only: give the user that "
                    "runs nearmiss write access to it and its folder")
    assert Store.open(store).report_count() == 1  # reading needs no write access


@pytest.mark.parametrize(("raise_it", "kind", "where"), [
    ("directly", "ValueError", "jobs/cli.py"),
    ("in project code", "DateParseError", "connectors/store.py"),  # raised inside pandas
])
def test_an_internal_error_names_its_type_and_place_not_its_message(raise_it, kind, where,
                                                                     monkeypatch, capsys):
    from connectors.store import iso
    from jobs import cli

    def boom(_args):
        if raise_it == "directly":
            raise ValueError(f"secret report text: {SECRET}")
        iso(f"secret report text: {SECRET}")  # pandas refuses it, quoting the text

    monkeypatch.setitem(cli.COMMANDS, "check", boom)
    assert main(["--config", "unused.yaml", "check"]) == 1
    line = assert_one_clean_line(capsys.readouterr().err)
    assert "secret report text" not in line
    assert re.fullmatch(rf"nearmiss: internal error: {kind} in {where}:\d+ "
                        r"\(run with --verbose for details\)", line), line
    with pytest.raises(ValueError, match="secret report text"):
        main(["--verbose", "--config", "unused.yaml", "check"])


def test_a_read_only_store_folder_stops_the_run_at_the_lock_file(tmp_path, immutable, capsys):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00", description=SECRET)
    dep.data["store"] = {"path": "store/nearmiss.db"}
    config = str(dep.config().path)
    assert main(["--config", config, "run", "--now", "2026-11-23T09:00Z"]) == 0
    folder = tmp_path / "store"
    (folder / "nearmiss.lock").unlink()
    immutable(folder)  # nothing new can be created in it, by root either
    capsys.readouterr()
    assert main(["--config", config, "run", "--now", "2026-11-24T09:00Z"]) == 1
    line = assert_one_clean_line(capsys.readouterr().err)
    assert line == (f"nearmiss: error: cannot write the lock file nearmiss.lock in {folder}: "
                    "the folder is read-only; give the user that runs nearmiss write access "
                    "to it")


@pytest.mark.parametrize(("transport", "extra", "secret"), [
    ({"kind": "smtp", "host": "mail.example.org", "username": "loop",
      "password_env": "NEARMISS_TEST_UNSET_SMTP_PASSWORD"}, {},
     "NEARMISS_TEST_UNSET_SMTP_PASSWORD is not set"),
    ({"kind": "gmail"}, {"google": {"auth": "service_account"}},
     "GOOGLE_APPLICATION_CREDENTIALS is not set"),
], ids=["smtp", "gmail"])
def test_explain_and_check_need_no_mail_secret(tmp_path, transport, extra, secret):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    dep.run()  # on the outbox folder: the store now holds a trail to explain
    dep.data["mail"]["transport"] = transport
    dep.data.update(extra)
    config = tmp_path / "nearmiss.yaml"
    config.write_text(yaml.safe_dump(dep.data, sort_keys=False))  # the helper's env has no secret

    explained = nearmiss("--config", str(config), "explain", "NM-000001", cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert "received" in explained.stdout and explained.stderr == ""
    checked = nearmiss("--config", str(config), "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stdout
    assert any(line.startswith("  note: ") and secret in line
               for line in checked.stdout.splitlines()), checked.stdout
    ran = nearmiss("--config", str(config), "run", "--now", "2026-11-23T09:00Z", cwd=tmp_path)
    assert ran.returncode == 2 and secret in ran.stderr  # sending still needs it


def test_a_reader_that_stops_early_gets_no_error_line(tmp_path):
    """`nearmiss check | head -1`: a closed pipe is not an internal error."""
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "--config",
                             str(ROOT / "config" / "demo.yaml"), "check"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    proc.stdout.close()  # the reader is gone before the first line is written
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read() == b""


def test_a_run_by_hand_shows_its_steps_and_a_scheduled_one_does_not(tmp_path, capsys,
                                                                    monkeypatch):
    dep = Deployment(tmp_path)
    for day in range(10, 14):
        dep.add_google(f"2026-11-{day} 10:00")
    config = str(dep.config().path)
    assert main(["run", "--config", config, "--now", "2026-11-23T09:00Z"]) == 0
    assert capsys.readouterr().err == ""  # not a terminal: a log stays clean
    dep.add_google("2026-11-22 10:00")
    monkeypatch.setattr("jobs.progress.on_terminal", lambda: True)
    assert main(["run", "--config", config, "--now", "2026-11-23T10:00Z"]) == 0
    err = capsys.readouterr().err
    # only what is new is read and checked: the last run's results hold for the rest
    for step in ("reading 2 form source(s)", "reading 1 response(s) stored since the last run",
                 "checking and triaging 1 of 5 reports", "reading the tracker",
                 "finding repeats", "writing the tracker"):
        assert f"nearmiss: {step}...\n" in err
