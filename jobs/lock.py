"""One run at a time: a scheduler firing while the previous run is still going must wait."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.errors import LockedError, StoreError

try:
    import fcntl
except ImportError:  # Windows: fall back to an exclusive lock file
    fcntl = None  # type: ignore[assignment]


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
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
