"""Whether a store can be read and appended to: its format, its attributes, every array's
metadata and every chunk of its index and scene columns; each problem one line that names
the store and the damage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import zarr

from cloudkit.errors import BandMismatchError, CloudkitError, StoreError
from cloudkit.io.location import Location
from cloudkit.io.store.layout import (
    _INDEX_ARRAYS,
    _SCENE_ARRAYS,
    _SUN_ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    INTEGRITY,
    StoreLayout,
    _chunk_key,
    _StoreGroup,
    layout_of,
)


def _check_store(
    where: Location,
    group: _StoreGroup,
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


def _check_format(path: Path | Location, attrs, *, remedy: str) -> None:
    if attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: is a Zarr group but not a cloudkit tile store")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path}: tile store format {attrs.get('format_version')} is not "
            f"{FORMAT_VERSION}; {remedy}"
        )


def _open_group(path: Path | Location, mode: Literal["r", "r+"]) -> zarr.Group:
    """The store's group, or StoreError when its metadata cannot be read (truncated JSON)."""
    where = path.zarr_store(read_only=mode == "r") if isinstance(path, Location) else str(path)
    try:
        return zarr.open_group(where, mode=mode)
    except (ValueError, KeyError, TypeError, OSError) as err:  # JSONDecodeError is a ValueError
        raise StoreError(
            f"{path}: the store's metadata cannot be read ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120]}); it is damaged"
        ) from None


def _member(group: _StoreGroup, name: str, where: Location):
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
    path: Location, group: _StoreGroup, damage: list[str] | None = None, *, recent: bool = False
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
    group: _StoreGroup,
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


def check_layout(where: Location, group: _StoreGroup, layout: StoreLayout) -> None:
    """StoreError (BandMismatchError for the bands) unless the store at ``where`` is sound
    and holds tiles of ``layout``, naming the option that would match it."""
    _check_store(where, group, remedy="write to a new store")
    have = layout_of(group.attrs)
    if have.bands != layout.bands:
        raise BandMismatchError(
            f"{where}: store holds bands {','.join(have.bands)} but the scene gives "
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
                f"{where}: store has {what} {old:g} but this run asks {new:g}; "
                f"pass {flag} {old:g} or use a new store"
            )
    if have.decode != layout.decode:
        raise StoreError(
            f"{where}: store's tiles were decoded {have.decode} but this run asks "
            f"--decode {layout.decode}; pass --decode {have.decode} or use a new store"
        )
