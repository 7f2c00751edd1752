"""Writing: whether a folder takes files before work starts, and whether a failed write
was a full disk (the errors of torch and GDAL do not say)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cloudkit.errors import OutputError

#: free bytes below which a failed write is put down to a full disk
FULL_BELOW = 1 << 20


def disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` (or its nearest existing parent) is about full.
    torch and GDAL report a full disk as a generic failure ("unexpected pos", "Write
    failed"); this is how cloudkit can say what happened."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def require_writable(folder: Path, what: str) -> Path:
    """Create ``folder`` when needed and check that a file can be written there, before any
    work is done (an evaluation that ran for an hour must not fail at its last write)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".cloudkit-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or " ".join(str(err).split())
        raise OutputError(
            f"{folder}: cannot write here ({reason}); choose a writable folder for {what}"
        ) from None
    return folder
