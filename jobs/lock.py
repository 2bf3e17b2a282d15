"""One run at a time: a scheduler firing while the previous run is still going must wait."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.errors import LockedError

try:
    import fcntl
except ImportError:  # Windows: fall back to an exclusive lock file
    fcntl = None  # type: ignore[assignment]


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the duration of the block.

    flock is released by the kernel if the process dies, so a crashed run never leaves a
    stale lock behind on POSIX systems.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise LockedError(f"another run is in progress ({path} exists); if none is, "
                              "delete that file") from None
        try:
            yield
        finally:
            os.close(fd)
            os.unlink(path)
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another run is in progress (it holds {path}): wait for it to "
                              "finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
