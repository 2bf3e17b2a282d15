"""The store: a SQLite file, or a PostgreSQL database, through the same SQLAlchemy Core code.

What it keeps:
- `raw_responses`: every version of every submission, append-only (a trigger refuses
  UPDATE and DELETE), so an inspector can see exactly what a reporter sent and when;
- `response_links` and `counters`: which report each response belongs to; report, pattern
  and action numbers come from counters that only go up, so an id is never reused;
- `reports`: the current normalised reports (a materialised view of the raw table);
- `entity_state`: the last known state of decisions, patterns, manager values, actions,
  used to tell what changed since the previous run;
- `outbox`: emails owed, keyed by an idempotency key so nothing is queued or sent twice;
- `audit`: append-only log of every automated decision and every manager change seen.

Timestamps are stored as ISO-8601 UTC text so the store reads the same from any tool; text
that is compared or sorted compares byte by byte on both backends (collation "C" on
PostgreSQL), so ids, sources and times order the same whatever the database's locale. JSON
columns are PostgreSQL's `json`, not `jsonb`: like SQLite it keeps the text as written (key
order, numbers, a `\\u0000` a submission carried), and nothing queries inside it. The
schema is versioned by the alembic migrations of the `migrations` package.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection, ExceptionContext, make_url

from connectors.base import AuditEvent, RawResponse
from connectors.errors import StoreError

if TYPE_CHECKING:
    from config.settings import StoreSettings
    from migrations import Status

# The `meta` schema_version releases before versioned migrations wrote and read; the
# schema itself is versioned by the migrations (`migrations.head()`).
SCHEMA_VERSION = 2
# A message refused this often (about two days of a growing delay) is left for a person.
MAX_ATTEMPTS = 10
RETRY_FIRST, RETRY_CAP = pd.Timedelta(minutes=15), pd.Timedelta(hours=12)
# Up to this many rows are looked up by key (a run's few new reports among 100,000); more
# are read whole, in one scan rather than a statement this long.
FEW = 500

# Text that is compared or sorted: byte order on PostgreSQL too (see the module docstring).
Str = String().with_variant(String(collation="C"), "postgresql")

metadata = MetaData()

meta = Table("meta", metadata, Column("key", Str, primary_key=True), Column("value", Text))

runs = Table(
    "runs", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Str, nullable=False),
    Column("finished_at", Str),
    Column("status", Str, nullable=False),
    Column("summary", JSON),
)

raw_responses = Table(
    "raw_responses", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Str, nullable=False),
    Column("response_id", Str, nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", Str, nullable=False),
    Column("submitted_at", Str, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("first_seen", Str, nullable=False),
    Column("run_id", Integer),
    UniqueConstraint("source", "response_id", "version"),
)

counters = Table(
    "counters", metadata,
    Column("name", Str, primary_key=True),
    Column("value", Integer, nullable=False),
)

response_links = Table(
    "response_links", metadata,
    Column("source", Str, primary_key=True),
    Column("response_id", Str, primary_key=True),
    Column("report_id", Str, nullable=False, index=True),
    Column("linked_at", Str, nullable=False),
    Column("how", Str, nullable=False),  # "new" or "reference"
)

reports = Table(
    "reports", metadata,
    Column("report_id", Str, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("data_hash", Str, nullable=False),
    Column("data", JSON, nullable=False),
    Column("updated_at", Str, nullable=False),
)

entity_state = Table(
    "entity_state", metadata,
    Column("kind", Str, primary_key=True),
    Column("entity_id", Str, primary_key=True),
    Column("data", JSON, nullable=False),
    Column("updated_at", Str, nullable=False),
)

outbox = Table(
    "outbox", metadata,
    Column("key", Str, primary_key=True),
    Column("kind", Str, nullable=False),
    Column("entity_id", Str, nullable=False, index=True),
    Column("recipients", JSON, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text),
    Column("created_at", Str, nullable=False),
    Column("sent_at", Str),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", Str),  # a temporary refusal waits until then (schema 2)
    # inline images, each {"cid", "name", "png" (base64)} (revision 0002)
    Column("images", JSON),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Str, nullable=False),
    Column("run_id", Integer),
    Column("entity", Str, nullable=False),
    Column("entity_id", Str, nullable=False, index=True),
    Column("event", Str, nullable=False),
    Column("reason", Text, nullable=False),
    Column("details", JSON),
)

_APPEND_ONLY = ("raw_responses", "audit")


def _frame(rows: Sequence[Any], columns: list[str]) -> pd.DataFrame:
    """Result rows as a DataFrame; as plain tuples, since pandas probes each SQLAlchemy row
    for attributes it does not have (half a second over 100,000 links)."""
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def iso(ts: datetime | pd.Timestamp) -> str:
    """UTC ISO-8601 text with microseconds, so stored times sort as text."""
    return pd.Timestamp(ts).tz_convert(UTC).isoformat(timespec="microseconds")


def content_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


_APPEND_ONLY_REFUSAL = re.compile(rf"^({'|'.join(_APPEND_ONLY)}) is append-only$")


def store_error(error: sqlite3.Error, path: Path | str, *, reading: bool = False) -> StoreError:
    """The one-line StoreError, naming the cause and the fix, for SQLite's `error` on the
    store at `path`; `reading` says the failed statement only read.

    The cause comes from SQLite's result code (its message when a code is missing), so the
    line never carries SQL, parameters or anything read from the file.
    """
    code = getattr(error, "sqlite_errorcode", None)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes keep it there
    said = str(error)

    def cause(codes: tuple[int, ...], *words: str) -> bool:
        if primary is not None:
            return primary in codes
        return any(word in said for word in words)

    if cause((sqlite3.SQLITE_READONLY,), "readonly database"):
        message = (f"the store {path} is read-only: give the user that runs nearmiss write "
                   "access to it and its folder")
    elif cause((sqlite3.SQLITE_FULL,), "database or disk is full"):
        message = (f"the disk holding the store {path} is full: free some space and run again "
                   "(nothing stored was lost)")
    elif cause((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED), "database is locked",
               "table is locked"):
        message = (f"the store {path} is locked by another program: close it (a database "
                   "browser?) and run again")
    elif cause((sqlite3.SQLITE_CANTOPEN,), "unable to open database"):
        message = (f"the store {path} cannot be opened: it must be a file (not a folder) in "
                   "a folder the user that runs nearmiss can write to")
    elif cause((sqlite3.SQLITE_IOERR,), "disk I/O error"):
        message = (f"the disk holding the store {path} failed to read or write it ({name}): "
                   "check the disk (or network share) is connected and healthy, then run "
                   "again")
    elif cause((sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB), "malformed",
               "not a database"):
        message = (f"the store {path} is damaged or is not a Nearmiss Loop store ({name}): "
                   "restore it from a backup, or point store.path at the right file")
    elif (refused := _APPEND_ONLY_REFUSAL.match(said)) and cause(
            (sqlite3.SQLITE_CONSTRAINT,), "append-only"):
        message = (f"the store {path} refused to change or delete stored rows "
                   f"({refused.group(1)} is append-only): nothing was changed")
    else:
        message = f"the store {path} could not be {'read' if reading else 'written'} ({name})"
    return StoreError(" ".join(message.splitlines()))  # a path may hold a newline


# A failed connection carries no SQLSTATE: libpq's (or the server's FATAL) text says why.
_PG_CONNECT_CAUSES = (
    ("login", re.compile(r"password authentication failed|no password supplied|"
                         r"role \".*\" does not exist|pg_hba\.conf|authentication failed",
                         re.S)),
    ("database", re.compile(r"database \".*\" does not exist", re.S)),
    ("full", re.compile(r"too many (connections|clients)|remaining connection slots", re.S)),
    ("unreachable", re.compile(r"Connection refused|could not translate host name|"
                               r"timeout expired|No route to host|Network is unreachable|"
                               r"could not connect|Name or service not known", re.S)),
    ("lost", re.compile(r"server closed the connection|terminating connection|"
                        r"connection is lost|consuming input failed|the connection is closed",
                        re.S)),
)


def pg_store_error(error: Exception, name: str, *, reading: bool = False) -> StoreError:
    """The one-line StoreError, naming the cause and the fix, for psycopg's `error` on the
    PostgreSQL store `name` (its URL, which holds no password).

    The cause comes from the SQLSTATE (from libpq's message when a connection failed and
    there is none), so the line never carries SQL, parameters or stored data.
    """
    state = getattr(error, "sqlstate", None) or ""
    kind = type(error).__name__
    said = str(error) if not state else ""  # with a SQLSTATE, the message may quote data
    connect = next((cause for cause, words in _PG_CONNECT_CAUSES if words.search(said)), None)
    primary = getattr(getattr(error, "diag", None), "message_primary", None) or ""
    if connect == "login" or state in ("28000", "28P01"):
        message = (f"the database server refused the login to the store {name}: check the user "
                   "in store.url and the password in the variable store.password_env names")
    elif connect == "database" or state == "3D000":
        message = (f"the database of the store {name} does not exist: create it (createdb) or "
                   "correct the database name at the end of store.url")
    elif connect == "unreachable":
        message = (f"cannot reach the database server of the store {name}: check that it is "
                   "running and that the host and port in store.url are right, then run again")
    elif connect == "full" or state == "53300":
        message = (f"the database server of the store {name} accepts no more connections: "
                   "wait for others to close (or raise max_connections) and run again")
    elif connect == "lost" or state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        message = (f"the connection to the store {name} was lost (the server stopped or "
                   "restarted?): run again once it is back (nothing stored was lost)")
    elif state == "25006":
        message = (f"the store {name} is read-only (a standby server, or a read-only "
                   "transaction or database): point store.url at the primary server, or "
                   "allow writes")
    elif state in ("53100", "53200", "53400"):
        message = (f"the database server of the store {name} is out of disk space or memory "
                   f"({kind}): free some on the server and run again (nothing stored was lost)")
    elif state in ("40001", "40P01"):
        message = (f"the store {name} was changed by another program at the same moment "
                   f"({kind}): run again (nothing stored was lost)")
    elif state == "55P03":
        message = (f"the store {name} is locked by another program (a long transaction or a "
                   "migration?): let it finish and run again")
    elif state == "42501":
        message = (f"the database user of the store {name} lacks a permission on its tables: "
                   "grant it SELECT, INSERT, UPDATE and DELETE on them (or connect as their "
                   "owner)")
    elif state.startswith("XX"):
        message = (f"the store {name} is damaged ({kind}): restore the database from a "
                   "backup")
    elif state == "23001" and (refused := _APPEND_ONLY_REFUSAL.match(primary)):
        message = (f"the store {name} refused to change or delete stored rows "
                   f"({refused.group(1)} is append-only): nothing was changed")
    else:
        message = f"the store {name} could not be {'read' if reading else 'written'} ({kind})"
    return StoreError(" ".join(message.splitlines()))


def _reading(ctx: ExceptionContext) -> bool:
    return (ctx.statement or "").lstrip()[:6].upper() in ("SELECT", "PRAGMA")


def sqlite_engine(path: Path, *, busy_timeout: float = 10.0) -> Engine:
    """An engine on the SQLite file `path` (created owner-only if missing), whose errors are
    one-line StoreErrors. `busy_timeout`: see `Store.open`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder of the store {path} "
            f"({exc.strerror or type(exc).__name__}): create it, or point store.path at a "
            "folder the user that runs nearmiss can write to") from None
    try:
        # The store holds names, emails and person references: a new one is created
        # owner-only (chmod, as the umask may cut touch's mode) before SQLite opens it,
        # which would create it 0644 under the usual umask. SQLite gives its -journal,
        # -wal and -shm files the database file's mode. An existing file keeps its own.
        path.touch(mode=0o600, exist_ok=False)
        path.chmod(0o600)
    except FileExistsError:
        pass  # a folder in its place is SQLite's "cannot be opened" below
    except OSError as exc:
        raise StoreError(
            f"cannot create the store {path} ({exc.strerror or type(exc).__name__}): "
            "point store.path at a folder the user that runs nearmiss can write to"
        ) from None
    engine = create_engine(f"sqlite:///{path}")
    timeout_ms = max(0, round(busy_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cur.close()

    @event.listens_for(engine, "handle_error", retval=True)
    def _one_line(ctx: ExceptionContext) -> BaseException | None:
        # Every failure of a statement, a connect, a COMMIT or a ROLLBACK passes here;
        # what is returned is raised in place of SQLAlchemy's error, whose text carries
        # the SQL and its parameters (report data).
        orig = ctx.original_exception
        if not isinstance(orig, sqlite3.Error):
            return None  # not SQLite's: a bug, reported as an internal error
        return store_error(orig, path, reading=_reading(ctx))

    return engine


def postgresql_engine(url: str, password: str | None = None, *, lock_timeout: float = 10.0,
                      application_name: str = "nearmiss") -> Engine:
    """An engine on the PostgreSQL store at `url` (a store.url: no password in it), whose
    errors are one-line StoreErrors naming `url`.

    `lock_timeout` is how many seconds a statement waits for a lock another program holds
    on a table before the run gives up with a "locked" error, as SQLite's busy timeout.
    Connecting gives up after 10 seconds unless the URL says `connect_timeout`.
    """
    import psycopg  # only a PostgreSQL store needs the driver

    address = make_url(url).set(drivername="postgresql+psycopg")
    if password is not None:
        address = address.set(password=password)
    # Settings go in libpq's `options`, so each connection starts with them (a SET would be
    # undone by the rollback of its first transaction); the URL's own options come first.
    given = address.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    args: dict[str, Any] = {"options": f"{given} -c lock_timeout={round(lock_timeout * 1000)}"
                                       .strip()}
    for key, value in (("connect_timeout", 10), ("application_name", application_name)):
        if key not in address.query:
            args[key] = value
    engine = create_engine(address.difference_update_query(["options"]), connect_args=args)

    @event.listens_for(engine, "handle_error", retval=True)
    def _one_line(ctx: ExceptionContext) -> BaseException | None:
        orig = ctx.original_exception  # see sqlite_engine: never SQL nor parameters
        if not isinstance(orig, psycopg.Error):
            return None
        return pg_store_error(orig, url, reading=_reading(ctx))

    return engine


def advisory_key(conn: Connection, purpose: str) -> int:
    """The PostgreSQL advisory lock key for `purpose` ("run", "migrate") on the store that
    `conn` reaches.

    An advisory lock is already scoped to one database; the key adds the schema the store's
    tables are created in (the first of the search path). So every machine that reaches one
    store agrees on the key however its URL is spelled (a host name or an address, another
    user), and stores in two schemas of one database do not block each other.
    """
    schema = conn.execute(select(func.current_schema())).scalar_one()
    digest = hashlib.blake2b(f"nearmiss {purpose} {schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class RawAdded:
    new: int = 0
    versions: int = 0
    unchanged: int = 0
    stale: int = 0


@dataclass(frozen=True)
class SourceMemory:
    """What a run remembers of one form source for the next."""

    watermark: str | None = None  # where an incremental read resumes
    full_read_on: str | None = None  # the local day of the last full read
    warnings: list[str] = field(default_factory=list)  # what its last parse said of it
    questions: dict[str, str] = field(default_factory=dict)  # question key -> title
    # questions taken off the form (key -> title): the answers given to them are kept
    retired: dict[str, str] = field(default_factory=dict)


Notice = Literal["unmapped", "warnings"]


@dataclass(frozen=True)
class OutboxItem:
    key: str  # idempotency key: kind + entity (+ date for repeating kinds)
    kind: str
    entity_id: str
    recipients: list[str]
    subject: str
    body_text: str
    body_html: str | None = None
    # images the HTML shows inline (src="cid:<cid>"): {"cid", "name", "png" (base64)}
    images: list[dict[str, str]] | None = None


class Store:
    """All reads and writes of the store; one instance per run."""

    def __init__(self, engine: Engine, name: str | None = None) -> None:
        self.engine = engine
        self.name = name or engine.url.render_as_string(hide_password=True)  # for messages
        self.run_id: int | None = None
        self._conn: Connection | None = None  # the transaction of an `atomic` block

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Everything written inside the block commits together or not at all: state and the
        audit events that explain it, so a run killed at any point loses neither alone."""
        if self._conn is not None:
            yield
            return
        with self.engine.begin() as conn:
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None

    def _write(self) -> AbstractContextManager[Connection]:
        return nullcontext(self._conn) if self._conn is not None else self.engine.begin()

    def _read(self) -> AbstractContextManager[Connection]:
        return nullcontext(self._conn) if self._conn is not None else self.engine.connect()

    @classmethod
    def connect(cls, where: Path | StoreSettings, *, busy_timeout: float = 10.0) -> Store:
        """The store at `where` (a SQLite file, or the config's store settings), its schema
        not looked at: `open` is what a run uses.

        `busy_timeout` is how many seconds a statement waits for another program's lock on
        the file (on a PostgreSQL table) before the run gives up with a "locked" error.
        """
        if isinstance(where, Path):
            return cls(sqlite_engine(where, busy_timeout=busy_timeout), str(where))
        if where.url is None:
            assert where.path is not None  # the settings hold one or the other
            return cls(sqlite_engine(where.path, busy_timeout=busy_timeout), str(where.path))
        if where.password_env and where.password() is None:
            # `nearmiss explain` loads the config without the credential check
            raise StoreError(f"store.password_env: environment variable {where.password_env} "
                             "is not set: export the database password in it")
        return cls(postgresql_engine(where.url, where.password(), lock_timeout=busy_timeout),
                   where.url)

    @classmethod
    def open(cls, where: Path | StoreSettings, *, busy_timeout: float = 10.0,
             upgrade: bool | None = None) -> Store:
        """Open the store at `where` (see `connect`) and check its schema against this
        release's migrations (`check_schema`)."""
        store = cls.connect(where, busy_timeout=busy_timeout)
        try:
            store.check_schema(upgrade=upgrade)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the store's connections (a PostgreSQL server counts them)."""
        self.engine.dispose()

    @property
    def backend(self) -> str:
        """The backend: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    # -- schema -----------------------------------------------------------------------------

    def schema_status(self) -> Status:
        """Where the store's schema stands against this release's migrations."""
        import migrations

        with self._read() as conn:
            return migrations.status(conn)

    def check_schema(self, *, upgrade: bool | None = None) -> None:
        """Make sure the store has the schema this release needs, or stop with one line.

        An empty store (a new SQLite file, an empty database) is created at the newest
        revision, so a first run just works. A store behind it is migrated when `upgrade`
        says so, by default for a SQLite file only: one machine's own file, used by one
        installed release, migrated in one transaction when that release first opens it,
        as it always was. A PostgreSQL store may be shared by machines not all upgraded
        yet, and its user may not be allowed to change tables: `nearmiss migrate` does it,
        and until then a run stops, saying so. A store a newer release wrote is refused.
        """
        state = self.schema_status()
        if state.at_head:
            return
        self._refuse_unknown(state)
        if state.empty or (upgrade if upgrade is not None else self.backend == "sqlite"):
            self.migrate()
            return
        raise StoreError(f"the store {self.name} is at revision {state.revision()}, this "
                         f"release needs {state.head}: run `nearmiss migrate`")

    def migrate(self) -> tuple[str, str]:
        """Bring the schema to this release's newest revision (creating an empty store,
        adopting one from a release before versioned migrations), in one transaction that
        no other process migrates alongside. Returns the revisions before and after."""
        import migrations

        with self.engine.connect() as conn:
            if self.backend == "sqlite":
                # pysqlite runs DDL outside any transaction unless one is begun explicitly;
                # IMMEDIATE takes the file's write lock now, so a second process waits.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:  # two machines' first runs on one empty database: one creates it
                conn.execute(select(func.pg_advisory_xact_lock(advisory_key(conn, "migrate"))))
            state = migrations.status(conn)  # again, now that no one else migrates
            self._refuse_unknown(state)
            migrations.upgrade(conn)
            conn.commit()
        return state.revision(), state.head

    def _refuse_unknown(self, state: Status) -> None:
        if state.known:
            return
        if state.current is not None or (state.legacy or 0) > SCHEMA_VERSION:
            raise StoreError(f"the store {self.name} was written by a newer Nearmiss Loop "
                             f"(revision {state.revision()}; this release knows up to "
                             f"{state.head}): upgrade nearmiss first")
        raise StoreError(f"the store {self.name} has tables of a store but no schema version "
                         "this release can read: restore it from a backup, or point the "
                         "config's store at an empty database or the right store")

    def schema_version(self) -> int:
        """The `meta` schema_version (what releases before versioned migrations check)."""
        with self._read() as conn:
            return int(conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, now: datetime) -> int:
        """Record a new run. A run still "running" was killed (the run lock lets one run at a
        time): it becomes "interrupted", with what it had recorded."""
        with self._write() as conn:
            for (stale,) in conn.execute(select(runs.c.run_id).where(runs.c.status == "running")):
                done = conn.execute(select(audit.c.event, func.count()).where(
                    audit.c.run_id == stale).group_by(audit.c.event).order_by(audit.c.event)).all()
                what = ", ".join(f"{n} {event}" for event, n in done) or "nothing recorded"
                conn.execute(update(runs).where(runs.c.run_id == stale).values(
                    status="interrupted", summary={"summary": f"interrupted after: {what}"}))
                conn.execute(insert(audit).values(
                    at=iso(now), run_id=stale, entity="run", entity_id=str(stale),
                    event="run interrupted", reason=f"the run stopped part-way: {what}"))
            self.run_id = conn.execute(
                insert(runs).values(started_at=iso(now), status="running")
            ).inserted_primary_key[0]
        return self.run_id

    def finish_run(self, now: datetime, status: str, summary: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(update(runs).where(runs.c.run_id == self.run_id).values(
                finished_at=iso(now), status=status, summary=summary))

    def previous_run(self) -> dict[str, Any] | None:
        """The run before this one (its status and summary), None on the first."""
        with self._read() as conn:
            row = conn.execute(select(runs.c.status, runs.c.summary).where(
                runs.c.run_id < self.run_id).order_by(runs.c.run_id.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def change_marks(self) -> dict[str, Any]:
        """Figures that move whenever a response is stored, a report is linked or the
        outbox changes: equal marks mean none of that happened in between."""
        with self._read() as conn:
            raw = conn.execute(select(func.max(raw_responses.c.id))).scalar_one()
            links = conn.execute(select(func.count()).select_from(response_links)).scalar_one()
            box = conn.execute(select(func.count(), func.count(outbox.c.sent_at),
                                      func.sum(outbox.c.attempts))).one()
        return {"raw": raw, "links": links, "outbox": [int(n or 0) for n in box]}

    # -- raw responses ----------------------------------------------------------------------

    def add_raw(self, responses: Sequence[RawResponse], now: datetime) -> RawAdded:
        """Append new responses and new versions of edited ones; nothing is ever replaced.

        A response is a new version when its content differs from its latest stored version.
        An older copy of a response (a stale export) is ignored, not stored as a regression.
        """
        if not responses:
            return RawAdded()
        sources = {r.source for r in responses}
        latest = select(
            raw_responses.c.source, raw_responses.c.response_id,
            func.max(raw_responses.c.version).label("version"),
        ).where(raw_responses.c.source.in_(sources))
        if len(responses) <= FEW:
            latest = latest.where(raw_responses.c.response_id.in_(
                {r.response_id for r in responses}))
        latest = latest.group_by(raw_responses.c.source, raw_responses.c.response_id).subquery()
        query = select(raw_responses.c.source, raw_responses.c.response_id,
                       raw_responses.c.version, raw_responses.c.content_hash,
                       raw_responses.c.submitted_at).join(latest, and_(
                           raw_responses.c.source == latest.c.source,
                           raw_responses.c.response_id == latest.c.response_id,
                           raw_responses.c.version == latest.c.version))
        rows: list[dict[str, Any]] = []
        counts = {"new": 0, "versions": 0, "unchanged": 0, "stale": 0}
        with self._write() as conn:
            known = {(s, r): (v, h, t) for s, r, v, h, t in conn.execute(query)}
            for resp in responses:
                payload = resp.payload()
                digest = content_hash({k: v for k, v in payload.items()
                                       if k not in ("titles", "notes")})
                # An unreadable form timestamp is replaced by when we first saw the response.
                submitted = iso(resp.submitted_at or now)
                prior = known.get((resp.source, resp.response_id))
                if prior is None:
                    version = 1
                    counts["new"] += 1
                elif prior[1] == digest:
                    counts["unchanged"] += 1
                    continue
                elif submitted < prior[2]:
                    counts["stale"] += 1
                    continue
                else:
                    version = prior[0] + 1
                    counts["versions"] += 1
                known[(resp.source, resp.response_id)] = (version, digest, submitted)
                rows.append({
                    "source": resp.source, "response_id": resp.response_id, "version": version,
                    "content_hash": digest, "submitted_at": submitted, "payload": payload,
                    "first_seen": iso(now), "run_id": self.run_id,
                })
            if rows:
                conn.execute(insert(raw_responses), rows)
        return RawAdded(**counts)

    def latest_responses(self, after: int | None = None,
                         response_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The latest version of every response: source, response_id, version, submitted_at,
        first_submitted_at, payload. `after`: only responses with a version stored after
        that raw id (`last_raw_id`); `response_ids`: only responses with those ids."""
        first = select(
            raw_responses.c.source, raw_responses.c.response_id,
            func.max(raw_responses.c.version).label("version"),
            func.min(raw_responses.c.submitted_at).label("first_submitted_at"),
        )
        if after is not None:
            first = first.where(raw_responses.c.response_id.in_(select(
                raw_responses.c.response_id).where(raw_responses.c.id > after)))
        if response_ids is not None:
            first = first.where(raw_responses.c.response_id.in_(list(response_ids)))
        first = first.group_by(raw_responses.c.source, raw_responses.c.response_id).subquery()
        query = select(
            raw_responses.c.source, raw_responses.c.response_id, raw_responses.c.version,
            raw_responses.c.submitted_at, first.c.first_submitted_at, raw_responses.c.payload,
        ).join(first, and_(
            raw_responses.c.source == first.c.source,
            raw_responses.c.response_id == first.c.response_id,
            raw_responses.c.version == first.c.version,
        )).order_by(raw_responses.c.submitted_at, raw_responses.c.source,
                    raw_responses.c.response_id)
        if after is not None:  # the subquery's filter is by id alone, across sources
            query = query.where(raw_responses.c.id > after)
        with self._read() as conn:
            rows = conn.execute(query).all()
        frame = _frame(rows, ["source", "response_id", "version", "submitted_at",
                                            "first_submitted_at", "payload"])
        for col in ("submitted_at", "first_submitted_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        return frame

    def last_raw_id(self) -> int:
        """The id of the newest stored response version (0 for none)."""
        with self._read() as conn:
            return conn.execute(select(func.max(raw_responses.c.id))).scalar_one() or 0

    def latest_payloads(self, source: str) -> dict[str, dict[str, Any]]:
        """Response id -> payload of its latest version, for one source."""
        frame = self.latest_responses()
        mine = frame[frame["source"] == source]
        return dict(zip(mine["response_id"], mine["payload"], strict=True))

    def raw_versions(self, source: str, response_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(select(raw_responses).where(
                raw_responses.c.source == source, raw_responses.c.response_id == response_id,
            ).order_by(raw_responses.c.version)).mappings()
            return [dict(r) for r in rows]

    # -- ids and links ----------------------------------------------------------------------

    def peek(self, counter: str, n: int) -> list[int]:
        """The next `n` numbers of a counter, not yet taken: a step that writes them
        elsewhere first (the tracker) takes them with `reserve` once that write succeeded."""
        with self._read() as conn:
            current = conn.execute(
                select(counters.c.value).where(counters.c.name == counter)).scalar() or 0
        return list(range(current + 1, current + n + 1))

    def reserve(self, counter: str, upto: int) -> None:
        """Move a counter up to `upto` (never down): numbers up to it are taken."""
        with self._write() as conn:
            current = conn.execute(
                select(counters.c.value).where(counters.c.name == counter)).scalar()
            if current is None:
                conn.execute(insert(counters).values(name=counter, value=upto))
            elif upto > current:
                conn.execute(update(counters).where(counters.c.name == counter)
                             .values(value=upto))

    def allocate(self, counter: str, n: int) -> list[int]:
        """Reserve `n` consecutive numbers of a counter that never goes back."""
        if n <= 0:
            return []
        with self._write() as conn:
            current = conn.execute(
                select(counters.c.value).where(counters.c.name == counter)).scalar()
            if current is None:
                current = 0
                conn.execute(insert(counters).values(name=counter, value=n))
            else:
                conn.execute(update(counters).where(counters.c.name == counter)
                             .values(value=current + n))
        return list(range(current + 1, current + n + 1))

    def links(self, responses: pd.DataFrame | None = None, reports: Collection[str] = ()
              ) -> pd.DataFrame:
        """Every response's link to its report; given `responses` (source, response_id),
        only the links of the reports those responses or the ids `reports` belong to: what
        combining those reports again needs (every link, when they are many)."""
        query = select(response_links.c.source, response_links.c.response_id,
                       response_links.c.report_id, response_links.c.how)
        if responses is not None and len(responses) + len(reports) <= FEW:
            theirs = select(response_links.c.report_id).where(
                tuple_(response_links.c.source, response_links.c.response_id).in_(
                    list(zip(responses["source"], responses["response_id"], strict=True))))
            query = query.where(or_(response_links.c.report_id.in_(theirs),
                                    response_links.c.report_id.in_(list(reports))))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return _frame(rows, ["source", "response_id", "report_id", "how"])

    def add_links(self, links: pd.DataFrame, now: datetime) -> None:
        if links.empty:
            return
        rows = links[["source", "response_id", "report_id", "how"]].to_dict("records")
        for row in rows:
            row["linked_at"] = iso(now)
        with self._write() as conn:
            conn.execute(insert(response_links), rows)

    # -- current reports --------------------------------------------------------------------

    def stored_reports(self) -> list[dict[str, Any]]:
        """Every report as the last run normalised it (the records `save_reports` took)."""
        with self._read() as conn:
            return [row[0] for row in conn.execute(select(reports.c.data).order_by(
                reports.c.report_id)).all()]

    def report_hashes(self, report_ids: Collection[str] | None = None) -> dict[str, str]:
        """Each stored report's content hash; of `report_ids` only, when that is a few."""
        query = select(reports.c.report_id, reports.c.data_hash)
        if report_ids is not None and len(report_ids) <= FEW:
            query = query.where(reports.c.report_id.in_(report_ids))
        with self._read() as conn:
            return dict(conn.execute(query).all())

    def save_reports(self, records: Sequence[dict[str, Any]], now: datetime) -> int:
        """Upsert current reports (JSON-ready dicts with report_id and version); only those
        whose content changed are written. Returns how many were."""
        known = self.report_hashes([r["report_id"] for r in records])
        rows = []
        for r in records:
            digest = content_hash(r)
            if known.get(r["report_id"]) != digest:
                rows.append({"report_id": r["report_id"], "version": int(r["version"]),
                             "data_hash": digest, "data": r, "updated_at": iso(now)})
        if not rows:
            return 0
        with self._write() as conn:
            new = [r for r in rows if r["report_id"] not in known]
            if new:
                conn.execute(insert(reports), new)
            changed = [{"rid": r["report_id"], "v": r["version"], "h": r["data_hash"],
                        "d": r["data"], "u": r["updated_at"]}
                       for r in rows if r["report_id"] in known]
            if changed:
                conn.execute(update(reports).where(reports.c.report_id == bindparam("rid"))
                             .values(version=bindparam("v"), data_hash=bindparam("h"),
                                     data=bindparam("d"), updated_at=bindparam("u")), changed)
        return len(rows)

    def view_parts(self) -> list[dict[str, list[Any]]]:
        """The reports and their results as the last run stored them, in parts of columns
        (`transforms.results.to_parts`), in part order."""
        return [part for _, part in sorted(self._state("view part").items())]

    def results_memory(self) -> dict[str, Any] | None:
        """What the run that last stored results knew when it computed them (`pipeline`)."""
        return self._values().get("results")

    def save_view(self, parts: Mapping[str, dict[str, list[Any]]], memory: dict[str, Any],
                  now: datetime) -> None:
        """Parts of the view (replacing those with the same keys) and what they were
        computed with, together: a run stopped in between keeps the last whole save."""
        self._save_state("view part", parts, now)
        self._save_state("value", {"results": {"value": memory}}, now)

    def report_count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(reports)).scalar_one()

    # -- what the loop remembers between runs -----------------------------------------------

    def source_memory(self, source: str) -> SourceMemory:
        values = self._values()
        return SourceMemory(values.get(f"watermark:{source}"), values.get(f"full read:{source}"),
                            values.get(f"warnings:{source}") or [],
                            values.get(f"questions:{source}") or {},
                            values.get(f"retired:{source}") or {})

    def remember_source(self, source: str, memory: SourceMemory, now: datetime) -> None:
        """Store what differs from what was remembered (a `None` watermark keeps the last)."""
        before = self.source_memory(source)
        keys = {"watermark": "watermark", "full_read_on": "full read", "warnings": "warnings",
                "questions": "questions", "retired": "retired"}
        self._save_state("value", {
            f"{name}:{source}": {"value": getattr(memory, attr)} for attr, name in keys.items()
            if getattr(memory, attr) != getattr(before, attr)
            and not (attr == "watermark" and memory.watermark is None)}, now)

    def notices(self, kind: Notice) -> list[str]:
        """What the audit log was last told of, once: unmapped questions or source warnings."""
        return self._values().get(kind) or []

    def save_notices(self, kind: Notice, items: list[str], now: datetime) -> None:
        self._save_state("value", {kind: {"value": items}}, now)

    def manager_values(self, sheet: str) -> dict[str, dict[str, str]]:
        """Row key -> column -> the value a manager last typed (archives count as `sheet`)."""
        return self._state(f"manager:{sheet}")

    def save_manager_values(self, sheet: str, values: Mapping[str, dict[str, str]],
                            now: datetime) -> None:
        self._save_state(f"manager:{sheet}", values, now)

    def tracker_keys(self, sheet: str) -> set[str]:
        """The row keys a tracker write is known to have put into `sheet`."""
        with self._read() as conn:  # the ids alone: their states are empty
            return set(conn.execute(select(entity_state.c.entity_id).where(
                entity_state.c.kind == f"tracker:{sheet}")).scalars())

    def add_tracker_keys(self, sheet: str, keys: Iterable[str], now: datetime) -> None:
        self._save_state(f"tracker:{sheet}", {k: {} for k in keys}, now)

    def decisions(self, report_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Report id -> what the checks, triage and manager last decided of it (of those
        reports only, when given)."""
        return self._state("decision", report_ids)

    def save_decisions(self, changed: Mapping[str, dict[str, Any]], now: datetime) -> None:
        self._save_state("decision", changed, now)

    def patterns(self) -> dict[str, dict[str, Any]]:
        """Pattern id -> its rule, key, members and status as last recorded."""
        return self._state("pattern")

    def replace_patterns(self, patterns: Mapping[str, dict[str, Any]], now: datetime) -> None:
        self._save_state("pattern", patterns, now, replace=True)

    def held_requests(self) -> dict[str, dict[str, Any]]:
        """Requests for missing items held as a likely mapping problem, by outbox key:
        the report, the fields asked for, and whether a person released them."""
        return self._state("held request")

    def hold_requests(self, items: Mapping[str, dict[str, Any]], now: datetime) -> None:
        self._save_state("held request", items, now)

    def release_requests(self, now: datetime) -> int:
        """Let every held request go (the next run queues them); how many were held."""
        held = {k: {**v, "released": True} for k, v in self.held_requests().items()
                if not v.get("released")}
        self._save_state("held request", held, now)
        return len(held)

    def forget_held(self, keys: Iterable[str]) -> None:
        """Held requests now queued, or no longer owed (their report was completed)."""
        keys = list(keys)
        if keys:
            with self._write() as conn:
                conn.execute(entity_state.delete().where(
                    entity_state.c.kind == "held request", entity_state.c.entity_id.in_(keys)))

    def digested_alerts(self) -> set[str]:
        """Keys of alerts sent inside a digest: queued, as far as owing them goes."""
        return set(self._state("digested alert"))

    def add_digested_alerts(self, covered: Mapping[str, str], now: datetime) -> None:
        self._save_state("digested alert", {k: {"digest": d} for k, d in covered.items()}, now)

    def _values(self) -> dict[str, Any]:
        return {k: v.get("value") for k, v in self._state("value").items()}

    def _state(self, kind: str, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        query = select(entity_state.c.entity_id, entity_state.c.data).where(
            entity_state.c.kind == kind)
        if ids is not None:
            query = query.where(entity_state.c.entity_id.in_(list(ids)))
        with self._read() as conn:
            return dict(conn.execute(query).all())

    def _save_state(self, kind: str, items: Mapping[str, dict[str, Any]], now: datetime,
                    *, replace: bool = False) -> None:
        """Upsert entity states of one kind; `replace` drops those not given."""
        if not items and not replace:
            return
        with self._write() as conn:
            if replace:
                conn.execute(entity_state.delete().where(entity_state.c.kind == kind))
                existing: set[str] = set()
            else:
                query = select(entity_state.c.entity_id).where(entity_state.c.kind == kind)
                if len(items) <= FEW:
                    query = query.where(entity_state.c.entity_id.in_(list(items)))
                existing = set(conn.execute(query).scalars())
            fresh = [{"kind": kind, "entity_id": k, "data": v, "updated_at": iso(now)}
                     for k, v in items.items() if k not in existing]
            if fresh:
                conn.execute(insert(entity_state), fresh)
            changed = [{"k": k, "d": v} for k, v in items.items() if k in existing]
            if changed:  # one executemany, not a statement per row
                conn.execute(update(entity_state).where(
                    entity_state.c.kind == kind, entity_state.c.entity_id == bindparam("k"),
                ).values(data=bindparam("d"), updated_at=iso(now)), changed)

    # -- outbox -----------------------------------------------------------------------------

    def enqueue(self, items: Iterable[OutboxItem], now: datetime) -> list[OutboxItem]:
        """Queue emails whose key was never queued; return those actually added."""
        items = list(items)
        if not items:
            return []
        with self._write() as conn:
            known = set(conn.execute(select(outbox.c.key).where(
                outbox.c.key.in_([i.key for i in items]))).scalars())
            added = [i for i in items if i.key not in known]
            unique = list({i.key: i for i in added}.values())
            if unique:
                conn.execute(insert(outbox), [{
                    "key": i.key, "kind": i.kind, "entity_id": i.entity_id,
                    "recipients": i.recipients, "subject": i.subject, "body_text": i.body_text,
                    "body_html": i.body_html, "images": i.images, "created_at": iso(now),
                    "attempts": 0,
                } for i in unique])
        return unique

    def outbox_keys(self) -> set[str]:
        with self._read() as conn:
            return set(conn.execute(select(outbox.c.key)).scalars())

    def pending(self, now: datetime | None = None, limit: int | None = None
                ) -> list[dict[str, Any]]:
        """Unsent messages still worth trying, oldest first; with `now`, only those whose
        delay after a temporary refusal has passed."""
        query = select(outbox).where(
            outbox.c.sent_at.is_(None), outbox.c.attempts < MAX_ATTEMPTS,
        ).order_by(outbox.c.created_at, outbox.c.key)
        if now is not None:
            query = query.where(or_(outbox.c.next_attempt_at.is_(None),
                                    outbox.c.next_attempt_at <= iso(now)))
        if limit:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def mark_sent(self, key: str, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(update(outbox).where(outbox.c.key == key).values(
                sent_at=iso(now), attempts=outbox.c.attempts + 1, last_error=None,
                next_attempt_at=None))

    def mark_failed(self, key: str, error: str, now: datetime, *, final: bool = False) -> None:
        """Record a failed attempt. A temporary one waits 15 minutes, then twice as long
        after each further refusal (at most 12 hours); a final one (a refused address) is
        not retried."""
        with self._write() as conn:
            attempts = conn.execute(select(outbox.c.attempts).where(
                outbox.c.key == key)).scalar_one() + 1
            wait = min(RETRY_CAP, RETRY_FIRST * 2 ** (attempts - 1))
            conn.execute(update(outbox).where(outbox.c.key == key).values(
                attempts=MAX_ATTEMPTS if final else attempts, last_error=error,
                next_attempt_at=None if final else iso(pd.Timestamp(now) + wait)))

    def outbox_frame(self) -> pd.DataFrame:
        with self._read() as conn:
            rows = conn.execute(select(outbox.c.key, outbox.c.kind, outbox.c.entity_id,
                                       outbox.c.created_at, outbox.c.sent_at,
                                       outbox.c.attempts, outbox.c.last_error)).all()
        frame = _frame(rows, ["key", "kind", "entity_id", "created_at", "sent_at",
                                            "attempts", "last_error"])
        # given up: refused for good, or temporarily so often that a person must look
        return frame.assign(given_up=frame["sent_at"].isna()
                            & (frame["attempts"] >= MAX_ATTEMPTS))

    # -- audit ------------------------------------------------------------------------------

    def audit(self, events: Iterable[AuditEvent], now: datetime) -> int:
        rows = [{"at": iso(now), "run_id": self.run_id, "entity": e.entity,
                 "entity_id": e.entity_id, "event": e.event, "reason": e.reason,
                 "details": e.details} for e in events]
        if rows:
            with self._write() as conn:
                conn.execute(insert(audit), rows)
        return len(rows)

    def audit_frame(self, entities: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> pd.DataFrame:
        """Audit events (entity, entity_id, event, reason, at as UTC timestamps) of the given
        kinds of entity, recorded from `since` and before `until`, oldest first."""
        query = select(audit.c.at, audit.c.entity, audit.c.entity_id, audit.c.event,
                       audit.c.reason).order_by(audit.c.id)
        if entities is not None:
            query = query.where(audit.c.entity.in_(list(entities)))
        if since is not None:
            query = query.where(audit.c.at >= iso(since))
        if until is not None:
            query = query.where(audit.c.at < iso(until))
        with self._read() as conn:
            rows = conn.execute(query).all()
        frame = _frame(rows, ["at", "entity", "entity_id", "event", "reason"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
        return frame

    def audit_trail(self, entity_id: str | None = None) -> list[dict[str, Any]]:
        query = select(audit).order_by(audit.c.id)
        if entity_id is not None:
            query = query.where(audit.c.entity_id == entity_id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


def copy_store(source: Store, target: Store, *, batch: int = 1000) -> dict[str, int]:
    """Copy every row of `source` into `target`, an empty store at the same revision, in one
    transaction of the target; return how many rows each table gave.

    Rows keep their ids (report, run and audit numbers, counters), so the copy is the same
    store; the append-only tables are only ever INSERTed into. A target that holds any row
    is refused: nothing there is replaced or merged. The caller holds both run locks.
    """
    was, now = source.schema_status(), target.schema_status()
    if not (was.at_head and now.at_head):
        raise StoreError(f"both stores must be at revision {was.head} to copy (the store "
                         f"{source.name} is at {was.revision()}, the store {target.name} at "
                         f"{now.revision()}): run `nearmiss migrate` on the one behind")
    copied: dict[str, int] = {}
    with source.engine.connect() as src, target.engine.begin() as dst:
        for table in metadata.sorted_tables:
            if held := _rows(dst, table):
                raise StoreError(f"the store {target.name} is not empty ({held} rows in "
                                 f"{table.name}): copy only into an empty database")
        for table in metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            if table is meta:  # the target's own schema_version row stays
                query = query.where(meta.c.key != "schema_version")
            copied[table.name] = 0
            result = src.execution_options(yield_per=batch).execute(query).mappings()
            for rows in result.partitions():
                dst.execute(insert(table), [dict(r) for r in rows])
                copied[table.name] += len(rows)
            column = table.autoincrement_column
            if column is not None and target.backend == "postgresql":
                # ids were given, so the column's sequence must move past them
                dst.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"COALESCE(MAX({column.name}), 0) + 1, false) FROM {table.name}"))
            if _rows(dst, table) != copied[table.name]:
                raise StoreError(f"the copy to the store {target.name} lost rows of "
                                 f"{table.name}: nothing was copied")
    return copied


def _rows(conn: Connection, table: Table) -> int:
    """Rows of `table`, but for the `meta` row every store has."""
    query = select(func.count()).select_from(table)
    if table is meta:
        query = query.where(meta.c.key != "schema_version")
    return conn.execute(query).scalar_one()
