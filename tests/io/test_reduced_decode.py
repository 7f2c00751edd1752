"""Reduced-resolution decoding (``--decode reduced``): JPEG 2000 resolution levels in the grid
plan, the decoding lanes, `cloudkit predict` (its default) and `cloudkit tile` (on request).

Products: the L1C sample that ships with cloudkit (lossless JPEG 2000, 768 px at 10 m) and
GeoTIFFs made in tmp_path (no resolution levels: always decoded in full)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from cloudkit.config import Decode, TileOptions
from cloudkit.io.band_stream import BandStream, RasterBand
from cloudkit.io.grid import plan_grid
from cloudkit.io.raster import read_header
from cloudkit.io.safe import read_safe
from cloudkit.io.scene_rows import SceneRows
from cloudkit.sample.product import sample_product
from cloudkit.tiler.writer import tile_paths
from tests.helpers.cli import fails_with_one_line, run

TEN_M = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="module")
def sample() -> Path:
    return sample_product()


def test_jpeg2000_files_report_their_levels_and_geotiffs_none(sample, make_raster, tmp_path):
    (b02,) = sample.glob("GRANULE/*/IMG_DATA/*_B02.jp2")
    assert read_header(b02).reduced_levels >= 2
    tif = make_raster(tmp_path / "B02.tif", count=1, size=64, res=10)
    assert read_header(tif).reduced_levels == 0


TWENTY_M = ("B05", "B06", "B07", "B8A", "B11", "B12")


@pytest.mark.parametrize(
    ("resolution", "ten_m", "twenty_m"),
    [
        (20, (1, 1), (0, 1)),  # 10 m bands: level 1 is the 20 m grid itself
        (60, (1, -3), (0, -3)),  # 6 = 2 (level 1) x 3 (averaged); 3 has no power of 2
        (120, (2, -3), (1, -3)),  # 12 = 4 x 3, 6 = 2 x 3
    ],
)
def test_plan_decodes_the_levels_a_factor_holds_and_averages_the_rest(
    sample, resolution, ten_m, twenty_m
):
    scene = read_safe(sample)
    full = plan_grid(scene, resolution=resolution, decode="full")
    reduced = plan_grid(scene, resolution=resolution, decode="reduced")
    same_grid = ("height", "width", "transform", "bands", "sources")
    assert all(getattr(reduced, k) == getattr(full, k) for k in same_grid)
    assert full.levels == (0,) * len(full.bands)
    for i, band in enumerate(reduced.bands):
        got = (reduced.levels[i], reduced.factors[i])
        if band in TEN_M:
            assert got == ten_m, band
        elif band in TWENTY_M:
            assert got == twenty_m, band
        else:  # the sample's 60 m files (128 px) hold no coarser level
            assert got == (0, full.factors[i]), band


def test_at_the_finest_resolution_nothing_is_reduced(sample):
    plan = plan_grid(read_safe(sample), resolution=10, decode="reduced")
    assert set(plan.levels) == {0}


def test_geotiff_is_decoded_in_full(make_raster, tmp_path):
    from cloudkit.io.datasets import read_geotiff

    path = make_raster(
        tmp_path / "S2A_MSIL1C_crop.tif", count=3, size=64, descriptions=("B02", "B03", "B04")
    )
    plan = plan_grid(read_geotiff(path), resolution=20, decode="reduced")
    assert set(plan.levels) == {0} and set(plan.factors) == {-2}


def test_a_lane_at_level_1_reads_what_gdal_shows_as_the_first_overview(sample):
    (b02,) = sample.glob("GRANULE/*/IMG_DATA/*_B02.jp2")
    with BandStream([RasterBand(b02, level=1)], workers=1) as stream:
        h, w = stream.shape(0)
        rows = stream.rows(0, 0, h)
    with rasterio.open(b02) as full, rasterio.open(b02, overview_level=0) as low:
        assert (h, w) == (full.height // 2, full.width // 2)
        np.testing.assert_array_equal(rows, low.read(1))
        # the wavelet's low-pass image is close to the 2 x 2 average, not equal to it
        dn = full.read(1).astype(np.float64)
        mean = dn.reshape(h, 2, w, 2).mean(axis=(1, 3))
    diff = np.abs(rows - mean)[mean > 0]
    assert diff.mean() < 0.02 * mean[mean > 0].mean()
    assert diff.max() > 0


def test_scene_rows_at_20m_reduced_are_close_to_full(sample):
    scene = read_safe(sample)
    plans = {d: plan_grid(scene, resolution=20, decode=d) for d in ("full", "reduced")}
    reads = {}
    for decode, plan in plans.items():
        with SceneRows(plan, workers=2) as rows:
            bands, _ = rows.read(0, 64)
        i = plan.bands.index("B03")
        reads[decode] = bands[i]
    assert reads["full"].shape == (128, 768)  # native 10 m rows, averaged by the kernels
    assert reads["reduced"].shape == (64, 384)  # already at 20 m


def _mask_and_summary(folder: Path) -> tuple[np.ndarray, dict]:
    (mask,) = folder.glob("*_mask.tif")
    (summary,) = folder.glob("*.json")
    with rasterio.open(mask) as src:
        return src.read(1), json.loads(summary.read_text())


def test_predict_reads_levels_by_default_and_full_when_asked(capsys, tmp_path):
    code, _, _ = run(capsys, "predict", "--sample", "-o", str(tmp_path / "reduced"))
    assert code == 0
    code, _, _ = run(
        capsys, "predict", "--sample", "-o", str(tmp_path / "full"), "--decode", "full"
    )
    assert code == 0
    reduced, reduced_summary = _mask_and_summary(tmp_path / "reduced")
    full, full_summary = _mask_and_summary(tmp_path / "full")
    assert reduced_summary["grid"]["reduced_levels"] == {b: 1 for b in TEN_M}
    assert full_summary["grid"]["reduced_levels"] == {}
    assert reduced_summary["grid"] == {
        **full_summary["grid"],
        "reduced_levels": reduced_summary["grid"]["reduced_levels"],
    }
    assert (reduced == full).mean() > 0.97


def test_tile_decodes_in_full_unless_asked_and_a_store_keeps_one_decoding(capsys, tmp_path):
    sample = sample_product()
    full = tmp_path / "full.zarr"
    tile_paths([sample], full, TileOptions(resolution=20, tile_size=64))
    assert zarr.open_group(str(full), mode="r").attrs["decode"] == "full"
    reduced = tmp_path / "reduced.zarr"
    tile_paths([sample], reduced, TileOptions(resolution=20, tile_size=64, decode=Decode.reduced))
    assert zarr.open_group(str(reduced), mode="r").attrs["decode"] == "reduced"
    a = zarr.open_group(str(full), mode="r")["images"][:].astype(np.int32)
    b = zarr.open_group(str(reduced), mode="r")["images"][:].astype(np.int32)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.02 * a.mean()

    err = fails_with_one_line(
        capsys, "tile", str(sample), str(reduced), "--resolution", "20", "--tile-size", "64"
    )
    assert "decoded reduced" in err and "--decode reduced" in err
