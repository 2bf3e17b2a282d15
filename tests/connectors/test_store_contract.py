"""The store's contract, on every backend: a SQLite file always, and PostgreSQL when
NEARMISS_TEST_DATABASE_URL names a server (each test in a schema of its own)."""

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

import migrations
from config.settings import StoreSettings
from connectors.base import AuditEvent, RawResponse
from connectors.errors import StoreError
from connectors.store import (
    MAX_ATTEMPTS,
    SCHEMA_VERSION,
    OutboxItem,
    SourceMemory,
    Store,
    copy_store,
    metadata,
    runs,
)
from tests.fakes.postgresql import fresh_schema

T0 = pd.Timestamp("2026-11-20 10:00", tz="UTC")
SECRET = "Amlodipine signed for twice, OH-014"  # report text that must never be printed


def response(rid: str, answer: str, at: pd.Timestamp = T0, source: str = "g") -> RawResponse:
    return RawResponse(source=source, response_id=rid, submitted_at=at, answers={"Q": answer})


def ack(n: int) -> OutboxItem:
    return OutboxItem(f"ack:NM-{n:06d}", "acknowledgement", f"NM-{n:06d}", ["a@x.org"], "S", "T")


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path) -> Iterator[Path | StoreSettings]:
    """Where a store of the backend is: a file, or a fresh schema on the test server."""
    if request.param == "sqlite":
        yield tmp_path / "db" / "nearmiss.db"
    else:
        with fresh_schema() as url:
            yield StoreSettings(url=url)


@pytest.fixture
def open_store(where) -> Iterator[Callable[..., Store]]:
    """Open the test's store (again); every store opened is closed after the test."""
    opened: list[Store] = []

    def open_(**kwargs) -> Store:
        opened.append(Store.open(where, **kwargs))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> Store:
    s = open_store()
    s.begin_run(T0)
    return s


def driver_errors() -> tuple[type[Exception], ...]:
    return (sqlite3.DatabaseError, psycopg.Error)


def make_legacy(store: Store, schema: int) -> None:
    """Turn `store` into one a release before versioned migrations left: no alembic
    version, its `meta` schema_version, no outbox.images (revision 0002), and (schema 1)
    no outbox.next_attempt_at."""
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("ALTER TABLE outbox DROP COLUMN images"))
        if schema < 2:
            conn.execute(text("ALTER TABLE outbox DROP COLUMN next_attempt_at"))
        conn.execute(text(f"UPDATE meta SET value = '{schema}' WHERE key = 'schema_version'"))
    store.close()


# -- raw responses ---------------------------------------------------------------------------

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


def test_what_a_reporter_sent_comes_back_exactly(store):
    odd = {"z": "a\x00b", "a": 1e300, "é": ["\u202eRTL", "\U0001F600"], "n": None, "f": 0.1,
           "nested": {"b": 2, "a": [1, 2.5]}}
    store.add_raw([RawResponse(source="g", response_id="r1", submitted_at=T0, answers=odd)], T0)
    payload = store.latest_responses().iloc[0]["payload"]
    assert payload["answers"] == odd and list(payload["answers"]) == list(odd)
    # the same content is recognised as unchanged: the stored JSON hashes the same
    assert store.add_raw([RawResponse(source="g", response_id="r1", submitted_at=T0,
                                      answers=dict(odd))], T0).unchanged == 1
    store.save_decisions({"NM-000001": odd}, T0)
    assert store.decisions() == {"NM-000001": odd}


def test_text_sorts_byte_by_byte_on_every_backend(store):
    # "B" < "_" < "a" < "é" in bytes; a locale's collation would order them otherwise
    store.add_raw([response(rid, "x", source=src)
                   for src in ("a", "B", "é", "_") for rid in ("r-1", "R2", "r_3")], T0)
    latest = store.latest_responses()
    assert list(zip(latest.source, latest.response_id, strict=True)) == sorted(
        (src, rid) for src in ("a", "B", "é", "_") for rid in ("r-1", "R2", "r_3"))


def test_raw_responses_and_audit_are_append_only(store):
    store.add_raw([response("r1", SECRET)], T0)
    store.audit([AuditEvent("report", "NM-000001", "received", SECRET)], T0)
    statements = ["UPDATE raw_responses SET first_seen = 'x'", "DELETE FROM raw_responses",
                  "UPDATE audit SET reason = 'x'", "DELETE FROM audit"]
    if store.backend == "postgresql":  # row triggers do not see TRUNCATE: its own does
        statements += ["TRUNCATE raw_responses", "TRUNCATE audit"]
    for sql in statements:  # the database refuses, whoever asks
        raw = store.engine.raw_connection()
        try:
            with pytest.raises(driver_errors(), match="append-only"):
                raw.cursor().execute(sql)
        finally:
            raw.rollback()
            raw.close()
    for table in ("raw_responses", "audit"):  # through the store: one line, no data
        with pytest.raises(StoreError) as failed, store.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
        assert str(failed.value) == (f"the store {store.name} refused to change or delete "
                                     f"stored rows ({table} is append-only): nothing was changed")
    assert len(store.raw_versions("g", "r1")) == 1 and len(store.audit_trail()) == 1


def test_other_errors_stay_one_line_without_sql_or_data(store):
    with pytest.raises(StoreError) as failed, store.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table WHERE x = :x"), {"x": SECRET})
    kind = "SQLITE_ERROR" if store.backend == "sqlite" else "UndefinedTable"
    assert str(failed.value) == f"the store {store.name} could not be read ({kind})"


def test_links_are_unique_per_response(store):
    links = pd.DataFrame([{"source": "g", "response_id": "r1", "report_id": "NM-000001",
                           "how": "new"}])
    store.add_links(links, T0)
    with pytest.raises(StoreError) as failed:
        store.add_links(links, T0)
    kind = "SQLITE_CONSTRAINT_PRIMARYKEY" if store.backend == "sqlite" else "UniqueViolation"
    assert str(failed.value) == f"the store {store.name} could not be written ({kind})"


def test_the_links_a_few_responses_need_are_those_of_their_reports(store, monkeypatch):
    """A run combining a few reports again reads their links alone: every link of each
    report a given response belongs to (a response id on another form is another
    response), and of each report quoted; many responses read every link."""
    rows = [("g", "r1", "NM-000001", "new"), ("m", "r1", "NM-000002", "new"),
            ("g", "r2", "NM-000001", "reference"), ("m", "r9", "NM-000003", "new"),
            ("g", "r3", "NM-000004", "new")]
    store.add_links(pd.DataFrame(rows, columns=["source", "response_id", "report_id", "how"]),
                    T0)

    def read(responses: list[tuple[str, str]], reports: tuple[str, ...] = ()) -> list[tuple]:
        frame = pd.DataFrame(responses, columns=["source", "response_id"])
        return sorted(store.links(frame, reports).itertuples(index=False, name=None))

    assert read([("g", "r1"), ("g", "new")]) == sorted(r for r in rows if r[2] == "NM-000001")
    assert read([("m", "new")], ("NM-000003", "NM-999999")) == [rows[3]]
    assert read([]) == []
    monkeypatch.setattr("connectors.store.FEW", 1)
    assert read([("g", "r1"), ("m", "r1")]) == sorted(rows)


# -- ids, reports, state ---------------------------------------------------------------------

def test_counters_never_reuse_numbers(open_store):
    assert open_store().allocate("report", 3) == [1, 2, 3]
    assert open_store().allocate("report", 2) == [4, 5]
    assert open_store().allocate("pattern", 1) == [1]
    assert open_store().peek("pattern", 2) == [2, 3]  # not taken
    open_store().reserve("pattern", 2)
    open_store().reserve("pattern", 1)  # never down
    assert open_store().allocate("pattern", 1) == [3]


def test_reports_only_changed_ones_are_written(store):
    rec = {"report_id": "NM-000001", "version": 1, "category": "medication"}
    assert store.save_reports([rec], T0) == 1
    assert store.save_reports([rec], T0) == 0
    assert store.save_reports([{**rec, "version": 2}], T0) == 1
    assert store.report_count() == 1


def test_what_the_loop_remembers_is_upserted_or_replaced(store):
    store.save_decisions({"NM-000001": {"dq": "incomplete"}}, T0)
    store.save_decisions({"NM-000001": {"dq": "complete"}, "NM-000002": {"dq": "x"}}, T0)
    assert store.decisions() == {"NM-000001": {"dq": "complete"}, "NM-000002": {"dq": "x"}}
    store.replace_patterns({"PT-0001": {"status": "open"}}, T0)
    store.replace_patterns({"PT-0002": {"n": 2}}, T0)
    assert store.patterns() == {"PT-0002": {"n": 2}}
    store.save_manager_values("Reports", {"NM-000001": {"Triage status": "Triaged"}}, T0)
    assert store.manager_values("Reports") == {"NM-000001": {"Triage status": "Triaged"}}
    assert store.manager_values("Actions") == {}
    store.add_tracker_keys("Reports", ["NM-000001"], T0)
    store.add_tracker_keys("Reports", iter(["NM-000002"]), T0)
    assert store.tracker_keys("Reports") == {"NM-000001", "NM-000002"}
    store.save_notices("unmapped", ["form: 'Q' (3 responses)"], T0)
    assert (store.notices("unmapped"), store.notices("warnings")) == (
        ["form: 'Q' (3 responses)"], [])


def test_the_kept_view_is_replaced_part_by_part_with_its_memory(store):
    assert (store.view_parts(), store.results_memory()) == ([], None)
    first = {"000000": {"report_id": ["NM-000001"], "problems": [["a\x00b", "\u202eRTL"]]},
             "000001": {"report_id": ["NM-005000"], "problems": [[]]}}
    store.save_view(first, {"raw": 2, "proofs": {"g": {"occurred_at": ["13/11/2026", None]}}},
                    T0)
    store.save_view({"000001": {"report_id": ["NM-005000", "NM-005001"], "problems": [[], []]}},
                    {"raw": 3}, T0)
    assert store.view_parts() == [first["000000"], {"report_id": ["NM-005000", "NM-005001"],
                                                    "problems": [[], []]}]
    assert store.results_memory() == {"raw": 3}


def test_responses_stored_after_a_mark_or_with_given_ids(store):
    store.add_raw([response("r1", "a"), response("r2", "b")], T0)
    mark = store.last_raw_id()
    store.add_raw([response("r2", "b, edited", T0 + pd.Timedelta(hours=1)),
                   response("r3", "c")], T0)
    after = store.latest_responses(after=mark)
    assert sorted(after["response_id"]) == ["r2", "r3"]
    assert after.set_index("response_id").loc["r2", "version"] == 2
    assert store.latest_responses(after=store.last_raw_id()).empty
    assert sorted(store.latest_responses(response_ids=["r1", "r3"])["response_id"]) == [
        "r1", "r3"]
    assert store.decisions(["NM-000009"]) == {}


def test_a_source_is_remembered_field_by_field(store):
    assert store.source_memory("form") == SourceMemory()
    store.remember_source("form", SourceMemory("w1", "2026-11-23", ["a warning"], {"q": "Q"}),
                          T0)
    # No new watermark (a file source) keeps the last one; the rest is replaced.
    store.remember_source("form", SourceMemory(None, "2026-11-24", [], {"q": "Q2"}), T0)
    assert store.source_memory("form") == SourceMemory("w1", "2026-11-24", [], {"q": "Q2"})
    assert store.source_memory("other") == SourceMemory()


# -- runs and transactions -------------------------------------------------------------------

def test_an_atomic_block_commits_state_and_audit_together_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.atomic():
        store.save_decisions({"NM-000001": {"dq_status": "complete"}}, T0)
        store.audit([AuditEvent("report", "NM-000001", "received", "version 1")], T0)
        raise RuntimeError("killed")
    assert store.decisions() == {} and store.audit_trail() == []
    with store.atomic():
        store.save_decisions({"NM-000001": {"dq_status": "complete"}}, T0)
        store.audit([AuditEvent("report", "NM-000001", "received", "version 1")], T0)
    assert list(store.decisions()) == ["NM-000001"] and len(store.audit_trail()) == 1


def test_a_run_left_running_is_interrupted_by_the_next(store):
    first = store.begin_run(T0)
    store.audit([AuditEvent("report", "NM-000001", "received", "v1")] * 2, T0)
    second = store.begin_run(T0)
    trail = store.audit_trail(str(first))
    assert [e["event"] for e in trail] == ["run interrupted"]
    assert trail[0]["reason"] == "the run stopped part-way: 2 received"
    store.finish_run(T0, "ok", {"summary": "done"})
    with store.engine.connect() as conn:
        status = dict(conn.execute(select(runs.c.run_id, runs.c.status)).all())
    assert (status[first], status[second]) == ("interrupted", "ok")

    assert store.previous_run() == {"status": "interrupted", "summary": {
        "summary": "interrupted after: 2 received"}}
    store.begin_run(T0)
    assert store.previous_run() == {"status": "ok", "summary": {"summary": "done"}}


def test_the_change_marks_move_with_responses_links_and_the_outbox(store):
    marks = [store.change_marks()]
    store.add_raw([response("r1", "a")], T0)
    store.add_raw([response("r1", "a")], T0)  # a re-read: no change
    marks.append(store.change_marks())
    store.add_links(pd.DataFrame([{"source": "g", "response_id": "r1",
                                   "report_id": "NM-000001", "how": "new"}]), T0)
    store.enqueue([ack(1)], T0)
    marks.append(store.change_marks())
    store.mark_failed(ack(1).key, "451 try later", T0)
    marks.append(store.change_marks())
    store.mark_sent(ack(1).key, T0)
    marks.append(store.change_marks())
    assert len({repr(m) for m in marks}) == len(marks)
    assert store.change_marks() == marks[-1]


# -- outbox ----------------------------------------------------------------------------------

def test_outbox_is_idempotent_by_key(store):
    item = ack(1)
    assert len(store.enqueue([item, item], T0)) == 1
    assert store.enqueue([item], T0) == []
    assert [p["key"] for p in store.pending()] == ["ack:NM-000001"]
    store.mark_failed("ack:NM-000001", "down", T0)
    assert store.pending()[0]["attempts"] == 1
    store.mark_sent("ack:NM-000001", T0)
    assert store.pending() == []
    store.enqueue([ack(2)], T0)
    store.mark_failed("ack:NM-000002", "refused", T0, final=True)
    assert store.pending() == []  # a final failure is not retried
    assert store.outbox_frame().set_index("key")["given_up"].to_dict() == {
        "ack:NM-000001": False, "ack:NM-000002": True}
    assert store.outbox_keys() == {"ack:NM-000001", "ack:NM-000002"}


def test_a_temporary_refusal_waits_longer_each_time_then_gives_up(store):
    store.enqueue([ack(1)], T0)
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


# -- schema: versioned migrations ------------------------------------------------------------

def test_an_empty_store_is_created_at_the_newest_revision_as_the_code_describes_it(
        open_store):
    store = open_store()
    state = store.schema_status()
    assert state.at_head and state.current == migrations.head()
    assert store.schema_version() == SCHEMA_VERSION  # what older releases check
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_two_first_runs_at_once_create_the_store_once(open_store):
    start = threading.Barrier(3)

    def first_run() -> str:
        start.wait()
        return open_store().schema_status().current

    with ThreadPoolExecutor(3) as pool:  # three machines' first runs on one empty store
        assert list(pool.map(lambda _: first_run(), range(3))) == [migrations.head()] * 3
    assert open_store().schema_version() == SCHEMA_VERSION  # one meta row, not three


def test_a_schema_1_store_of_an_earlier_release_is_adopted_and_keeps_its_outbox(open_store):
    store = open_store()
    store.enqueue([ack(1)], T0)
    make_legacy(store, 1)
    legacy = open_store(upgrade=True)  # what `nearmiss migrate` (or a SQLite run) does
    assert legacy.schema_status().at_head and legacy.schema_version() == SCHEMA_VERSION
    assert [p["key"] for p in legacy.pending(T0)] == ["ack:NM-000001"]
    legacy.mark_failed("ack:NM-000001", "451", T0)  # the column schema 2 added is there
    assert legacy.pending(T0) == []


def test_a_store_behind_stops_the_run_until_migrated(open_store, where):
    make_legacy(open_store(), 2)
    with pytest.raises(StoreError) as failed:
        open_store(upgrade=False)  # a PostgreSQL store's default
    name = str(where) if isinstance(where, Path) else where.url
    assert str(failed.value) == (
        f"the store {name} is at revision none (schema 2 of a release before versioned "
        f"migrations), this release needs {migrations.head()}: run `nearmiss migrate`")
    assert Store.connect(where).migrate() == (
        "none (schema 2 of a release before versioned migrations)", migrations.head())
    assert open_store(upgrade=False).schema_status().at_head


def test_a_failed_migration_changes_nothing(open_store, monkeypatch):
    store = open_store()
    store.enqueue([ack(1)], T0)
    make_legacy(store, 1)

    def killed(*_args, **_kwargs):
        raise RuntimeError("killed between the ALTER TABLE and the stamp")

    monkeypatch.setattr(migrations.command, "stamp", killed)
    with pytest.raises(RuntimeError, match="killed"):
        open_store(upgrade=True)
    monkeypatch.undo()
    with store.engine.connect() as conn:  # still the schema-1 store it was: DDL rolled back
        assert migrations.status(conn).legacy == 1
        columns = list(conn.execute(text("SELECT * FROM outbox")).keys())
        assert "next_attempt_at" not in columns
    assert [p["key"] for p in open_store(upgrade=True).pending(T0)] == ["ack:NM-000001"]


def test_a_store_of_a_newer_release_is_refused(open_store, where):
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"was written by a newer Nearmiss Loop \(revision "
                                         r"9999; this release knows up to \w+\): upgrade"):
        open_store()
    with pytest.raises(StoreError, match="newer Nearmiss Loop"):
        Store.connect(where).migrate()


# -- moving a store --------------------------------------------------------------------------

def test_a_store_is_copied_whole_and_goes_on_where_it_was(tmp_path, open_store):
    source = Store.open(tmp_path / "old" / "nearmiss.db")
    first = source.begin_run(T0)
    source.add_raw([response("r1", SECRET), response("r2", "b")], T0)
    source.add_raw([response("r1", SECRET + " (edited)", T0 + pd.Timedelta(hours=1))], T0)
    source.allocate("report", 2)
    source.save_reports([{"report_id": "NM-000001", "version": 2}], T0)
    source.replace_patterns({"PT-0001": {"members": ["NM-000001"]}}, T0)
    source.enqueue([ack(1), ack(2)], T0)
    source.mark_sent("ack:NM-000001", T0)
    source.audit([AuditEvent("report", "NM-000001", "received", "v1")] * 3, T0)
    source.finish_run(T0, "ok", {"summary": "2 new"})

    target = open_store()
    copied = copy_store(source, target)
    assert copied["raw_responses"] == 3 and copied["audit"] == 3 and copied["runs"] == 1
    for table in metadata.sorted_tables:
        with source.engine.connect() as a, target.engine.connect() as b:
            order = list(table.primary_key.columns)
            assert [dict(r) for r in b.execute(select(table).order_by(*order)).mappings()] \
                == [dict(r) for r in a.execute(select(table).order_by(*order)).mappings()], \
                table.name
    # numbers go on from where the old store was: runs, audit ids, counters
    assert target.begin_run(T0) == first + 1
    target.audit([AuditEvent("report", "NM-000003", "received", "v1")], T0)
    assert [e["id"] for e in target.audit_trail()] == [1, 2, 3, 4]
    assert target.allocate("report", 1) == [3]
    with pytest.raises(StoreError, match=r"is not empty \(\d+ rows in \w+\): copy only into "
                                         "an empty database"):
        copy_store(source, target)
    source.close()
