"""The command line: exit codes and one-line messages, on real files."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.cli import main
from tests.fakes.deployment import Deployment

ROOT = Path(__file__).resolve().parents[2]


def nearmiss(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["check"], ["explain"],
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
