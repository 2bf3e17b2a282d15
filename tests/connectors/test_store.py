import sqlite3

import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError

from connectors.base import AuditEvent, RawResponse
from connectors.errors import StoreError
from connectors.store import OutboxItem, Store

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
    assert Store.open(path).schema_version() == 1


def test_outbox_is_idempotent_by_key(store):
    item = OutboxItem("ack:NM-000001", "acknowledgement", "NM-000001", ["a@x.org"], "S", "T")
    assert len(store.enqueue([item, item], T0)) == 1
    assert store.enqueue([item], T0) == []
    assert [p["key"] for p in store.pending()] == ["ack:NM-000001"]
    store.mark_failed("ack:NM-000001", "down")
    assert store.pending()[0]["attempts"] == 1
    store.mark_sent("ack:NM-000001", T0)
    assert store.pending() == []
    other = OutboxItem("ack:NM-000002", "acknowledgement", "NM-000002", ["x"], "S", "T")
    store.enqueue([other], T0)
    store.mark_failed("ack:NM-000002", "refused", final=True)
    assert store.pending() == []  # a final failure is not retried


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
    with pytest.raises(IntegrityError):
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
