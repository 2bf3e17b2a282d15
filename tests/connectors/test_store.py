"""What each backend does on its own: a SQLite file's errors, modes and upgrades, a
PostgreSQL server's errors. What every backend does alike is test_store_contract.py."""

import os
import sqlite3
import stat
import time
import traceback

import pandas as pd
import psycopg
import pytest
from sqlalchemy import create_engine, event, text

from config.settings import StoreSettings
from connectors.base import AuditEvent, RawResponse
from connectors.errors import StoreError
from connectors.store import SCHEMA_VERSION, OutboxItem, Store, pg_store_error
from tests.fakes.postgresql import TEST_DATABASE_URL, fresh_schema, needs_postgresql, with_schema

T0 = pd.Timestamp("2026-11-20 10:00", tz="UTC")


def response(rid: str, answer: str, at: pd.Timestamp = T0) -> RawResponse:
    return RawResponse(source="g", response_id=rid, submitted_at=at, answers={"Q": answer})


def test_an_older_sqlite_store_is_migrated_when_its_release_first_opens_it(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = Store.open(path)
    store.enqueue([OutboxItem("ack:NM-000001", "acknowledgement", "NM-000001", ["a@x.org"],
                              "S", "T")], T0)
    store.close()
    with sqlite3.connect(path) as conn:  # as the first release left it
        conn.execute("DROP TABLE alembic_version")
        conn.execute("ALTER TABLE outbox DROP COLUMN next_attempt_at")
        conn.execute("ALTER TABLE outbox DROP COLUMN images")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store.open(path)  # no `nearmiss migrate` needed for one machine's own file
    assert store.schema_status().at_head and store.schema_version() == SCHEMA_VERSION
    assert [p["key"] for p in store.pending(T0)] == ["ack:NM-000001"]


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "sub" / "nearmiss.db")


# -- a store that cannot be written: one line naming the cause and the fix -----------------

SECRET = "Amlodipine signed for twice, OH-014"  # report text that must never be printed
LATER = "Insulin pen left on the trolley"


def filled(path, **kwargs) -> Store:
    """A store holding one response, as a run before the failure left it."""
    store = Store.open(path, **kwargs)
    store.begin_run(T0)
    store.add_raw([response("r1", SECRET)], T0)
    return store


def reconnect_with(store: Store, *pragmas: str) -> None:
    """Make every new connection of `store` run `pragmas`: SQLite then fails for real."""
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _set(dbapi_conn, _record):
        for pragma in pragmas:
            dbapi_conn.execute(pragma)


def assert_one_clean_line(error: StoreError, *expected: str) -> None:
    message = str(error)
    assert "\n" not in message
    for part in expected:
        assert part in message
    for leak in ("INSERT", "UPDATE", "SELECT", "[SQL", "parameters", SECRET, LATER, "xxxx"):
        assert leak not in message


def assert_still_readable(path) -> None:
    latest = Store.open(path).latest_responses()
    assert latest["payload"].map(lambda p: p["answers"]["Q"]).tolist() == [SECRET]


def test_read_only_store_names_the_cause_and_fix(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = filled(path)
    reconnect_with(store, "PRAGMA query_only=ON")  # SQLite's own SQLITE_READONLY
    writes = [lambda: store.add_raw([response("r2", LATER)], T0),
              lambda: store.audit([AuditEvent("report", "NM-000002", "received", LATER)], T0),
              lambda: store.finish_run(T0, "ok", {"summary": LATER})]
    for write in writes:
        with pytest.raises(StoreError) as failed:
            write()
        assert_one_clean_line(failed.value, f"the store {path} is read-only",
                              "give the user that runs nearmiss write access")
    assert_still_readable(path)


def test_full_disk_names_the_cause_and_loses_nothing(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = filled(path)
    reconnect_with(store, "PRAGMA max_page_count=1")  # no room to grow: SQLITE_FULL
    with pytest.raises(StoreError) as failed:
        store.add_raw([response("r2", LATER + "x" * 200_000)], T0)
    assert_one_clean_line(failed.value, f"the disk holding the store {path} is full",
                          "free some space", "nothing stored was lost")
    assert_still_readable(path)


def test_locked_store_gives_up_after_busy_timeout(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = filled(path, busy_timeout=0.1)
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")  # a database browser holding the file
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as failed:
            store.add_raw([response("r2", LATER)], T0)
    finally:
        other.rollback()
        other.close()
    assert time.monotonic() - started < 5
    assert_one_clean_line(failed.value, f"the store {path} is locked by another program",
                          "close it", "run again")
    assert_still_readable(path)


def test_a_failing_commit_goes_through_the_same_classification(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = filled(path, busy_timeout=0.1)
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM raw_responses").fetchall()  # holds a shared lock
    try:
        # The INSERT may proceed alongside a reader; only COMMIT needs the file to itself.
        with pytest.raises(StoreError) as failed:
            store.add_raw([response("r2", LATER)], T0)
    finally:
        reader.rollback()
        reader.close()
    assert "_commit_impl" in [f.name for f in traceback.extract_tb(failed.tb)]
    assert_one_clean_line(failed.value, "is locked by another program")
    assert_still_readable(path)


def test_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "nearmiss.db"
    path.write_text(f"{SECRET}\n" * 200)
    with pytest.raises(StoreError) as failed:
        Store.open(path)
    assert_one_clean_line(failed.value, f"the store {path} is damaged or is not a Nearmiss",
                          "SQLITE_NOTADB", "restore it from a backup")


def test_a_folder_where_the_store_should_be(tmp_path):
    path = tmp_path / "nearmiss.db"
    path.mkdir()
    with pytest.raises(StoreError) as failed:
        Store.open(path)
    assert_one_clean_line(failed.value, f"the store {path} cannot be opened",
                          "must be a file (not a folder)")


# -- file modes: the store holds names, emails and person references -----------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask, under which SQLite creates files 0644
    yield
    os.umask(old)


def _journal_modes(path) -> dict[str, int]:
    """The modes of the files SQLite creates beside the store while writing to it."""
    modes = {}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO counters (name, value) VALUES ('journal test', 1)")
        journal = path.with_name(path.name + "-journal")  # exists while the write is open
        modes["-journal"] = _mode(journal)
        conn.execute("ROLLBACK")
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        conn.execute("INSERT INTO counters (name, value) VALUES ('wal test', 1)")
        for suffix in ("-wal", "-shm"):
            modes[suffix] = _mode(path.with_name(path.name + suffix))
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return modes


def test_a_new_store_and_its_journals_are_owner_only(tmp_path, umask_022):
    path = tmp_path / "nearmiss.db"
    store = filled(path)
    assert _mode(path) == 0o600
    store.engine.dispose()
    assert _journal_modes(path) == {"-journal": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_an_existing_store_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "nearmiss.db"
    filled(path).engine.dispose()
    path.chmod(0o640)  # an operator shares it with a group that reads it
    store = filled(path)
    assert _mode(path) == 0o640
    store.engine.dispose()
    assert _journal_modes(path) == {"-journal": 0o640, "-wal": 0o640, "-shm": 0o640}


# -- a PostgreSQL store: one line naming the cause and the fix ----------------------------

def server(url: str) -> StoreSettings:
    return StoreSettings(url=url)


@pytest.fixture
def pg_url():
    with fresh_schema() as url:
        yield url


def test_an_unreachable_server():
    url = "postgresql+psycopg://nearmiss@127.0.0.1:1/nearmiss"  # nothing listens on port 1
    with pytest.raises(StoreError) as failed:
        Store.open(server(url))
    assert str(failed.value) == (
        f"cannot reach the database server of the store {url}: check that it is running and "
        "that the host and port in store.url are right, then run again")


def test_a_missing_password_variable_names_the_key(monkeypatch):
    monkeypatch.delenv("NEARMISS_TEST_UNSET_DB_PASSWORD", raising=False)
    settings = StoreSettings(url="postgresql+psycopg://nearmiss@127.0.0.1:1/nearmiss",
                             password_env="NEARMISS_TEST_UNSET_DB_PASSWORD")
    with pytest.raises(StoreError, match=r"^store\.password_env: environment variable "
                                         "NEARMISS_TEST_UNSET_DB_PASSWORD is not set"):
        Store.open(settings)


@needs_postgresql
@pytest.mark.parametrize(("change", "expected"), [
    ({"database": "nearmiss_no_such_database"}, "the database of the store {url} does not "
     "exist: create it (createdb) or correct the database name at the end of store.url"),
    ({"username": "nearmiss_no_such_role"}, "the database server refused the login to the "
     "store {url}: check the user in store.url and the password in the variable "
     "store.password_env names"),
], ids=["database", "login"])
def test_a_wrong_database_or_login(change, expected):
    from sqlalchemy.engine import make_url

    url = make_url(TEST_DATABASE_URL).set(**change).render_as_string(hide_password=False)
    with pytest.raises(StoreError) as failed:
        Store.open(server(url))
    assert str(failed.value) == expected.format(url=url)


@needs_postgresql
def test_a_read_only_server_names_the_cause_and_keeps_what_it_holds(pg_url):
    store = Store.open(server(pg_url))
    store.begin_run(T0)
    store.add_raw([response("r1", SECRET)], T0)
    store.close()
    schema = pg_url.rsplit("%3D", 1)[1]
    read_only = with_schema(TEST_DATABASE_URL, schema).replace(
        "-csearch_path%3D", "-cdefault_transaction_read_only%3Don+-csearch_path%3D")
    store = Store.open(server(read_only))  # a standby: reading works
    assert store.latest_responses()["response_id"].tolist() == ["r1"]
    with pytest.raises(StoreError) as failed:
        store.add_raw([response("r2", LATER)], T0)
    store.close()
    assert_one_clean_line(failed.value, f"the store {read_only} is read-only",
                          "point store.url at the primary server")


@needs_postgresql
def test_a_table_locked_by_another_program_gives_up_after_the_timeout(pg_url):
    store = Store.open(server(pg_url), busy_timeout=0.2)
    other = create_engine(pg_url).connect()
    other.execute(text("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE"))  # a long migration
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as failed:
            store.allocate("report", 1)
    finally:
        other.rollback()
        other.close()
        store.close()
    assert time.monotonic() - started < 5
    assert_one_clean_line(failed.value, f"the store {pg_url} is locked by another program",
                          "let it finish and run again")


@pytest.mark.parametrize(("error", "expected"), [
    (psycopg.errors.DiskFull(f"could not extend file: {SECRET}"),
     "the database server of the store S is out of disk space or memory (DiskFull): free "
     "some on the server and run again (nothing stored was lost)"),
    (psycopg.errors.SerializationFailure(SECRET),
     "the store S was changed by another program at the same moment (SerializationFailure): "
     "run again (nothing stored was lost)"),
    (psycopg.errors.InsufficientPrivilege(SECRET),
     "the database user of the store S lacks a permission on its tables: grant it SELECT, "
     "INSERT, UPDATE and DELETE on them (or connect as their owner)"),
    (psycopg.OperationalError("consuming input failed: server closed the connection "
                              "unexpectedly"),
     "the connection to the store S was lost (the server stopped or restarted?): run again "
     "once it is back (nothing stored was lost)"),
    (psycopg.errors.UniqueViolation(f"Key (source)=({SECRET}) already exists"),
     "the store S could not be written (UniqueViolation)"),
], ids=["disk full", "serialization", "permission", "connection lost", "other"])
def test_server_errors_are_named_by_their_sqlstate_never_their_text(error, expected):
    assert str(pg_store_error(error, "S")) == expected
