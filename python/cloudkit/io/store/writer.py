""":class:`TileStore`: scenes appended to a store, by a direct writer (holding its lock) or
by writers sharing it (each scene written into a scratch store, then committed under the
lock)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import zarr

from cloudkit.errors import CloudkitError, StoreError
from cloudkit.files.locks import FileLock
from cloudkit.io.location import Location, S3Location, is_url, location_of
from cloudkit.io.scene import LABEL_CLASSES
from cloudkit.io.store.checks import (
    _check_store,
    _column_problems,
    _lost_tile_chunks,
    _open_group,
    check_layout,
)
from cloudkit.io.store.create import (
    _create,
    _create_tile_array,
    _lock,
    _remove_abandoned_scratch,
)
from cloudkit.io.store.layout import (
    _CHECKSUMMED,
    _FILL_BLOCK,
    _INDEX_ARRAYS,
    _SCENE_ARRAYS,
    _SUN_ARRAYS,
    _TILE_ARRAYS,
    LOCK_WAIT_SECONDS,
    SceneRecord,
    StoreLayout,
    TileRecord,
    _chunk_key,
    _every_chunk,
    _tile_folder,
    layout_of,
)
from cloudkit.io.store.scene_table import append_scene_row

if TYPE_CHECKING:
    from zarr.core.metadata import ArrayV3Metadata


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
        self,
        location: Location,
        group: zarr.Group,
        lock: FileLock | None,
        *,
        shared: bool = False,
    ) -> None:
        self.location = location
        # a local store's folder; an s3:// store's URL (it is written shared, never directly)
        self.path = str(location) if location.is_remote else location.root
        self._group = _Members(group)
        self._lock = lock  # a direct writer's, held while the store is open
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
            # an s3:// URL (location_of refuses every other URL)
            return cls._open_remote(cast(S3Location, location_of(path)), layout)
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
            lock = None if shared else _lock(path)
        except PermissionError as err:
            raise StoreError(f"{path}: cannot write the store ({err.strerror})") from err
        except OSError as err:
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{path}: cannot open the store ({err})") from err
        store = cls(Location(path), group, lock, shared=shared)
        if not created:
            try:
                check_layout(store.location, store._group, layout)
                with store._exclusive():
                    store._repair()
                    store._refuse_damaged()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def _open_remote(cls, location: S3Location, layout: StoreLayout) -> TileStore:
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
        check_layout(store.location, store._group, layout)
        with store._exclusive():
            store._repair()
            store._refuse_damaged()
        return store

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
        ids = cast(np.ndarray, self._array("scenes/id")[:n])
        paths = cast(np.ndarray, self._array("scenes/path")[:n])
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
            arr = self._array(name)
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
            self._array(name).resize((end,))
            if n:
                _every_chunk(self._group[name])[start:end] = values
        for name in self._tile_arrays():
            self._truncate(name, end, listed=False)
        append_scene_row(self._group, self.num_scenes, record, tiles, start)
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
        scratch = TileStore.open(
            folder / name, layout_of(self._group.attrs), checksummed=checksummed
        )
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
            scratch_root = cast(Path, scratch.path)  # a scratch store is a local folder
            staged = self.location.stage([scratch_root / moved(*c) for c in chunks])
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
            self._array(name).resize((start + n, *self._array(name).shape[1:]))
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
        arr = self._array(name).with_config({"write_empty_chunks": True})
        fill = _TILE_ARRAYS[name][1]
        for lo in range(start, end, _FILL_BLOCK):
            hi = min(end, lo + _FILL_BLOCK)
            arr[lo:hi] = np.full((hi - lo, *arr.shape[1:]), fill, dtype=arr.dtype)

    def _codecs(self, name: str) -> tuple:
        # every store is Zarr v3 (made by _create)
        return tuple(cast("ArrayV3Metadata", self._array(name).metadata).codecs)

    def _array(self, name: str) -> zarr.Array:
        """The array ``name`` of the store (every name asked for is an array's)."""
        return cast(zarr.Array, self._group[name])

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

    def _repair(self, *, listed: bool = True) -> None:
        """Drop rows past the commit point left by an interrupted run (``listed``: found
        by listing what lies there, see :meth:`_truncate`)."""
        n_tiles, n_scenes = self.num_tiles, self.num_scenes
        for name in (*self._tile_arrays(), *_INDEX_ARRAYS):
            self._truncate(name, n_tiles, listed=listed)
        for name in (*_SCENE_ARRAYS, *_SUN_ARRAYS):
            try:
                arr = self._array(f"scenes/{name}")
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
        arr = self._array(name)
        old, chunk_rows = arr.shape[0], arr.chunks[0]
        first_stale = -(-n // chunk_rows)  # chunks at or past this index hold only stale rows
        stale: Sequence[int]
        if self.location.is_remote or not listed:  # a listing of every chunk costs more
            stale = range(first_stale, -(-old // chunk_rows))
        else:
            stale = [int(e) for e in self.location.children(f"{name}/c") if e.isdigit()]
        for k in stale:
            if k >= first_stale:
                self.location.delete(f"{name}/c/{k}")
        if old != n:
            arr.resize((n, *arr.shape[1:]))
