"""What a failed write was about, when the error does not say."""

from __future__ import annotations

import shutil
from pathlib import Path

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
