import os
import sqlite3
import stat
import time
import traceback

import pandas as pd
import pytest
from sqlalchemy import event, select, text

from connectors.base import AuditEvent, RawResponse
from connectors.errors import StoreError
from connectors.store import MAX_ATTEMPTS, SCHEMA_VERSION, OutboxItem, Store, runs

T0 = pd.Timestamp("2026-11-20 10:00", tz="UTC")


def response(rid: str, answer: str, at: pd.Timestamp = T0) -> RawResponse:
    return RawResponse(source="g", response_id=rid, submitted_at=at, answers={"Q": answer})


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "db" / "nearmiss.db")
    s.begin_run(T0)
    return s


def test_new_versions_unchanged_and_stale_copies(store):
    assert store.add_raw([response("r1", "a"), response("r2", "b")], T0).new == 2
    again = store.add_raw([response("r1", "a"), response("r2", "b")], T0)
    assert (again.new, again.versions, again.unchanged) == (0, 0, 2)
    edit = store.add_raw([response("r1", "a, edited", T0 + pd.Timedelta(hours=1))], T0)
    assert edit.versions == 1
    stale = store.add_raw([response("r1", "a", T0)], T0)  # an older export of r1
    assert stale.stale == 1
    latest = store.latest_responses().set_index("response_id")
    assert latest.loc["r1", "version"] == 2
    assert latest.loc["r1", "payload"]["answers"] == {"Q": "a, edited"}
    assert latest.loc["r1", "first_submitted_at"] == T0
    assert [v["version"] for v in store.raw_versions("g", "r1")] == [1, 2]


def test_raw_responses_and_audit_are_append_only(store, tmp_path):
    store.add_raw([response("r1", "a")], T0)
    store.audit([AuditEvent("report", "NM-000001", "received", "test")], T0)
    conn = sqlite3.connect(tmp_path / "db" / "nearmiss.db")
    for sql in ("UPDATE raw_responses SET payload='{}'", "DELETE FROM raw_responses",
                "UPDATE audit SET reason='x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_counters_never_reuse_numbers(tmp_path):
    path = tmp_path / "nearmiss.db"
    assert Store.open(path).allocate("report", 3) == [1, 2, 3]
    assert Store.open(path).allocate("report", 2) == [4, 5]
    assert Store.open(path).allocate("pattern", 1) == [1]
    assert Store.open(path).peek("pattern", 2) == [2, 3]  # not taken
    Store.open(path).reserve("pattern", 2)
    Store.open(path).reserve("pattern", 1)  # never down
    assert Store.open(path).allocate("pattern", 1) == [3]
    assert Store.open(path).schema_version() == SCHEMA_VERSION


def test_a_schema_1_store_is_migrated_and_keeps_its_outbox(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = Store.open(path)
    store.enqueue([OutboxItem("ack:NM-000001", "acknowledgement", "NM-000001", ["a@x.org"],
                              "S", "T")], T0)
    with sqlite3.connect(path) as conn:  # as the first release left it
        conn.execute("ALTER TABLE outbox DROP COLUMN next_attempt_at")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store.open(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert [p["key"] for p in store.pending(T0)] == ["ack:NM-000001"]


def test_outbox_is_idempotent_by_key(store):
    item = OutboxItem("ack:NM-000001", "acknowledgement", "NM-000001", ["a@x.org"], "S", "T")
    assert len(store.enqueue([item, item], T0)) == 1
    assert store.enqueue([item], T0) == []
    assert [p["key"] for p in store.pending()] == ["ack:NM-000001"]
    store.mark_failed("ack:NM-000001", "down", T0)
    assert store.pending()[0]["attempts"] == 1
    store.mark_sent("ack:NM-000001", T0)
    assert store.pending() == []
    other = OutboxItem("ack:NM-000002", "acknowledgement", "NM-000002", ["x"], "S", "T")
    store.enqueue([other], T0)
    store.mark_failed("ack:NM-000002", "refused", T0, final=True)
    assert store.pending() == []  # a final failure is not retried
    assert store.outbox_frame().set_index("key")["given_up"].to_dict() == {
        "ack:NM-000001": False, "ack:NM-000002": True}


def test_a_temporary_refusal_waits_longer_each_time_then_gives_up(store):
    store.enqueue([OutboxItem("ack:NM-000001", "acknowledgement", "NM-000001", ["a@x.org"],
                              "S", "T")], T0)
    at, waits = pd.Timestamp(T0), []
    for _ in range(MAX_ATTEMPTS):
        store.mark_failed("ack:NM-000001", "451 try again later", at)
        due = pd.Timestamp(store.pending()[0]["next_attempt_at"]) if store.pending() else None
        if due is None:
            break
        assert store.pending(due - pd.Timedelta(seconds=1)) == []
        assert len(store.pending(due)) == 1
        waits.append(due - at)
        at = due
    assert waits[:4] == [pd.Timedelta(minutes=m) for m in (15, 30, 60, 120)]
    assert max(waits) == pd.Timedelta(hours=12)
    assert store.pending() == [] and bool(store.outbox_frame()["given_up"].iloc[0])


def test_an_atomic_block_commits_state_and_audit_together_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.atomic():
        store.save_state("decision", {"NM-000001": {"dq_status": "complete"}}, T0)
        store.audit([AuditEvent("report", "NM-000001", "received", "version 1")], T0)
        raise RuntimeError("killed")
    assert store.state("decision") == {} and store.audit_trail() == []
    with store.atomic():
        store.save_state("decision", {"NM-000001": {"dq_status": "complete"}}, T0)
        store.audit([AuditEvent("report", "NM-000001", "received", "version 1")], T0)
    assert list(store.state("decision")) == ["NM-000001"] and len(store.audit_trail()) == 1


def test_a_run_left_running_is_interrupted_by_the_next(store):
    first = store.begin_run(T0)
    store.audit([AuditEvent("report", "NM-000001", "received", "v1")] * 2, T0)
    second = store.begin_run(T0)
    trail = store.audit_trail(str(first))
    assert [e["event"] for e in trail] == ["run interrupted"]
    assert trail[0]["reason"] == "the run stopped part-way: 2 received"
    with store.engine.connect() as conn:
        status = dict(conn.execute(select(runs.c.run_id, runs.c.status)).all())
    assert (status[first], status[second]) == ("interrupted", "running")


def test_reports_only_changed_ones_are_written(store):
    rec = {"report_id": "NM-000001", "version": 1, "category": "medication"}
    assert store.save_reports([rec], T0) == 1
    assert store.save_reports([rec], T0) == 0
    assert store.save_reports([{**rec, "version": 2}], T0) == 1
    assert store.report_count() == 1


def test_links_are_unique_per_response(store):
    links = pd.DataFrame([{"source": "g", "response_id": "r1", "report_id": "NM-000001",
                           "how": "new"}])
    store.add_links(links, T0)
    with pytest.raises(StoreError, match=r"could not be written \(SQLITE_CONSTRAINT_PRIMARYKEY\)"):
        store.add_links(links, T0)


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(blocker / "sub" / "nearmiss.db")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "nearmiss.db"
    Store.open(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer Nearmiss Loop"):
        Store.open(path)


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


def test_append_only_refusal_and_other_errors_stay_one_line(tmp_path):
    path = tmp_path / "nearmiss.db"
    store = filled(path)
    store.audit([AuditEvent("report", "NM-000001", "received", SECRET)], T0)
    for table in ("raw_responses", "audit"):
        with pytest.raises(StoreError) as failed, store.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
        assert_one_clean_line(failed.value, f"({table} is append-only)", "nothing was changed")
    with pytest.raises(StoreError) as failed, store.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table WHERE x = :x"), {"x": SECRET})
    assert str(failed.value) == f"the store {path} could not be read (SQLITE_ERROR)"
    assert_still_readable(path)


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
