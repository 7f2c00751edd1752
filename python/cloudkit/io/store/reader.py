""":class:`StoreReader`: a store's committed tiles, index and scenes, read without a lock;
the scene table as plain rows; every chunk read for `cloudkit check`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from cloudkit.errors import StoreError
from cloudkit.io.location import Location, location_of
from cloudkit.io.store.checks import _check_store, _member, _open_group
from cloudkit.io.store.layout import (
    _CHECKSUMMED,
    _INDEX_ARRAYS,
    _SCENE_ARRAYS,
    _SUN_ARRAYS,
    _TILE_ARRAYS,
    _chunk_key,
)


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
        self._attrs: dict[str, Any] = dict(group.attrs)
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
        assert tile is not None  # _read_tile gives a tile or a problem
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
            return cast(np.ndarray, cast(zarr.Array, self._group[name])[:rows])
        except KeyError:
            raise
        except Exception as err:  # noqa: BLE001 - zarr's and its codecs' errors vary
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            problem = f"{self.path}: its {name} column does not decode ({reason})"
            raise StoreError(self._damaged(problem)) from None


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
