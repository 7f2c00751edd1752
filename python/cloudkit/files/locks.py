"""The one way cloudkit claims a file system object: an exclusive ``flock`` on a lock file.

The OS drops a flock when its process dies, so a killed run never leaves a stale claim; it
works across machines on file systems that support it (NFSv4, Lustre, CephFS). Used for a
tile store (its direct writer, the commits of its shared writers, its abandoned scratch
stores) and for one scene's prediction outputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

#: the lock file of a folder that many runs write (a tile store; its scratch stores)
LOCK_FILE = ".cloudkit.lock"


class FileLock:
    """An exclusive lock on the file ``path``, held until :meth:`release`. Take one with
    :meth:`take`."""

    def __init__(self, path: Path, fd: int, *, remove: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._remove = remove

    @classmethod
    def take(cls, path: Path | str, *, remove: bool = False) -> FileLock | None:
        """The lock on ``path`` (created when absent), or None while another holds it.
        ``remove``: delete the file on release (a lock of something that goes away with
        its holder, e.g. one scene's outputs)."""
        path = Path(path)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # a holder that removes its file on release may have done so after we opened it:
            # a lock on a file no longer at ``path`` excludes nobody
            if remove and os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        return cls(path, fd, remove=remove)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (a second call does nothing)."""
        if self._fd is None:
            return
        if self._remove:  # while still held: no one else has taken it yet
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None
