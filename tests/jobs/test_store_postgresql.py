"""A deployment on a PostgreSQL store: whole runs, the advisory run lock between machines,
`nearmiss migrate` and `nearmiss store copy` (and `migrate` on a SQLite file)."""

import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

import migrations
from config.settings import ConfigError, StoreSettings
from connectors.errors import LockedError
from connectors.store import Store, advisory_key
from jobs.cli import main
from jobs.lock import run_lock
from tests.fakes.deployment import Deployment
from tests.fakes.postgresql import fresh_schema

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-23T09:00Z"


@pytest.fixture
def pg_url():
    with fresh_schema() as url:
        yield url


def deployment(folder: Path, store: dict) -> Deployment:
    dep = Deployment(folder, store=store)
    dep.add_google("2026-11-16 10:00", service="Riverside Supported Living")
    dep.add_microsoft("2026-11-17 11:00", email="sam@example.org", name="Sam")
    return dep


def test_a_deployment_on_postgresql_runs_and_a_second_run_adds_nothing(tmp_path, pg_url):
    dep = deployment(tmp_path, {"url": pg_url})
    first = dep.run()
    assert (first.new_responses, first.reports, first.emails_sent) == (2, 2, 2)
    tracker, emails = dep.sheet_values(), [p.read_bytes() for p in dep.emails()]

    second = dep.run()
    assert (second.new_responses, second.new_versions, second.reports_changed) == (0, 0, 0)
    assert (second.emails_queued, second.emails_sent, second.tracker_rows,
            second.tracker_cells) == (0, 0, 0, 0)
    assert dep.sheet_values() == tracker and [p.read_bytes() for p in dep.emails()] == emails
    store = Store.open(StoreSettings(url=pg_url))
    try:
        assert store.report_count() == 2
        assert [e["event"] for e in store.audit_trail("NM-000001")][:1] == ["received"]
    finally:
        store.close()
    assert not list(tmp_path.glob("*.db")) and not list(tmp_path.glob("*.lock"))

    # A new report: the kept results of the others come back from PostgreSQL.
    dep.add_google("2026-11-23 08:00", service="Riverside Supported Living")
    third = dep.run("2026-11-23 10:00")
    assert (third.new_responses, third.reports, third.reports_changed) == (1, 3, 1)
    assert [r["Report ID"] for r in dep.sheet()] == ["NM-000001", "NM-000002", "NM-000003"]

    config = str(dep.config().path)
    assert main(["--config", config, "explain", "NM-000001"]) == 0
    from jobs.doctor import doctor

    lines: list[str] = []
    assert doctor(dep.config(), out=lines.append) == []
    assert "ok: store: the database answers and its schema is at " in "\n".join(lines)


@pytest.mark.parametrize(("store", "problem"), [
    ({"path": "a.db", "url": "postgresql+psycopg://u@h/db"},
     "store: give either path (a SQLite file) or url (a PostgreSQL database), not both"),
    ({"url": "postgresql+psycopg://u:secret@h/db"}, "store.url: the URL holds a password: "
     "remove it and name the environment variable that holds it in store.password_env"),
    ({"url": "mysql://u@h/db"}, "store.url: 'mysql' is not supported: use a PostgreSQL URL, "
     "postgresql+psycopg://user@host:5432/database (or store.path for a SQLite file)"),
    ({"path": "a.db", "password_env": "X"},
     "store: password_env is only for a PostgreSQL store (store.url)"),
], ids=["both", "password in the URL", "not PostgreSQL", "password for a file"])
def test_store_settings_name_the_key_and_the_fix(tmp_path, store, problem):
    dep = Deployment(tmp_path, store=store)
    with pytest.raises(ConfigError) as failed:
        dep.config()
    assert failed.value.lines() == [f"{tmp_path / 'nearmiss.yaml'}: {problem}"]


# -- the run lock between machines -------------------------------------------------------------

HOLD = """
import sys
from config.settings import ConfigError, StoreSettings
from jobs.lock import run_lock

with run_lock(StoreSettings(url=sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it: the other machine's run is over
"""


def test_a_run_waits_on_the_advisory_lock_another_machine_holds_and_says_so(
        tmp_path, pg_url, capfd):
    dep = Deployment(tmp_path, store={"url": pg_url})
    dep.config()
    other = subprocess.Popen([sys.executable, "-c", HOLD, pg_url], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    release = threading.Timer(1.0, other.stdin.close)  # that run ends a second later
    try:  # another machine: a process, and a connection, of its own
        assert other.stdout.readline() == "held\n"
        release.start()
        started = time.monotonic()
        summary = dep.run()
        waited = time.monotonic() - started
    finally:
        release.cancel()
        other.kill()  # done already, unless the test failed before the release
        other.wait(10)
    assert summary.run_id == 1 and waited >= 1.0
    assert capfd.readouterr().err == (
        f"nearmiss: another run holds the lock on the store {pg_url} (pid {other.pid} on "
        f"{socket.gethostname()}): waiting up to 600 s for it\n")


def test_a_run_gives_up_waiting_with_one_line(pg_url):
    settings = StoreSettings(url=pg_url)
    engine = create_engine(pg_url)
    holder = engine.connect()  # a session that is not a run: psql, say
    try:
        holder.execute(select(func.pg_advisory_lock(advisory_key(holder, "run"))))
        holder.commit()
        said: list[str] = []
        started = time.monotonic()
        with pytest.raises(LockedError) as failed, run_lock(
                settings, wait_seconds=0.5, poll_seconds=0.1, say=said.append):
            pass
        assert 0.4 < time.monotonic() - started < 10
        pid = holder.execute(select(func.pg_backend_pid())).scalar_one()
    finally:
        holder.close()
        engine.dispose()  # the session ends, and its lock with it
    holding = f"database session pid {pid} from 127.0.0.1"
    assert said == [f"another run holds the lock on the store {pg_url} ({holding}): waiting "
                    "up to 0.5 s for it"]
    assert re.fullmatch(
        re.escape(f"another run holds the lock on the store {pg_url} after ") + r"\d+"
        + re.escape(f" s of waiting ({holding}): wait for it to finish; if it is stuck, stop "
                    "it (on its machine, or pg_terminate_backend) and run again"),
        str(failed.value))
    with run_lock(settings, wait_seconds=0):  # the holder's session ended: free again
        pass


# -- nearmiss migrate ---------------------------------------------------------------------------

def make_legacy(url_or_path: str | Path, schema: int) -> None:
    """What a release before versioned migrations left (see the store contract)."""
    engine = create_engine(f"sqlite:///{url_or_path}" if isinstance(url_or_path, Path)
                           else url_or_path)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN images"))
        if schema < 2:
            conn.execute(text("ALTER TABLE outbox DROP COLUMN next_attempt_at"))
        conn.execute(text(f"UPDATE meta SET value = '{schema}' WHERE key = 'schema_version'"))
    engine.dispose()


def test_a_postgresql_store_behind_stops_the_run_until_nearmiss_migrate(tmp_path, pg_url,
                                                                        capsys):
    dep = Deployment(tmp_path, store={"url": pg_url})
    config = str(dep.config().path)
    Store.open(StoreSettings(url=pg_url)).close()  # as an earlier release's first run made it
    make_legacy(pg_url, 1)
    assert main(["--config", config, "run", "--now", NOW]) == 1
    assert capsys.readouterr().err == (
        f"nearmiss: error: the store {pg_url} is at revision none (schema 1 of a release "
        f"before versioned migrations), this release needs {migrations.head()}: run "
        "`nearmiss migrate`\n")
    assert main(["--config", config, "migrate"]) == 0
    assert capsys.readouterr().out == (
        f"nearmiss: the store {pg_url} was at revision none (schema 1 of a release before "
        f"versioned migrations), now at {migrations.head()}\n")
    assert main(["--config", config, "migrate"]) == 0
    assert capsys.readouterr().out == (
        f"nearmiss: the store {pg_url} is at revision {migrations.head()}: nothing to do\n")


def test_nearmiss_migrate_on_an_older_sqlite_file(tmp_path, capsys):
    dep = Deployment(tmp_path, store={"path": "nearmiss.db"})
    Store.open(tmp_path / "nearmiss.db").close()
    make_legacy(tmp_path / "nearmiss.db", 2)
    assert main(["--config", str(dep.config().path), "migrate"]) == 0
    assert capsys.readouterr().out.endswith(
        "was at revision none (schema 2 of a release before versioned migrations), now at "
        f"{migrations.head()}\n")
    with sqlite3.connect(tmp_path / "nearmiss.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migrations.head(),)]


def test_migrate_needs_the_database_password_variable_only(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEARMISS_TEST_UNSET_DB_PASSWORD", raising=False)
    dep = Deployment(tmp_path, store={"url": "postgresql+psycopg://nearmiss@127.0.0.1:1/db",
                                      "password_env": "NEARMISS_TEST_UNSET_DB_PASSWORD"})
    dep.data["mail"]["transport"] = {"kind": "smtp", "host": "mail.example.org",
                                     "password_env": "NEARMISS_TEST_UNSET_SMTP_PASSWORD"}
    config = tmp_path / "nearmiss.yaml"
    config.write_text(yaml.safe_dump(dep.data))
    assert main(["--config", str(config), "migrate"]) == 2
    assert capsys.readouterr().err == (
        f"nearmiss: config: {config}: store.password_env: environment variable "
        "NEARMISS_TEST_UNSET_DB_PASSWORD is not set: export the database password in it\n")


# -- nearmiss store copy ------------------------------------------------------------------------

def test_store_copy_moves_a_deployment_to_postgresql(tmp_path, pg_url, capsys):
    dep = deployment(tmp_path, {"path": "nearmiss.db"})
    first = dep.run()
    assert first.reports == 2
    config = str(dep.config().path)
    assert main(["--config", config, "store", "copy", "--to", pg_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("nearmiss: copied ") and " 2 reports" in out[0]
    assert out[1] == (f"nearmiss: now point {config} at it: store: {{url: {pg_url}}}; the old "
                      "store is left as it was")
    assert main(["--config", config, "store", "copy", "--to", pg_url]) == 1
    assert "is not empty" in capsys.readouterr().err

    dep.data["store"] = {"url": pg_url}  # as the user is told
    emails = [p.read_bytes() for p in dep.emails()]
    again = dep.run()  # carries on where the SQLite store was: nothing is new
    assert (again.new_responses, again.reports_changed, again.emails_queued,
            again.tracker_rows) == (0, 0, 0, 0)
    assert [p.read_bytes() for p in dep.emails()] == emails


def test_store_copy_refuses_a_target_that_is_not_postgresql(tmp_path, capsys):
    dep = deployment(tmp_path, {"path": "nearmiss.db"})
    config = str(dep.config().path)
    assert main(["--config", config, "store", "copy", "--to", "sqlite:///x.db"]) == 2
    assert "--to: 'sqlite' is not supported" in capsys.readouterr().err
