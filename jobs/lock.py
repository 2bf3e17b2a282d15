"""One run at a time: a scheduler firing while the previous run is still going must wait.

A SQLite store is locked by a file beside it (flock), which holds on the one machine that
can write the file. A PostgreSQL store can be reached from several machines, so its lock is
a PostgreSQL advisory lock held by a connection of its own for the whole run: a second
machine's run waits for it (saying so), and the server frees it if the holder dies.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import LockedError, StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from config.settings import StoreSettings

try:
    import fcntl
except ImportError:  # Windows: fall back to an exclusive lock file
    fcntl = None  # type: ignore[assignment]

# How long a run on a PostgreSQL store waits for another machine's run before giving up:
# under the usual 15-minute schedule, so waiting runs do not pile up behind a stuck one.
LOCK_WAIT_SECONDS = 600.0
POLL_SECONDS = 1.0


def _say(line: str) -> None:
    print(f"nearmiss: {line}", file=sys.stderr, flush=True)


@contextmanager
def run_lock(where: Path | StoreSettings, *, wait_seconds: float = LOCK_WAIT_SECONDS,
             poll_seconds: float = POLL_SECONDS,
             say: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the run lock of a store for the duration of the block.

    `where` is a lock file, or the store's settings: the lock file beside a SQLite store
    (another run holding it ends this one at once), or the advisory lock of a PostgreSQL
    store, for which this run waits up to `wait_seconds`, saying so once through `say`.
    """
    if isinstance(where, Path):
        with file_lock(where):
            yield
    elif where.url is None:
        assert where.path is not None  # the settings hold one or the other
        with file_lock(where.path.with_suffix(".lock")):
            yield
    else:
        with advisory_lock(where, wait_seconds=wait_seconds, poll_seconds=poll_seconds,
                           say=say):
            yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the duration of the block.

    flock is released by the kernel if the process dies, so a crashed run never leaves a
    stale lock behind on POSIX systems. A lock file that cannot be created or written (a
    read-only folder, a full disk) ends the run with a one-line StoreError.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise lock_error(exc, path) from None
    if fcntl is None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise LockedError(f"another run is in progress ({path} exists); if none is, "
                              "delete that file") from None
        except OSError as exc:
            raise lock_error(exc, path) from None
        try:
            yield
        finally:
            os.close(fd)
            os.unlink(path)
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise lock_error(exc, path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another run is in progress (it holds {path}): wait for it to "
                              "finish") from None
        try:  # the pid is for a person wondering which process holds the lock
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            raise lock_error(exc, path) from None
        yield
    finally:
        os.close(fd)


@contextmanager
def advisory_lock(store: StoreSettings, *, wait_seconds: float = LOCK_WAIT_SECONDS,
                  poll_seconds: float = POLL_SECONDS,
                  say: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the PostgreSQL store's run lock: a session-level advisory lock (see
    `connectors.store.advisory_key`) on a connection of its own, kept out of any
    transaction, so a run holds no snapshot open while it works.

    While another session holds it, say so once, try again every `poll_seconds`, and give
    up with a LockedError after `wait_seconds`. The server frees the lock when its holder's
    connection ends, a killed run or a lost machine included.
    """
    from sqlalchemy import func, select

    from connectors.store import Store, advisory_key

    lock = Store.connect(store)  # one-line errors, the password variable checked
    try:
        with lock.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # what a waiting run on another machine names as the holder
            conn.execute(select(func.set_config("application_name", _holder_name(), False)))
            key = advisory_key(conn, "run")
            started, said = time.monotonic(), False
            while not conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one():
                waited = time.monotonic() - started
                if waited >= wait_seconds:
                    after = f" after {waited:.0f} s of waiting" if wait_seconds else ""
                    raise LockedError(
                        f"another run holds the lock on the store {store.url}{after} "
                        f"({_holder(conn, key)}): wait for it to finish; if it is stuck, stop "
                        "it (on its machine, or pg_terminate_backend) and run again")
                if not said:
                    say(f"another run holds the lock on the store {store.url} "
                        f"({_holder(conn, key)}): waiting up to {wait_seconds:g} s for it")
                    said = True
                time.sleep(max(0.0, min(poll_seconds, wait_seconds - waited)))
            try:
                yield
            finally:
                # a lost connection took the lock with it: nothing left to free
                with suppress(StoreError):
                    conn.execute(select(func.pg_advisory_unlock(key)))
    finally:
        lock.close()


def _holder_name() -> str:
    return f"nearmiss run pid {os.getpid()} on {socket.gethostname()}"[:63]  # NAMEDATALEN


def _holder(conn: Connection, key: int) -> str:
    """Who holds the advisory lock `key`, as far as this user may see."""
    from sqlalchemy import text

    row = conn.execute(text(
        "SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND l.classid::bigint = :high "
        "AND l.objid::bigint = :low AND l.objsubid = 1"),
        {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).first()
    if row is None:
        return "a session this user cannot see"
    pid, name, address = row
    if name and name.startswith("nearmiss run"):
        return name.removeprefix("nearmiss run ")  # "pid 123 on host"
    return f"database session pid {pid}" + (f" from {address}" if address else "")


def lock_error(exc: OSError, path: Path) -> StoreError:
    """One line naming the folder of the lock file `path`, why it failed and the fix."""
    folder = path.parent
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        message = (f"cannot write the lock file {path.name} in {folder}: the folder is "
                   "read-only; give the user that runs nearmiss write access to it")
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message = (f"the disk holding {folder} is full (writing the lock file {path.name}): "
                   "free some space and run again (nothing stored was lost)")
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):  # a file where a folder should be
        message = (f"cannot create the lock file {path.name} in {folder}: part of that path "
                   "is a file, not a folder; move the file or point store.path elsewhere")
    elif exc.errno == errno.EISDIR:
        message = (f"cannot create the lock file {path.name} in {folder}: a folder of that "
                   "name is in the way; remove it")
    else:
        message = (f"cannot create the lock file {path.name} in {folder} "
                   f"({exc.strerror or type(exc).__name__}): check that the user that runs "
                   "nearmiss can write to that folder")
    return StoreError(" ".join(message.splitlines()))
