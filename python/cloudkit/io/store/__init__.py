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

This package is the only Python code that knows the layout: `TileStore` (``writer``)
writes a store, `StoreReader` (``reader``) reads one; ``layout`` says what a store holds,
``checks`` whether it is sound, ``create`` makes one. One writer owns the metadata: zarr-python, here, creates every array,
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

from cloudkit.io.store.layout import (
    FORMAT,
    FORMAT_VERSION,
    INTEGRITY,
    LOCK_WAIT_SECONDS,
    QUANTIFICATION,
    STORE_ADD_OFFSET,
    TILE_INTEGRITY,
    SceneRecord,
    StoreLayout,
    TileRecord,
    dn_shift_for,
)
from cloudkit.io.store.reader import StoreReader, damaged_tiles, read_scene_table
from cloudkit.io.store.writer import TileStore

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INTEGRITY",
    "LOCK_WAIT_SECONDS",
    "QUANTIFICATION",
    "STORE_ADD_OFFSET",
    "TILE_INTEGRITY",
    "SceneRecord",
    "StoreLayout",
    "StoreReader",
    "TileRecord",
    "TileStore",
    "damaged_tiles",
    "dn_shift_for",
    "read_scene_table",
]
