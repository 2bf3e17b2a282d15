"""The store's schema, as versioned migrations (alembic), for SQLite and PostgreSQL alike.

`versions/` holds one file per schema change; `0001` is the schema the last release before
versioned migrations wrote (its "schema 2"). The store calls this module: `status` says
where a store stands, `upgrade` takes it to the newest revision (what `nearmiss migrate`
does, and what opening an empty store does).

A store from those earlier releases has no `alembic_version` table but a `meta` row
`schema_version` (1 or 2): `upgrade` adopts it (adds what schema 2 added to schema 1,
then stamps it `0001`) instead of creating tables it already has.

A new revision is a file in `versions/` whose `down_revision` is the current head. Write
it for both backends (`op.batch_alter_table` for SQLite's ALTER TABLE limits), and raise
the `meta` schema_version above 2 when releases before versioned migrations, which only
read that row, would misuse the new schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema of the releases before versioned migrations
LEGACY_SCHEMA = 2  # their last `meta` schema_version, which BASELINE is
VERSION_TABLE = "alembic_version"
# The tables of the store: any of them present means the database holds a store.
STORE_TABLES = frozenset({"meta", "runs", "raw_responses", "counters", "response_links",
                          "reports", "entity_state", "outbox", "audit"})


@dataclass(frozen=True)
class Status:
    """Where a store's schema stands against this release's migrations."""

    head: str  # the newest revision this release knows
    current: str | None = None  # the store's revision; None for an unversioned one
    legacy: int | None = None  # meta schema_version of a store from before migrations
    empty: bool = False  # none of the store's tables: created at head when opened
    known: bool = True  # False: a revision a newer release wrote

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def revision(self) -> str:
        """The store's revision as messages say it."""
        if self.current is not None:
            return self.current
        if self.legacy is not None:
            return f"none (schema {self.legacy} of a release before versioned migrations)"
        return "none (no store yet)" if self.empty else "none"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the bundled migrations, on `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    """The newest revision this release knows."""
    heads = ScriptDirectory.from_config(config()).get_heads()
    assert len(heads) == 1, f"the migrations must form one line, not {heads}"
    return heads[0]


@cache
def _revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def status(connection: Connection) -> Status:
    """Where the store on `connection` stands; reads only."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables:
        current = MigrationContext.configure(connection).get_current_revision()
        return Status(head(), current, known=current is None or current in _revisions())
    if "meta" in tables:
        value = connection.execute(text(
            "SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
        legacy = int(value) if value is not None and str(value).isdigit() else 0
        return Status(head(), legacy=legacy, known=1 <= legacy <= LEGACY_SCHEMA)
    # Some of the store's tables without a version: not a store this release can tell.
    return Status(head(), empty=not tables & STORE_TABLES, known=not tables & STORE_TABLES)


def upgrade(connection: Connection) -> Status:
    """Bring the store on `connection` to the newest revision, in the caller's transaction
    (which the caller commits): an empty store is created, an unversioned one from an
    earlier release adopted, a versioned one migrated. Returns the status it started from.

    The caller makes sure no one else migrates at the same time (the store takes a lock).
    """
    before = status(connection)
    if not before.known:
        raise ValueError(f"unknown revision {before.revision()}")
    if before.legacy is not None:
        adopt(connection, before.legacy)
    if not before.at_head:
        command.upgrade(config(connection), "head")
    return before


def adopt(connection: Connection, schema: int) -> None:
    """Bring an unversioned store of schema 1 or 2 to schema 2 and stamp it BASELINE."""
    if schema < 1:
        raise ValueError(f"unversioned store of unknown schema {schema}")
    if schema < 2:  # schema 2 added when a temporarily refused email is tried again
        collate = ' COLLATE "C"' if connection.dialect.name == "postgresql" else ""
        connection.execute(text(
            f"ALTER TABLE outbox ADD COLUMN next_attempt_at VARCHAR{collate}"))
        connection.execute(text(
            f"UPDATE meta SET value = '{LEGACY_SCHEMA}' WHERE key = 'schema_version'"))
    command.stamp(config(connection), BASELINE)
