"""Temporary files of the connectors that write through a temp file and a rename."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Writing takes seconds at most. An older temporary file was left by a killed run (SIGKILL
# skips every `finally`); a younger one may be another deployment's write in progress, as
# the run lock is per store and two deployments may share a folder.
STALE_TEMP_SECONDS = 3600


def remove_stale_temp_files(folder: Path, names: re.Pattern[str],
                            older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the regular files in `folder` whose whole name matches `names` (a connector's
    own temp-file pattern, so nothing a person saved is ever taken for one) and that are
    older than `older_than` seconds; return them. One that cannot be removed is logged and
    left: tidying up never stops a write."""
    removed: list[Path] = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # the write that follows reports an unusable folder
    for entry in entries:
        if not names.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as exc:
            log.warning("cannot remove the stale temporary file %s: %s", entry.path,
                        exc.strerror)
    return removed
