"""The sun angles in a tile store's scenes/ table: written with each scene, read back as not
known for stores made before cloudkit recorded them, which still take new scenes."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import zarr

from cloudkit.config import TileOptions
from cloudkit.io.safe import read_safe
from cloudkit.io.store import StoreReader, damaged_tiles, read_scene_table
from cloudkit.sample.product import sample_product
from cloudkit.sample.synthetic import write_l1c_safe
from cloudkit.tiler.writer import tile_paths

OPTIONS = TileOptions(resolution=60, tile_size=64, workers=1)


def test_scene_rows_carry_the_sun(tmp_path):
    store = tmp_path / "s.zarr"
    tile_paths([sample_product()], store, OPTIONS)
    (row,) = read_scene_table(store)
    sun = read_safe(sample_product()).sun
    assert row["sun_azimuth"] == pytest.approx(sun.azimuth, abs=1e-3)
    assert row["sun_zenith"] == pytest.approx(sun.zenith, abs=1e-3)
    assert row["sun_source"] == "MTD_TL.xml"


def test_a_store_made_before_the_sun_columns_reads_and_grows(tmp_path):
    store = tmp_path / "old.zarr"
    tile_paths([sample_product()], store, OPTIONS)
    for name in ("sun_azimuth", "sun_zenith", "sun_source"):  # as an older cloudkit made it
        shutil.rmtree(store / "scenes" / name)
    reader = StoreReader.open(store)
    assert np.isnan(reader.scenes("sun_azimuth")).all()
    assert list(reader.scenes("sun_source")) == [""]
    other = write_l1c_safe(tmp_path / "p", size_10m=384, seed=3, tile_id="T31TDJ")
    tile_paths([other.path], store, OPTIONS)
    rows = read_scene_table(store)
    assert len(rows) == 2
    assert math.isnan(rows[0]["sun_azimuth"]) and rows[0]["sun_source"] == ""
    assert rows[1]["sun_source"] == "MTD_TL.xml"
    assert zarr.open_group(str(store), mode="r")["scenes/sun_azimuth"].shape == (2,)
    _, problems = damaged_tiles(store)
    assert problems == []
