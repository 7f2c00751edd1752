"""Making a store (built in a folder of its run's own and renamed into place), and clearing
what killed runs left: half-made stores and abandoned scratch stores; a direct writer's lock."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import zarr

from cloudkit.errors import StoreError
from cloudkit.files.locks import LOCK_FILE, FileLock
from cloudkit.io.scene import LABEL_NODATA
from cloudkit.io.store.layout import (
    _BANDS,
    _INDEX_ARRAYS,
    _INDEX_CHUNK,
    _SCENE_ARRAYS,
    _SCENE_CHUNK,
    _SUN_ARRAYS,
    _TILE_ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    INTEGRITY,
    QUANTIFICATION,
    STORE_ADD_OFFSET,
    StoreLayout,
    _compressors,
    _StoreGroup,
)


def _create(
    path: Path, layout: StoreLayout, *, checksummed: bool = True
) -> tuple[zarr.Group, bool]:
    """Create an empty store, written to a temporary folder of this run's own and renamed
    into place; (the store, whether this run created it). Two runs creating one store at
    once: the first rename wins and the other opens that store (whose lock then decides)."""
    _remove_abandoned_creations(path)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
    c, t = len(layout.bands), layout.tile_size
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bands": list(layout.bands),
        "tile_size": t,
        "overlap": layout.overlap,
        "resolution": layout.resolution,
        "decode": layout.decode,
        "quantification": QUANTIFICATION,
        "add_offset": [STORE_ADD_OFFSET] * c,
        # reflectance = value * scale + offset, for value != 0 (0 is no data)
        "scale": [1.0 / QUANTIFICATION] * c,
        "offset": [STORE_ADD_OFFSET / QUANTIFICATION] * c,
        "nodata": 0,
        "label_nodata": LABEL_NODATA,
        "num_tiles": 0,
        "num_scenes": 0,
        "in_progress": None,
        **({"integrity": INTEGRITY} if checksummed else {}),
    }
    fill: float | str | None  # a table's fill value (None: zarr's default)
    try:
        group = zarr.create_group(str(tmp), attributes=attrs)
        codecs = _compressors(group)
        _create_tile_array(group, "images", 0)
        _create_tile_array(group, "valid", 0)
        for name, (dtype, fill) in _INDEX_ARRAYS.items():
            group.create_array(
                name,
                shape=(0,),
                chunks=(_INDEX_CHUNK,),
                dtype=dtype,
                fill_value=fill,
                compressors=codecs,
            )
        scenes = group.create_group("scenes")
        for name, (dtype, row, fill) in _SCENE_ARRAYS.items():
            row = tuple(c if n == _BANDS else n for n in row)
            fill_value: dict[str, Any] = {} if fill is None else {"fill_value": fill}
            scenes.create_array(
                name,
                shape=(0, *row),
                chunks=(_SCENE_CHUNK, *row),
                dtype=dtype,
                compressors=codecs,
                **fill_value,
            )
        for name, (dtype, fill) in _SUN_ARRAYS.items():
            scenes.create_array(
                name,
                shape=(0,),
                chunks=(_SCENE_CHUNK,),
                dtype=dtype,
                compressors=codecs,
                fill_value=fill,
            )
    except BaseException:  # a full disk, an interrupt: leave no half-made store behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(path)
        created = True
    except OSError:  # another run's store is in place already (a folder is not replaced)
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "zarr.json").is_file():
            raise
        created = False
    return zarr.open_group(str(path), mode="r+"), created


def _remove_abandoned_creations(path: Path) -> None:
    """Temporary folders of runs killed while creating ``path`` (their process is gone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.creating-*"):
        pid = tmp.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_abandoned_scratch(folder: Path) -> None:
    """Scratch stores of writers killed before their commit: nobody holds their lock, and
    their writer was on this machine and is gone, or wrote them over an hour ago."""
    if not folder.is_dir():
        return
    host = socket.gethostname()
    for scratch in folder.glob("*.zarr"):
        owner, _, _ = scratch.stem.rpartition("-")
        owner_host, _, pid = owner.rpartition("-")
        with contextlib.suppress(OSError):
            gone = owner_host == host and pid.isdigit() and not _alive(int(pid))
            if not gone and time.time() - scratch.stat().st_mtime < 3600:
                continue
            lock = FileLock.take(scratch / LOCK_FILE)
            if lock is None:
                continue  # its writer is alive (on another machine, say)
            shutil.rmtree(scratch, ignore_errors=True)
            lock.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _create_tile_array(group: _StoreGroup, name: str, rows: int) -> None:
    dtype, fill, axis = _TILE_ARRAYS[name]
    c = len(cast(Sequence[str], group.attrs["bands"])) if name == "images" else 1
    t = int(cast(int, group.attrs["tile_size"]))
    group.create_array(
        name,
        shape=(rows, c, t, t),
        chunks=(1, c, t, t),
        dtype=dtype,
        fill_value=fill,
        compressors=_compressors(group),
        dimension_names=("tile", axis, "y", "x"),
    )


def _lock(path: Path) -> FileLock:
    """The store's lock, held so two runs never append to one store at once."""
    lock = FileLock.take(path / LOCK_FILE)
    if lock is None:
        raise StoreError(f"{path}: another cloudkit run is writing this store")
    return lock
