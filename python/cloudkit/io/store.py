"""The tile store: a Zarr v3 group of fixed-size tiles that many scenes append into.

Layout (the contract documented in the README):

    images          uint16 (N, C, T, T)  stored DN, one tile per chunk, zstd
    valid           uint8  (N, 1, T, T)  1 where every band has data
    labels          uint8  (N, 1, T, T)  cloudkit label codes (only when some scene has labels)
    tile_scene      int32  (N,)          row of the tile's scene in scenes/
    tile_row/col    int32  (N,)          pixel offset of the tile in its scene's grid
    valid_fraction  float32 (N,)
    cloud_fraction  float32 (N,)         NaN when the tile has no labels
    scenes/...      one row per scene: id, crs, transform, shape, offsets, tile range

The group attribute ``num_tiles`` is the commit point: rows at or beyond it belong to a scene
that was interrupted.

This module is the only Python code that knows the layout: `TileStore` writes a store,
`StoreReader` reads one. One writer owns the metadata: zarr-python, here, creates every array,
sizes the tile arrays for a scene before its pixels are written (:meth:`TileStore.begin_scene`),
truncates and commits; its local store replaces files atomically. The Rust writer
(``kernels.TileWriter``, ``rust/core/src/store.rs``) never creates, resizes or touches metadata:
it reads the shape of ``images``, ``valid`` and ``labels`` once when it opens and stores whole
chunks into the rows reserved for the scene.

Many writers share a store (several processes, or machines on one file system) through
scratch stores: a writer opens the store ``shared`` (no lock held), writes each scene into a
private scratch store beside it (:meth:`TileStore.scratch`, an ordinary store of the same
layout and codecs), and commits it with :meth:`TileStore.commit_from`, which holds the store's
lock for the moment it takes to move the scene's chunk files into the rows after the last
committed tile, write its index rows and advance the commit point. A scene committed by
another writer meanwhile is not committed twice; a writer killed before its commit leaves
only its scratch store, which the next writer on that machine removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import math
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from cloudkit.errors import BandMismatchError, CloudkitError, StoreError
from cloudkit.io.location import Location, is_url, location_of
from cloudkit.io.scene import LABEL_CLASSES, LABEL_NODATA

FORMAT = "cloudkit-tiles"
FORMAT_VERSION = 1
#: DN convention of every store: reflectance = (value + STORE_ADD_OFFSET) / quantification,
#: the convention of processing baseline 04.00. Older products are shifted by +1000 on write.
STORE_ADD_OFFSET = -1000
QUANTIFICATION = 10000.0
_INDEX_CHUNK = 16384
_SCENE_CHUNK = 1024
_COMPRESSOR = ZstdCodec(level=1)
#: the ``integrity`` attribute of stores whose every chunk carries a CRC-32C and whose every
#: array has all its chunks on disk up to its committed rows (even those of only the fill
#: value): a missing or altered chunk of any array is then known damage
INTEGRITY = "crc32c, every chunk written"
#: the ``integrity`` of stores written before index and scene columns wrote every chunk:
#: checksummed, every tile chunk on disk; a column's missing chunk may be only fill value
TILE_INTEGRITY = "crc32c, every tile chunk written"
#: stores older still have neither; they read as before
_CHECKSUMMED = (INTEGRITY, TILE_INTEGRITY)
#: how long a shared writer waits for the store's lock (a commit holds it for moments; a
#: direct writer, e.g. another program's `TileStore.open`, for its whole run)
LOCK_WAIT_SECONDS = 600.0
#: rows of fill-value chunks written at once (labels of scenes that had none)
_FILL_BLOCK = 512


@dataclass(frozen=True)
class StoreLayout:
    """What every scene in a store must share."""

    bands: tuple[str, ...]
    tile_size: int
    overlap: int
    resolution: float
    decode: str = "full"  # how JPEG 2000 bands finer than the grid were read (io/grid.py)


@dataclass(frozen=True)
class TileRecord:
    index: int
    row: int
    col: int
    valid_fraction: float
    cloud_fraction: float


@dataclass(frozen=True)
class SceneRecord:
    """What the store remembers of a scene (one row of ``scenes/``)."""

    scene_id: str
    path: str
    layout: str
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int
    add_offset: tuple[int, ...]  # the product's own offsets, per band
    dn_shift: tuple[int, ...]  # what was added to non-zero DN to reach the store's convention
    processing_baseline: str
    label_kind: str
    # the scene's mean sun angles (degrees) and where they came from; NaN, "": not known
    sun_azimuth: float = math.nan
    sun_zenith: float = math.nan
    sun_source: str = ""


def dn_shift_for(add_offset: Sequence[int]) -> tuple[int, ...]:
    """Shift that brings a product's DN to the store convention (0 for baseline >= 04.00)."""
    return tuple(int(a) - STORE_ADD_OFFSET for a in add_offset)


class _Members:
    """A store's group whose members are each looked up once (a commit reads an array's
    metadata several times, a file read each otherwise). Sound while every change to an
    array's metadata goes through the array handed out here (zarr updates it in place), and
    only while no other writer can commit: open it again after taking the lock."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        self._seen: dict[str, zarr.Array | zarr.Group] = {}

    def __getitem__(self, name: str) -> zarr.Array | zarr.Group:
        try:
            return self._seen[name]
        except KeyError:
            member = self._seen[name] = self.group[name]
            return member

    def __contains__(self, name: str) -> bool:
        return name in self._seen or name in self.group

    def __getattr__(self, attr: str):
        return getattr(self.group, attr)


class TileStore:
    """A tile store opened for appending. Use :meth:`open` (creates it when absent): either
    holding its lock for as long as it is open (a direct writer: :meth:`begin_scene`,
    :meth:`commit_scene`), or ``shared`` with other writers, taking the lock only to commit a
    scratch store (:meth:`scratch`, :meth:`commit_from`)."""

    def __init__(
        self, location: Location, group: zarr.Group, lock_file, *, shared: bool = False
    ) -> None:
        self.location = location
        # a local store's folder; an s3:// store's URL (it is written shared, never directly)
        self.path = str(location) if location.is_remote else location.root
        self._group = _Members(group)
        self._lock_file = lock_file
        self.shared = shared

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: Path | str,
        layout: StoreLayout,
        *,
        shared: bool = False,
        checksummed: bool = True,
    ) -> TileStore:
        """Open ``path`` for appending, creating it with ``layout`` if it does not exist
        (``checksummed``: with the CRC-32C of :data:`INTEGRITY`, as every new store is).

        An existing store must have the same layout. A store left half-written by an
        interrupted run is repaired: rows past the last committed scene are dropped.
        ``shared``: hold no lock now; :meth:`commit_from` takes it. An ``s3://`` URL is a
        store in object storage, always shared.
        """
        if is_url(path):
            return cls._open_remote(location_of(path), layout)
        path = Path(path)
        if path.exists() and not (path / "zarr.json").is_file():
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            else:
                raise StoreError(
                    f"{path}: exists but is not a Zarr store; choose another output path"
                )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                group, created = _open_group(path, "r+"), False
            else:
                group, created = _create(path, layout, checksummed=checksummed)
            lock_file = None if shared else _lock(path)
        except PermissionError as err:
            raise StoreError(f"{path}: cannot write the store ({err.strerror})") from err
        except OSError as err:
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{path}: cannot open the store ({err})") from err
        store = cls(Location(path), group, lock_file, shared=shared)
        if not created:
            try:
                store._check_layout(layout)
                with store._exclusive():
                    store._repair()
                    store._refuse_damaged()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def _open_remote(cls, location: Location, layout: StoreLayout) -> TileStore:
        """A store in object storage, created when absent: made locally and uploaded under
        its lock, the group's own metadata last (until then there is no store)."""
        if not location.exists("zarr.json"):
            with location.lock(LOCK_WAIT_SECONDS):
                if not location.exists("zarr.json"):
                    with tempfile.TemporaryDirectory(prefix="cloudkit-new-store-") as tmp:
                        local = Path(tmp) / "store.zarr"
                        _create(local, layout)
                        files = [f for f in local.rglob("*") if f.is_file()]
                        for file in sorted(files, key=lambda f: f.parent == local):
                            location.put(file.relative_to(local).as_posix(), file)
        group = _open_group(location, "r+")
        store = cls(location, group, None, shared=True)
        store._check_layout(layout)
        with store._exclusive():
            store._repair()
            store._refuse_damaged()
        return store

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> TileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- properties

    @property
    def num_tiles(self) -> int:
        return int(self._group.attrs["num_tiles"])

    @property
    def num_scenes(self) -> int:
        return int(self._group.attrs["num_scenes"])

    @property
    def has_labels(self) -> bool:
        return "labels" in self._group

    def scene_ids(self) -> list[str]:
        return list(self.scene_sources())

    def scene_sources(self) -> dict[str, str]:
        """Each committed scene's id and the path it was tiled from (a shared store's as
        they are now, with what other writers committed since)."""
        if self.shared:
            self._group = _Members(_open_group(self.location, "r+"))
        return self._committed_sources()

    def _committed_sources(self) -> dict[str, str]:
        """:meth:`scene_sources` of the metadata as last read."""
        n = self.num_scenes
        if n == 0:
            return {}
        ids, paths = self._group["scenes/id"][:n], self._group["scenes/path"][:n]
        return {str(i): str(p) for i, p in zip(ids, paths, strict=True)}

    # ------------------------------------------------------------------ writing

    def begin_scene(self, scene_id: str, max_tiles: int, *, with_labels: bool) -> int:
        """Reserve room for up to ``max_tiles`` tiles of a scene; returns its first tile index.

        Open the scene's Rust writer after this: it sees only the rows reserved when it opens.
        """
        with self._writing(scene_id):
            return self._begin_scene(scene_id, max_tiles, with_labels=with_labels)

    def _begin_scene(self, scene_id: str, max_tiles: int, *, with_labels: bool) -> int:
        if self.shared:
            raise StoreError(f"{self.path}: a shared writer commits scratch stores (commit_from)")
        attrs = self._group.attrs
        if with_labels and not self.has_labels:
            self._add_labels()  # earlier scenes had no labels: their rows read as no-data
        attrs.update({"in_progress": scene_id})
        start = self.num_tiles
        for name in self._tile_arrays():
            arr = self._group[name]
            arr.resize((start + max_tiles, *arr.shape[1:]))
        return start

    def commit_scene(self, record: SceneRecord, tiles: Sequence[TileRecord]) -> None:
        """Write the index rows of a fully written scene, then advance the commit point."""
        with self._writing(record.scene_id):
            self._commit_scene(record, tiles)

    def _commit_scene(self, record: SceneRecord, tiles: Sequence[TileRecord]) -> None:
        start, n = self.num_tiles, len(tiles)
        if any(t.index != start + i for i, t in enumerate(tiles)):
            raise StoreError(f"{self.path}: tile indices of {record.scene_id} are not contiguous")
        # the chunks this commit rewrites in part: a lost one would come back as fill values
        # under a valid checksum, the damage made permanent and invisible
        self._refuse_damaged(from_tile=start, from_scene=self.num_scenes)
        end = start + n
        columns = {
            "tile_scene": np.full(n, self.num_scenes, dtype=np.int32),
            "tile_row": np.array([t.row for t in tiles], dtype=np.int32),
            "tile_col": np.array([t.col for t in tiles], dtype=np.int32),
            "valid_fraction": np.array([t.valid_fraction for t in tiles], dtype=np.float32),
            "cloud_fraction": np.array([t.cloud_fraction for t in tiles], dtype=np.float32),
        }
        for name, values in columns.items():
            self._group[name].resize((end,))
            if n:
                _every_chunk(self._group[name])[start:end] = values
        for name in self._tile_arrays():
            self._truncate(name, end, listed=False)
        self._append_scene(record, start, n, tiles)
        # the commit point: until this write the scene is not part of the store
        self._group.attrs.update(
            {"num_tiles": end, "num_scenes": self.num_scenes + 1, "in_progress": None}
        )

    def abort_scene(self) -> None:
        """Forget the rows of a scene that failed half way. When even that cannot be written
        (a full disk), the rows stay past the commit point with ``in_progress`` set, and the
        next run that opens the store repairs it: the committed scenes are untouched."""
        # the scene's own error says what happened; one from here would hide it
        with contextlib.suppress(OSError):
            self._repair()

    # ------------------------------------------------------- many writers, one store

    def scratch(self, *, with_labels: bool) -> TileStore:
        """A new private store beside this one, of its layout and codecs, to write one scene
        into (directly, holding its own lock) before :meth:`commit_from`; a labels array
        when the scene has labels or this store has them (its tiles then have one too)."""
        folder = self.location.scratch_folder(self.location.root.name)
        _remove_abandoned_scratch(folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.zarr"
        checksummed = self._group.attrs.get("integrity") in _CHECKSUMMED
        scratch = TileStore.open(folder / name, self._layout(), checksummed=checksummed)
        if with_labels or self.has_labels:
            scratch._add_labels()
        return scratch

    def commit_from(
        self, scratch: TileStore, record: SceneRecord, tiles: Sequence[TileRecord]
    ) -> str | None:
        """Append the scene written into ``scratch`` (its ``tiles`` rows, uncommitted there)
        after the last committed tile, under the store's lock: its chunk files are moved, its
        index rows written, then the commit point advanced. Returns None, or, committing
        nothing, the path the store holds a scene of this id from (another writer was
        first). ``scratch`` is left without those tiles: remove it after."""
        ours = {name: scratch._codecs(name) for name in scratch._tile_arrays()}
        chunks = [(name, tile.index) for name in ours for tile in tiles]
        # on disk a tile's folder is renamed whole (it holds that tile's one chunk): one
        # rename each, where a file's would first make its three parent folders
        moved = _chunk_key if self.location.is_remote else _tile_folder
        with self._writing(record.scene_id):
            # in object storage the pixels travel now, before the lock (which then waits
            # only for copies inside the bucket); on disk nothing moves yet
            staged = self.location.stage([scratch.path / moved(*c) for c in chunks])
            try:
                with self._exclusive():
                    return self._commit_staged(record, tiles, ours, chunks, staged, moved)
            finally:
                with contextlib.suppress(CloudkitError, OSError):
                    self.location.unstage(staged)

    def _commit_staged(
        self,
        record: SceneRecord,
        tiles: Sequence[TileRecord],
        ours: dict[str, tuple],
        chunks: list[tuple[str, int]],
        staged: list,
        moved: Callable[[str, int], str],
    ) -> str | None:
        """:meth:`commit_from` under the lock, the scratch store's chunks (or tile folders:
        ``moved`` gives the key of either) staged; ``ours``: the scratch store's tile arrays
        and their codecs."""
        held = self._committed_sources().get(record.scene_id)  # _exclusive read it afresh
        if held is not None:
            return held
        start, n = self.num_tiles, len(tiles)
        if "labels" in ours and not self.has_labels:
            self._add_labels()  # the rows committed before are no-data
        theirs = self._tile_arrays()
        for name in theirs:
            if name in ours and self._codecs(name) != ours[name]:
                raise StoreError(
                    f"{self.path}: its {name} chunks are encoded unlike a new store's; "
                    "tile into a new store"
                )
            self._group[name].resize((start + n, *self._group[name].shape[1:]))
        row_of = {tile.index: start + i for i, tile in enumerate(tiles)}
        self.location.place(staged, [moved(name, row_of[row]) for name, row in chunks])
        for name in theirs:
            if name not in ours:
                self._fill_rows(name, start, start + n)
        self._commit_scene(record, [replace(t, index=start + i) for i, t in enumerate(tiles)])
        return None

    def _refuse_damaged(self, *, from_tile: int | None = None, from_scene: int = 0) -> None:
        """StoreError when a chunk of the index or scene columns from these rows on is lost
        or does not decode (a commit rewrites them in part), or, with no rows given (on
        opening; the columns were read then), a committed tile has lost a chunk: nothing is
        appended to a damaged store. Tile chunks are never rewritten, so one that does not
        decode stays for `check` and every reader to find."""
        if from_tile is not None:
            problems = _column_problems(
                self.location, self._group, self.num_tiles, self.num_scenes, from_tile, from_scene
            )
        elif self._group.attrs.get("integrity") in _CHECKSUMMED:
            problems = _lost_tile_chunks(self.location, self._tile_arrays(), self.num_tiles)
        else:
            problems = []
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StoreError(
                f"{problems[0]}{more}; the store is damaged and nothing was appended to it: "
                f"`cloudkit check {self.path}` lists the damage"
            )

    def _add_labels(self) -> None:
        """The labels array, its rows so far no-data chunks (a committed tile has every
        chunk on disk)."""
        rows = self.num_tiles
        _create_tile_array(self._group, "labels", rows)
        self._group.attrs.update({"label_codes": {str(k): v for k, v in LABEL_CLASSES.items()}})
        self._fill_rows("labels", 0, rows)

    def _fill_rows(self, name: str, start: int, end: int) -> None:
        """Fill-value chunks for rows [start, end) of a tile array, written out."""
        arr = self._group[name].with_config({"write_empty_chunks": True})
        fill = _TILE_ARRAYS[name][1]
        for lo in range(start, end, _FILL_BLOCK):
            hi = min(end, lo + _FILL_BLOCK)
            arr[lo:hi] = np.full((hi - lo, *arr.shape[1:]), fill, dtype=arr.dtype)

    def _codecs(self, name: str) -> tuple:
        return tuple(self._group[name].metadata.codecs)

    @contextlib.contextmanager
    def _exclusive(self):
        """The store's lock, for a shared writer only while it commits (a direct writer holds
        it already), with the metadata read again: other writers may have committed since."""
        if not self.shared:
            yield
            return
        with self.location.lock(LOCK_WAIT_SECONDS):
            self._group = _Members(_open_group(self.location, "r+"))
            # every column chunk was read on opening; what other writers appended since is
            # the last scene's, and the commit reads the chunks it rewrites (_refuse_damaged)
            _check_store(self.location, self._group, remedy="write to a new store", recent=True)
            self._repair(listed=False)  # what a writer killed in the middle of a commit left
            yield

    # ----------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _writing(self, scene_id: str):
        """A write that fails (a full disk) is a StoreError: the scene is not committed and
        the scenes committed before are kept (the next run repairs what it left)."""
        try:
            yield
        except CloudkitError:
            raise
        except OSError as err:
            reason = err.strerror or " ".join(str(err).split())
            raise StoreError(
                f"{self.path}: cannot write {scene_id} into the store ({reason}); the scenes "
                "committed before are kept"
            ) from None

    def _tile_arrays(self) -> list[str]:
        return [n for n in _TILE_ARRAYS if n in self._group]

    def _layout(self) -> StoreLayout:
        """The layout the store's attributes record."""
        attrs = self._group.attrs
        return StoreLayout(
            tuple(attrs["bands"]),
            int(attrs["tile_size"]),
            int(attrs["overlap"]),
            float(attrs["resolution"]),
            str(attrs.get("decode", "full")),  # stores made before --decode decoded in full
        )

    def _check_layout(self, layout: StoreLayout) -> None:
        _check_store(self.location, self._group, remedy="write to a new store")
        have = self._layout()
        if have.bands != layout.bands:
            raise BandMismatchError(
                f"{self.path}: store holds bands {','.join(have.bands)} but the scene gives "
                f"{','.join(layout.bands)}; pass --bands {','.join(have.bands)} or use a new store"
            )
        for what, flag in (
            ("tile_size", "--tile-size"),
            ("overlap", "--overlap"),
            ("resolution", "--resolution"),
        ):
            old, new = getattr(have, what), getattr(layout, what)
            if not math.isclose(float(old), float(new)):
                raise StoreError(
                    f"{self.path}: store has {what} {old:g} but this run asks {new:g}; "
                    f"pass {flag} {old:g} or use a new store"
                )
        if have.decode != layout.decode:
            raise StoreError(
                f"{self.path}: store's tiles were decoded {have.decode} but this run asks "
                f"--decode {layout.decode}; pass --decode {have.decode} or use a new store"
            )

    def _repair(self, *, listed: bool = True) -> None:
        """Drop rows past the commit point left by an interrupted run (``listed``: found
        by listing what lies there, see :meth:`_truncate`)."""
        n_tiles, n_scenes = self.num_tiles, self.num_scenes
        for name in (*self._tile_arrays(), *_INDEX_ARRAYS):
            self._truncate(name, n_tiles, listed=listed)
        for name in (*_SCENE_ARRAYS, *_SUN_ARRAYS):
            try:
                arr = self._group[f"scenes/{name}"]
            except KeyError:  # a sun column of a store made before them
                continue
            if arr.shape[0] != n_scenes:
                arr.resize((n_scenes, *arr.shape[1:]))
        if self._group.attrs.get("in_progress") is not None:
            self._group.attrs.update({"in_progress": None})

    def _truncate(self, name: str, n: int, *, listed: bool = True) -> None:
        """Shrink an array to ``n`` rows and delete its chunks past the end, before the
        resize: zarr's resize leaves out-of-bounds chunks, which would reappear as data when
        the array grows again, and no chunk ever lies past the recorded shape. ``listed``
        (on disk): the chunks found by listing the array, those past its shape that older
        cloudkit versions left included; else those inside its shape (all there can be
        since this store was opened and repaired)."""
        arr = self._group[name]
        old, chunk_rows = arr.shape[0], arr.chunks[0]
        first_stale = -(-n // chunk_rows)  # chunks at or past this index hold only stale rows
        if self.location.is_remote or not listed:  # a listing of every chunk costs more
            stale = range(first_stale, -(-old // chunk_rows))
        else:
            stale = [int(e) for e in self.location.children(f"{name}/c") if e.isdigit()]
        for k in stale:
            if k >= first_stale:
                self.location.delete(f"{name}/c/{k}")
        if old != n:
            arr.resize((n, *arr.shape[1:]))

    def _append_scene(
        self, record: SceneRecord, start: int, n: int, tiles: Sequence[TileRecord]
    ) -> None:
        s = self.num_scenes
        valid = float(np.mean([t.valid_fraction for t in tiles])) if tiles else 0.0
        clouds = [t.cloud_fraction for t in tiles if not math.isnan(t.cloud_fraction)]
        row = {
            "id": record.scene_id,
            "path": record.path,
            "layout": record.layout,
            "crs": record.crs_wkt,
            "transform": np.asarray(record.transform, dtype=np.float64),
            "shape": np.asarray((record.height, record.width), dtype=np.int32),
            "tile_start": start,
            "tile_count": n,
            "add_offset": np.asarray(record.add_offset, dtype=np.int32),
            "dn_shift": np.asarray(record.dn_shift, dtype=np.int32),
            "processing_baseline": record.processing_baseline,
            "label_kind": record.label_kind,
            "valid_fraction": valid,
            "cloud_fraction": float(np.mean(clouds)) if clouds else math.nan,
            "tiled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        row.update(
            sun_azimuth=record.sun_azimuth,
            sun_zenith=record.sun_zenith,
            sun_source=record.sun_source,
        )
        for name, value in row.items():
            arr = self._scene_column(name, s)
            arr.resize((s + 1, *arr.shape[1:]))
            _every_chunk(arr)[s] = value

    def _scene_column(self, name: str, rows: int):
        """The ``scenes/`` column ``name``; a sun column absent from a store made before
        cloudkit recorded the sun is made now, its ``rows`` earlier scenes not known."""
        try:
            return self._group[f"scenes/{name}"]
        except KeyError:
            if name not in _SUN_ARRAYS:
                raise
        dtype, fill = _SUN_ARRAYS[name]
        arr = self._group["scenes"].create_array(
            name,
            shape=(rows,),
            chunks=(_SCENE_CHUNK,),
            dtype=dtype,
            compressors=self._group["scenes/id"].compressors,
            fill_value=fill,
        )
        if rows:
            _every_chunk(arr)[:] = np.full(rows, fill, dtype=object if dtype is str else dtype)
        return arr


#: pixels, written by the Rust writer one chunk per tile: dtype, fill value, name of axis 1
_TILE_ARRAYS = {
    "images": (np.uint16, 0, "band"),
    "valid": (np.uint8, 0, "layer"),
    "labels": (np.uint8, LABEL_NODATA, "layer"),  # created with the first labelled scene
}
#: per-tile index columns (N,): dtype, fill value
_INDEX_ARRAYS = {
    "tile_scene": (np.int32, -1),
    "tile_row": (np.int32, 0),
    "tile_col": (np.int32, 0),
    "valid_fraction": (np.float32, 0.0),
    "cloud_fraction": (np.float32, math.nan),
}
_BANDS = -1  # a scenes/ column with one value per band
#: scenes/ columns (S, *row): dtype, row shape, fill value (None: zarr's default)
_SCENE_ARRAYS = {
    "id": (str, (), None),
    "path": (str, (), None),
    "layout": (str, (), None),
    "crs": (str, (), None),
    "transform": (np.float64, (6,), None),
    "shape": (np.int32, (2,), None),
    "tile_start": (np.int64, (), None),
    "tile_count": (np.int32, (), None),
    "add_offset": (np.int32, (_BANDS,), None),
    "dn_shift": (np.int32, (_BANDS,), None),
    "processing_baseline": (str, (), None),
    "label_kind": (str, (), None),
    "valid_fraction": (np.float32, (), None),
    "cloud_fraction": (np.float32, (), math.nan),
    "tiled_at": (str, (), None),
}
#: scenes/ columns of the sun (S,): dtype, fill value; stores made before them lack them,
#: and readers take a missing one as "not known"
_SUN_ARRAYS = {
    "sun_azimuth": (np.float32, math.nan),
    "sun_zenith": (np.float32, math.nan),
    "sun_source": (str, ""),
}


class StoreReader:
    """A tile store opened for reading (no lock): its attributes, the committed rows of its
    index, its tiles and its scenes. Use :meth:`open`.

    Rows past the commit point (``num_tiles``) are never shown. Open a reader in the process
    that reads: a forked DataLoader worker opens its own rather than reuse its parent's handles.
    """

    def __init__(self, location: Location, group: zarr.Group) -> None:
        self.location = location
        # a local store's folder; an s3:// store's URL
        self.path = str(location) if location.is_remote else location.root
        self._group = group
        self._attrs = dict(group.attrs)
        # tile arrays are read one tile at a time: keep their handles, not just the group
        arrays = {name: _member(group, name, location) for name in _TILE_ARRAYS}
        self._arrays = {name: array for name, array in arrays.items() if array is not None}

    @classmethod
    def open(cls, path: Path | str, *, damage: list[str] | None = None) -> StoreReader:
        """Open the store at ``path`` (a folder or an ``s3://`` URL); StoreError when it is
        not a cloudkit tile store, or a chunk of its index or scene columns is lost or does
        not decode (``damage``: added to that list instead)."""
        location = location_of(path)
        if not location.exists("zarr.json"):
            if location.is_remote or not location.root.exists():
                raise StoreError(f"{location}: no such tile store; create one with `cloudkit tile`")
            raise StoreError(
                f"{location}: not a tile store (no zarr.json); pass a store made by `cloudkit tile`"
            )
        group = _open_group(location, "r")
        remedy = "tile the scenes again with this cloudkit"
        _check_store(location, group, remedy=remedy, damage=damage)
        return cls(location, group)

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._attrs["bands"])

    @property
    def tile_size(self) -> int:
        return int(self._attrs["tile_size"])

    @property
    def resolution(self) -> float:
        return float(self._attrs["resolution"])

    @property
    def scale(self) -> list[float]:
        """Per band: reflectance = value * scale + offset for value != 0."""
        return [float(v) for v in self._attrs["scale"]]

    @property
    def offset(self) -> list[float]:
        return [float(v) for v in self._attrs["offset"]]

    @property
    def num_tiles(self) -> int:
        return int(self._attrs["num_tiles"])

    @property
    def num_scenes(self) -> int:
        """Committed scenes the ``scenes/`` table describes (0 for a store without one)."""
        return int(self._attrs.get("num_scenes", 0)) if "scenes" in self._group else 0

    @property
    def has_labels(self) -> bool:
        return "labels" in self._arrays

    def require_labels(self) -> None:
        """StoreError unless the store holds labels."""
        if not self.has_labels:
            raise StoreError(
                f"{self.path}: store has no labels; tile labelled scenes into it "
                "(e.g. `cloudkit tile --scl-labels` for L2A products)"
            )

    def index(self, name: str) -> np.ndarray:
        """The committed rows of an index column (``tile_scene``, ``tile_row``, ``tile_col``,
        ``valid_fraction``, ``cloud_fraction``)."""
        if name not in _INDEX_ARRAYS:
            raise KeyError(f"{name!r} is not an index column of a tile store")
        return self._column(name, self.num_tiles)

    def tile(self, name: str, row: int) -> np.ndarray:
        """One tile, ``(C, T, T)`` of ``images`` or ``(1, T, T)`` of ``valid``/``labels``;
        StoreError naming the tile when its chunk is missing or does not decode."""
        if not 0 <= row < self.num_tiles:
            raise IndexError(f"{self.path}: tile {row} is not one of its {self.num_tiles} tiles")
        tile, problem = self._read_tile(name, row)
        if problem is not None:
            raise StoreError(self._damaged(problem))
        return tile

    def tiles(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The tiles at ``rows``, ``(len(rows), *tile shape)`` (errors as :meth:`tile`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and not (rows.min() >= 0 and rows.max() < self.num_tiles):
            raise IndexError(f"{self.path}: rows outside its {self.num_tiles} tiles asked for")
        for row in rows:
            missing = self._missing_chunk(name, int(row))
            if missing is not None:
                raise StoreError(self._damaged(missing))
        try:
            return self._arrays[name].get_orthogonal_selection((rows,))
        except Exception:  # noqa: BLE001 - find and name the tile that does not decode
            for row in rows:
                self.tile(name, int(row))
            raise

    @property
    def integrity(self) -> str | None:
        """The store's ``integrity`` attribute (:data:`INTEGRITY`, :data:`TILE_INTEGRITY`)."""
        return self._attrs.get("integrity")

    @property
    def checksummed(self) -> bool:
        """Whether every chunk carries a CRC-32C and every committed tile all its chunks."""
        return self._attrs.get("integrity") in _CHECKSUMMED

    def chunk_problem(self, name: str, row: int) -> str | None:
        """What is wrong with tile ``row``'s chunk of ``name``, or None."""
        return self._read_tile(name, row)[1]

    def _read_tile(self, name: str, row: int) -> tuple[np.ndarray | None, str | None]:
        """(the tile, None), or (None, what is wrong with its chunk)."""
        missing = self._missing_chunk(name, row)
        if missing is not None:
            return None, missing
        try:
            return self._arrays[name][row], None
        except Exception as err:  # noqa: BLE001 - zarr's and its codecs' errors vary
            reason = " ".join(str(err).split()) or type(err).__name__
            return None, f"{self.path}: tile {row}: its {name} chunk does not decode ({reason})"

    def _missing_chunk(self, name: str, row: int) -> str | None:
        # only a store that writes every chunk knows a missing one for damage (an older one
        # left out chunks that held only the fill value)
        if not self.checksummed or self.location.exists(_chunk_key(name, row)):
            return None
        return f"{self.path}: tile {row} has lost its {name} chunk ({_chunk_key(name, row)})"

    def _damaged(self, problem: str) -> str:
        return (
            f"{problem}; the store is damaged: `cloudkit check {self.path}` lists every "
            "damaged tile"
        )

    def scenes(self, name: str) -> np.ndarray:
        """The committed rows of a ``scenes/`` column (``id``, ``path``, ``crs``, ...)."""
        if name not in _SCENE_ARRAYS and name not in _SUN_ARRAYS:
            raise KeyError(f"{name!r} is not a column of a tile store's scenes/ table")
        if "scenes" not in self._group:
            raise StoreError(f"{self.path}: store has no scenes/ table")
        if name in _SUN_ARRAYS and f"scenes/{name}" not in self._group:
            dtype, fill = _SUN_ARRAYS[name]  # a store made before cloudkit recorded the sun
            return np.full(self.num_scenes, fill, dtype=object if dtype is str else dtype)
        return self._column(f"scenes/{name}", self.num_scenes)

    def _column(self, name: str, rows: int) -> np.ndarray:
        """The first ``rows`` of a column (read whole on opening: damage since then is
        still one line)."""
        try:
            return self._group[name][:rows]
        except KeyError:
            raise
        except Exception as err:  # noqa: BLE001 - zarr's and its codecs' errors vary
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            problem = f"{self.path}: its {name} column does not decode ({reason})"
            raise StoreError(self._damaged(problem)) from None


def _check_store(
    where: Location,
    group: zarr.Group,
    *,
    remedy: str,
    damage: list[str] | None = None,
    recent: bool = False,
) -> None:
    """A cloudkit tile store of this format version (else ``remedy``), sound enough to read
    and append to: its attributes, every array's metadata, every index and scene chunk
    (``recent``: only the last scene's row of the scene columns, none of the index)."""
    _check_format(where, group.attrs, remedy=remedy)
    _check_attributes(where, group, damage, recent=recent)


def _check_format(path: Path, attrs, *, remedy: str) -> None:
    if attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: is a Zarr group but not a cloudkit tile store")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path}: tile store format {attrs.get('format_version')} is not "
            f"{FORMAT_VERSION}; {remedy}"
        )


def _open_group(path: Path | Location, mode: str) -> zarr.Group:
    """The store's group, or StoreError when its metadata cannot be read (truncated JSON)."""
    where = path.zarr_store(read_only=mode == "r") if isinstance(path, Location) else str(path)
    try:
        return zarr.open_group(where, mode=mode)
    except (ValueError, KeyError, TypeError, OSError) as err:  # JSONDecodeError is a ValueError
        raise StoreError(
            f"{path}: the store's metadata cannot be read ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120]}); it is damaged"
        ) from None


def _member(group: zarr.Group, name: str, where: Location):
    """The array (or group) ``name`` of ``group``, or None when there is none: one metadata
    read (``in`` and ``[]`` are two; a dataset over thousands of stores opens each).
    StoreError naming it when its ``zarr.json`` is there but cannot be read (torn, edited)."""
    try:
        return group[name]
    except KeyError:
        if where.exists(f"{name}/zarr.json"):
            reason = "not the metadata of a Zarr array"
        elif where.children(name):  # its chunks are there: the array was, its metadata lost
            raise StoreError(
                f"{where}: the metadata of its {name} ({name}/zarr.json) is lost, its chunks "
                "are there; the store is damaged"
            ) from None
        else:
            return None
    except (ValueError, TypeError, OSError) as err:  # JSONDecodeError is a ValueError
        if isinstance(err, CloudkitError):
            raise
        reason = f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
    raise StoreError(
        f"{where}: the metadata of its {name} ({name}/zarr.json) cannot be read ({reason}); "
        "the store is damaged"
    )


def _check_attributes(
    path: Location, group: zarr.Group, damage: list[str] | None = None, *, recent: bool = False
) -> None:
    """The attributes every reader and the appender rely on, against each other and against
    the arrays, and every chunk of the index and scene columns: a tampered or damaged store
    stops here in one line, never later in a traceback, with rows counted wrong or committed
    tiles overwritten. ``damage``: the columns' lost or undecodable chunks are added to it
    instead (for `check`, which lists them all)."""
    attrs = group.attrs

    def bad(what: str) -> StoreError:
        return StoreError(f"{path}: {what}; the store is damaged (tile the scenes again)")

    def whole(name: str, low: int) -> int:
        value = attrs.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise bad(f"attribute {name} is {value!r}, not a whole number >= {low}")
        return value

    bands = attrs.get("bands")
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        raise bad(f"attribute bands is {bands!r}, not a list of band names")
    tile_size, overlap = whole("tile_size", 1), whole("overlap", 0)
    if overlap >= tile_size:
        raise bad(f"overlap {overlap} is not smaller than tile_size {tile_size}")
    resolution = attrs.get("resolution")
    if not isinstance(resolution, (int, float)) or not 0 < resolution < math.inf:
        raise bad(f"attribute resolution is {resolution!r}, not a pixel size in metres")
    for name in ("scale", "offset"):
        values = attrs.get(name)
        if not (
            isinstance(values, list)
            and len(values) == len(bands)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        ):
            raise bad(f"attribute {name} is {values!r}, not one number per band")
    num_tiles = whole("num_tiles", 0)
    images = _member(group, "images", path)
    if images is None:
        raise bad("it has no images array")
    if tuple(images.shape[1:]) != (len(bands), tile_size, tile_size):
        raise bad(f"images are {tuple(images.shape)}, not (N, {len(bands)}, {tile_size}, ...)")
    names = ("valid", "labels", *_INDEX_ARRAYS)
    arrays = {"images": images, **{n: _member(group, n, path) for n in names}}
    # a store that writes every chunk was made with every array (labels come with labels;
    # a subset copied without its scenes/ table is a store still)
    every = attrs.get("integrity") == INTEGRITY
    lacking = [n for n, a in arrays.items() if a is None and n != "labels"]
    if every and lacking:
        raise bad(f"its {lacking[0]} array is lost")
    if arrays["labels"] is None and "label_codes" in attrs:  # set with the labels array
        raise bad("its labels array is lost (the attribute label_codes came with it)")
    for name, array in arrays.items():
        if array is not None and array.shape[0] < num_tiles:
            raise bad(f"num_tiles {num_tiles} is more than the {array.shape[0]} rows of {name}")
    if _member(group, "scenes", path) is not None:
        num_scenes = whole("num_scenes", 0)
        columns = {n: _member(group, f"scenes/{n}", path) for n in _SCENE_ARRAYS}
        if columns["id"] is None:
            raise bad("its scenes/ table has no id column")
        lost = [n for n, column in columns.items() if column is None]
        if every and lost:
            raise bad(f"its scenes/{lost[0]} array is lost")
        rows = columns["id"].shape[0]
        if num_scenes > rows:
            raise bad(f"num_scenes {num_scenes} is more than the {rows} rows of scenes/")
        if num_scenes and (columns["tile_start"] is None or columns["tile_count"] is None):
            raise bad("its scenes/ table has no tile_start or tile_count column")
    else:
        num_scenes = 0
    # scenes are appended in order: the last one's tiles end furthest
    first_scene = max(num_scenes - 1, 0) if recent else 0
    first_tile = num_tiles if recent else 0
    problems = _column_problems(path, group, num_tiles, num_scenes, first_tile, first_scene)
    if damage is not None:
        damage += problems
    elif problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(
            f"{problems[0]}{more}; the store is damaged: `cloudkit check {path}` lists the damage"
        )
    if num_scenes and not problems:
        starts = columns["tile_start"][first_scene:num_scenes]
        counts = columns["tile_count"][first_scene:num_scenes]
        if int((starts + counts).max()) > num_tiles:
            raise bad(f"num_tiles {num_tiles} is below the tiles its scenes committed")


def _every_chunk(array):
    """``array`` writing even chunks of only the fill value: in a store of
    :data:`INTEGRITY` a missing chunk is damage, never a default."""
    return array.with_config({"write_empty_chunks": True})


def _chunk_keys(name: str, array, first: int, rows: int) -> list[tuple[str, int, int]]:
    """(key, first row, last row) of each chunk of ``array`` (called ``name``) that holds
    rows [first, rows)."""
    per, tail = array.chunks[0], (0,) * (array.ndim - 1)
    return [
        (
            f"{name}/{array.metadata.encode_chunk_key((k, *tail))}",
            k * per,
            min(rows, (k + 1) * per) - 1,
        )
        for k in range(first // per, -(-rows // per))
    ]


def _column_problems(
    where: Location,
    group: zarr.Group,
    num_tiles: int,
    num_scenes: int,
    from_tile: int = 0,
    from_scene: int = 0,
) -> list[str]:
    """One line per chunk of an index or ``scenes/`` column, from the chunk that holds those
    rows to the committed end, that is lost (in a store of :data:`INTEGRITY`) or does not
    decode."""
    every = group.attrs.get("integrity") == INTEGRITY
    columns = [(n, num_tiles, from_tile) for n in _INDEX_ARRAYS]
    if _member(group, "scenes", where) is not None:
        names = (*_SCENE_ARRAYS, *_SUN_ARRAYS)  # a sun column may be absent (older stores)
        columns += [(f"scenes/{n}", num_scenes, from_scene) for n in names]
    problems = []
    for name, rows, first in columns:
        array = _member(group, name, where)
        if array is None:
            continue
        first -= first % array.chunks[0]  # the whole chunk a row from ``first`` lies in
        if first >= rows:
            continue
        lost = [
            f"{where}: its {name} column has lost a chunk ({key}, rows {lo}-{hi})"
            for key, lo, hi in _chunk_keys(name, array, first, rows)
            if every and not where.exists(key)
        ]
        problems += lost
        if lost:
            continue
        try:
            array[first:rows]
        except Exception as err:  # noqa: BLE001 - zarr's and its codecs' errors vary
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            problems.append(f"{where}: its {name} column does not decode ({reason})")
    return problems


def _lost_tile_chunks(where: Location, names: Sequence[str], num_tiles: int) -> list[str]:
    """One line per committed tile chunk not on disk (one listing per array)."""
    problems = []
    for name in names:
        present = where.keys(f"{name}/c")
        problems += [
            f"{where}: tile {row} has lost its {name} chunk ({_chunk_key(name, row)})"
            for row in range(num_tiles)
            if _chunk_key(name, row) not in present
        ]
    return problems


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
            scenes.create_array(
                name,
                shape=(0, *row),
                chunks=(_SCENE_CHUNK, *row),
                dtype=dtype,
                compressors=codecs,
                **({} if fill is None else {"fill_value": fill}),
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
            with open(scratch / ".cloudkit.lock", "a") as lock_file:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive (on another machine, say)
                shutil.rmtree(scratch, ignore_errors=True)


def _chunk_key(name: str, row: int) -> str:
    """The key of tile ``row``'s chunk of the tile array ``name`` (one tile per chunk)."""
    return f"{name}/c/{row}/0/0/0"


def _tile_folder(name: str, row: int) -> str:
    """The folder that holds tile ``row``'s chunk of ``name``, and nothing else."""
    return f"{name}/c/{row}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _create_tile_array(group: zarr.Group, name: str, rows: int) -> None:
    dtype, fill, axis = _TILE_ARRAYS[name]
    c = len(group.attrs["bands"]) if name == "images" else 1
    t = int(group.attrs["tile_size"])
    group.create_array(
        name,
        shape=(rows, c, t, t),
        chunks=(1, c, t, t),
        dtype=dtype,
        fill_value=fill,
        compressors=_compressors(group),
        dimension_names=("tile", axis, "y", "x"),
    )


def _compressors(group: zarr.Group) -> tuple:
    """The bytes codecs of a store's new arrays: zstd, then a CRC-32C where the store
    checksums its chunks."""
    checked = group.attrs.get("integrity") in _CHECKSUMMED
    return (_COMPRESSOR, Crc32cCodec()) if checked else (_COMPRESSOR,)


def _lock(path: Path):
    """Hold an exclusive lock so two runs never append to one store at once."""
    lock_file = open(path / ".cloudkit.lock", "w")  # noqa: SIM115 - held for the store's lifetime
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        lock_file.close()
        raise StoreError(f"{path}: another cloudkit run is writing this store") from err
    return lock_file


def read_scene_table(path: Path) -> list[dict]:
    """The committed scenes of a store as plain dicts (for summaries and tests)."""
    reader = StoreReader.open(path)
    table = {name: reader.scenes(name) for name in (*_SCENE_ARRAYS, *_SUN_ARRAYS)}
    rows = []
    for i in range(reader.num_scenes):
        row = {}
        for name, values in table.items():
            v = values[i]
            row[name] = (
                v.tolist() if isinstance(v, np.ndarray) else (v.item() if hasattr(v, "item") else v)
            )
        rows.append(row)
    return rows


def damaged_tiles(path: Path | str) -> tuple[StoreReader, list[str]]:
    """Read every chunk of every array of the store at ``path`` (a folder or an ``s3://``
    URL): the index and scene columns, and every committed tile; (its reader, one line per
    problem found). StoreError when the store cannot be opened at all."""
    problems: list[str] = []
    reader = StoreReader.open(path, damage=problems)
    for row in range(reader.num_tiles):
        for name in reader._arrays:
            problem = reader.chunk_problem(name, row)
            if problem is not None:
                problems.append(problem)
    return reader, problems
