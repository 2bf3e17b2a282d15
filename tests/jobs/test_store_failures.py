"""A store or lock file that cannot be written: one line, and nothing stored is lost."""

import logging

import pandas as pd
import pytest
from sqlalchemy import event, select

from connectors.errors import StoreError
from connectors.store import Store, runs
from jobs.lock import run_lock
from jobs.pipeline import run
from jobs.wiring import build
from tests.fakes.deployment import Deployment

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC").to_pydatetime()


def test_a_file_where_the_lock_folder_should_be(tmp_path):
    (tmp_path / "store").write_text("not a folder")
    with pytest.raises(StoreError) as failed, run_lock(tmp_path / "store" / "nearmiss.lock"):
        pass
    assert str(failed.value) == (
        f"cannot create the lock file nearmiss.lock in {tmp_path / 'store'}: part of that "
        "path is a file, not a folder; move the file or point store.path elsewhere")


def test_a_folder_where_the_lock_file_should_be(tmp_path):
    (tmp_path / "nearmiss.lock").mkdir()
    with pytest.raises(StoreError) as failed, run_lock(tmp_path / "nearmiss.lock"):
        pass
    assert str(failed.value) == (f"cannot create the lock file nearmiss.lock in {tmp_path}: "
                                 "a folder of that name is in the way; remove it")


def test_a_crash_is_not_masked_when_the_store_cannot_record_it(tmp_path, caplog):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00")
    config = dep.config()
    c = build(config)

    class Interrupted:
        """The run is stopped (Ctrl-C) just as the store's file turns read-only."""

        name = "google-form"

        def pull(self, watermark):
            c.store.engine.dispose()

            @event.listens_for(c.store.engine, "connect")
            def _read_only(dbapi_conn, _record):
                dbapi_conn.execute("PRAGMA query_only=ON")  # SQLite's own SQLITE_READONLY

            raise KeyboardInterrupt

    c.sources = [Interrupted()]
    with caplog.at_level(logging.DEBUG, logger="nearmiss"), pytest.raises(KeyboardInterrupt):
        run(config, now=NOW, connectors=c)
    assert any("could not record the crash: the store" in r.getMessage() and
               "is read-only" in r.getMessage() for r in caplog.records)
    with Store.open(config.settings.store.path).engine.connect() as conn:
        assert conn.execute(select(runs.c.status)).scalars().all() == ["running"]
