"""The one way cloudkit writes a file that someone may read or resume from: whole or not at
all. The content goes to a hidden temporary beside the target (``.NAME.partial``, on the same
file system), which then replaces the target in one rename; a run killed or failing half way
leaves the old file (or none) and a temporary the next writer removes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def partial_name(path: Path) -> Path:
    """The hidden temporary ``path`` is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.partial")


@contextlib.contextmanager
def atomic_file(path: Path | str, *, durable: bool = False) -> Iterator[Path]:
    """Write ``path`` whole or not at all: the block writes the temporary path it is given,
    which then replaces ``path``; on an error (or an interrupt) the temporary goes and
    ``path`` stays as it was. ``durable``: on disk before this returns (the file, then its
    folder's entry), for what a crash of the machine must not lose (checkpoints, metrics)."""
    path = Path(path)
    tmp = partial_name(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def write_text(path: Path | str, text: str, *, durable: bool = False) -> Path:
    """``text`` as the whole content of ``path`` (UTF-8), through :func:`atomic_file`."""
    path = Path(path)
    with atomic_file(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _fsync(target: Path, flags: int) -> None:
    fd = os.open(target, flags)
    try:
        os.fsync(fd)
    except OSError:  # a folder some file systems cannot fsync: the rename is still atomic
        if not target.is_dir():
            raise
    finally:
        os.close(fd)
