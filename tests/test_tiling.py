"""`cloudkit tile` end to end on real products, checked against a plain numpy reference."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from cloudkit.config import TileOptions
from cloudkit.io.discover import discover_scenes
from cloudkit.io.grid import plan_grid
from cloudkit.io.store import read_scene_table
from cloudkit.sample.synthetic import write_l1c_safe
from cloudkit.tiler.writer import tile_paths
from tests.helpers import numpy_reference as ref
from tests.helpers.shared_data import AWS_T19UDP, L2A_T29UNU, T29UNU_60M_BANDS


def _tile(paths, out, **kw):
    return tile_paths(list(paths), out, TileOptions(**kw))


def _expected_tiles(plan, shifts, tile, overlap):
    """Whole-scene numpy reference: read every band, resample, rebase, cut."""
    bands = []
    for src in plan.sources:
        with rasterio.open(src.path) as ds:
            bands.append(ds.read(src.index))
    stack = ref.stack_bands(bands, plan.factors, plan.height, plan.width, shifts)
    valid = (stack != 0).all(axis=0)[None].astype(np.uint8)
    return (
        ref.cut_tiles(stack, tile, overlap),
        ref.cut_tiles(valid, tile, overlap),
        ref.tile_origins(plan.height, plan.width, tile, overlap),
    )


@pytest.fixture(scope="module")
def t29unu_store(t29unu, tmp_path_factory):
    out = tmp_path_factory.mktemp("t29") / "t29unu.zarr"
    _tile([t29unu], out, resolution=60, bands=T29UNU_60M_BANDS, scl_labels=True, tile_size=384)
    return out


@pytest.mark.shared_data
class TestRealL2A:
    def test_store_matches_the_numpy_reference_exactly(self, t29unu_store):
        plan = plan_grid(discover_scenes([L2A_T29UNU])[0], resolution=60, bands=T29UNU_60M_BANDS)
        images, valid, origins = _expected_tiles(plan, [0] * len(T29UNU_60M_BANDS), 384, 0)
        g = zarr.open_group(str(t29unu_store), mode="r")
        n = g.attrs["num_tiles"]
        assert n == int(
            (valid.reshape(len(origins), -1).sum(axis=1) > 0).sum()
        )  # empty tiles skipped
        where = {o: i for i, o in enumerate(origins)}
        for k in range(n):
            i = where[(int(g["tile_row"][k]), int(g["tile_col"][k]))]
            np.testing.assert_array_equal(g["images"][k], images[i])
            np.testing.assert_array_equal(g["valid"][k], valid[i])
            assert g["valid_fraction"][k] == pytest.approx(valid[i].mean())

    def test_a_pixel_by_hand_is_dn_minus_1000_over_10000(self, t29unu_store):
        # baseline 04.00: BOA_ADD_OFFSET -1000, so reflectance = (DN - 1000) / 10000
        b04 = next(L2A_T29UNU.glob("GRANULE/*/IMG_DATA/R60m/*_B04_60m.jp2"))
        with rasterio.open(b04) as ds:
            dn = int(ds.read(1, window=((1000, 1001), (500, 501)))[0, 0])
        assert dn > 1000
        g = zarr.open_group(str(t29unu_store), mode="r")
        rows, cols = g["tile_row"][:], g["tile_col"][:]
        k = int(np.flatnonzero((rows == 768) & (cols == 384))[0])  # the tile holding (1000, 500)
        band = list(g.attrs["bands"]).index("B04")
        value = int(g["images"][k, band, 1000 - 768, 500 - 384])
        assert value == dn
        refl = value * g.attrs["scale"][band] + g.attrs["offset"][band]
        assert refl == pytest.approx((dn - 1000) / 10000, abs=1e-9)

    def test_scl_labels_and_cloud_fraction(self, t29unu_store):
        scl = next(L2A_T29UNU.glob("GRANULE/*/IMG_DATA/R60m/*_SCL_60m.jp2"))
        with rasterio.open(scl) as ds:
            codes = ds.read(1)
        lut = np.full(256, 255, np.uint8)
        lut[[2, 4, 5, 6, 7, 11]] = 0
        lut[[8, 9]] = 1
        lut[10] = 2
        lut[3] = 3
        labels = ref.cut_tiles(lut[codes][None], 384, 0, fill=255)
        origins = ref.tile_origins(1830, 1830, 384, 0)
        g = zarr.open_group(str(t29unu_store), mode="r")
        assert g.attrs["label_codes"]["3"] == "cloud shadow"
        for k in range(g.attrs["num_tiles"]):
            i = origins.index((int(g["tile_row"][k]), int(g["tile_col"][k])))
            np.testing.assert_array_equal(g["labels"][k], labels[i])
            lab = labels[i]
            expected = np.isin(lab, (1, 2)).sum() / max((lab != 255).sum(), 1)
            assert g["cloud_fraction"][k] == pytest.approx(expected, rel=1e-6)
        # ~60 % cloud over the scene according to the product
        scene = read_scene_table(t29unu_store)[0]
        assert 0.3 < scene["cloud_fraction"] < 0.9
        assert scene["label_kind"] == "scl"

    def test_scene_table_has_grid_and_offsets(self, t29unu_store):
        scene = read_scene_table(t29unu_store)[0]
        assert scene["id"].startswith("S2A_MSIL2A_20221005T115411_N0400")
        assert "32629" in scene["crs"] or "UTM zone 29N" in scene["crs"]
        assert scene["transform"] == [60.0, 0.0, 499980.0, 0.0, -60.0, 5900040.0]
        assert scene["shape"] == [1830, 1830]
        assert scene["add_offset"] == [-1000] * 11 and scene["dn_shift"] == [0] * 11
        assert scene["processing_baseline"] == "04.00"


@pytest.mark.shared_data
class TestRealAwsTile:
    def test_old_baseline_is_rebased_and_equal_to_reference(self, tmp_path):
        out = tmp_path / "t19.zarr"
        _tile([AWS_T19UDP], out, tile_size=64)
        plan = plan_grid(discover_scenes([AWS_T19UDP])[0])
        assert plan.resolution == 900 and (plan.height, plan.width) == (122, 122)
        images, valid, origins = _expected_tiles(plan, [1000] * 13, 64, 0)
        g = zarr.open_group(str(out), mode="r")
        assert list(g.attrs["bands"]) == list(ref_bands := [s.band for s in plan.sources])
        assert len(ref_bands) == 13
        for k in range(g.attrs["num_tiles"]):
            i = origins.index((int(g["tile_row"][k]), int(g["tile_col"][k])))
            np.testing.assert_array_equal(g["images"][k], images[i])
            np.testing.assert_array_equal(g["valid"][k], valid[i])
        # baseline 02.05 has no offset: reflectance = DN / 10000 by hand
        with rasterio.open(AWS_T19UDP / "B08.jp2") as ds:
            dn = int(ds.read(1)[100, 100])
        k = next(
            k
            for k in range(g.attrs["num_tiles"])
            if (g["tile_row"][k], g["tile_col"][k]) == (64, 64)
        )
        b = list(g.attrs["bands"]).index("B08")
        value = int(g["images"][k, b, 36, 36])
        assert value == dn + 1000
        assert value * g.attrs["scale"][b] + g.attrs["offset"][b] == pytest.approx(
            dn / 10000, abs=1e-9
        )
        assert "label_codes" not in g.attrs and "labels" not in g


class TestSyntheticProducts:
    """Small generated L1C products (cloudkit.sample.synthetic): stand-ins for full-size L1C scenes."""

    def test_overlap_and_edge_padding(self, tmp_path):
        product = write_l1c_safe(tmp_path, size_10m=192, seed=3).path
        out = tmp_path / "o.zarr"
        _tile([product], out, tile_size=64, overlap=16)
        plan = plan_grid(discover_scenes([product])[0])
        images, _valid, origins = _expected_tiles(plan, [0] * 13, 64, 16)
        g = zarr.open_group(str(out), mode="r")
        assert len(origins) == 16  # 1 + ceil((192 - 64) / 48) = 4 per axis
        for k in range(g.attrs["num_tiles"]):
            i = origins.index((int(g["tile_row"][k]), int(g["tile_col"][k])))
            np.testing.assert_array_equal(g["images"][k], images[i])

    def test_scenes_append_and_rerun_skips(self, tmp_path):
        a = write_l1c_safe(tmp_path / "a", size_10m=192, seed=1, tile_id="T31TCJ").path
        b = write_l1c_safe(tmp_path / "b", size_10m=192, seed=2, tile_id="T31TDJ").path
        out = tmp_path / "s.zarr"
        first = _tile([a], out, tile_size=96)
        second = _tile([a, b], out, tile_size=96)
        assert [r.status for r in first.results] == ["tiled"]
        assert [r.status for r in second.results] == ["skipped", "tiled"]
        table = read_scene_table(out)
        assert [t["id"] for t in table] == [a.name[:-5], b.name[:-5]]
        g = zarr.open_group(str(out), mode="r")
        assert g.attrs["num_tiles"] == sum(t["tile_count"] for t in table)
        assert (
            g["tile_scene"][:].tolist()
            == [0] * table[0]["tile_count"] + [1] * table[1]["tile_count"]
        )


def test_resume_after_kill_9(tmp_path):
    """A run killed half way through a scene leaves nothing that looks complete (the scene
    was being written into a scratch store beside the store); a re-run removes that and
    gives the same store as an uninterrupted run."""
    product = write_l1c_safe(tmp_path, size_10m=384, seed=5).path
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    script = textwrap.dedent(
        f"""
        import os, signal
        from cloudkit import kernels
        real = kernels.TileWriter

        class DiesAfterOneRow:
            def __init__(self, *a, **k):
                self._w, self._rows = real(*a, **k), 0
            def write_row(self, *a):
                if self._rows == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
                self._rows += 1
                return self._w.write_row(*a)

        kernels.TileWriter = DiesAfterOneRow
        from cloudkit.cli import main
        main(["tile", {str(product)!r}, {str(killed)!r}, "--tile-size", "128"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    g = zarr.open_group(str(killed), mode="r")
    assert g.attrs["num_tiles"] == 0 and g.attrs["num_scenes"] == 0
    assert g["images"].shape[0] == 0  # the store itself was never touched
    (scratch,) = (tmp_path / ".killed.zarr.scratch").iterdir()
    assert zarr.open_group(str(scratch), mode="r").attrs["in_progress"] == product.name[:-5]

    _tile([product], killed, tile_size=128)
    assert not scratch.exists()
    _tile([product], clean, tile_size=128)
    a, b = zarr.open_group(str(killed), mode="r"), zarr.open_group(str(clean), mode="r")
    assert a.attrs["num_tiles"] == b.attrs["num_tiles"] == 9
    assert a.attrs["in_progress"] is None
    for name in ("images", "valid", "tile_row", "tile_col", "valid_fraction"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    assert not math.isnan(float(a["valid_fraction"][0]))


def test_store_reads_with_plain_zarr_and_attrs_give_reflectance(tmp_path):
    from cloudkit.sample.product import sample_product

    out = tmp_path / "demo.zarr"
    _tile([sample_product()], out)
    g = zarr.open_group(str(out), mode="r")
    assert g["images"].shape[1:] == (13, 384, 384) and g["images"].dtype == np.uint16
    assert g["images"].chunks == (1, 13, 384, 384)
    dn = g["images"][0].astype(np.float32)
    refl = dn * np.float32(1e-4) - np.float32(0.1)
    ok = g["valid"][0, 0] == 1
    assert 0.0 < float(np.median(refl[:, ok])) < 1.0
    assert Path(out, "images", "zarr.json").is_file()


@pytest.mark.shared_data
def test_scl_labels_asked_of_a_product_without_scl_is_one_line(tmp_path, capsys):
    """An L1C band folder has no SCL: --scl-labels stops instead of a store without labels."""
    from tests.helpers.cli import fails_with_one_line

    store = tmp_path / "t.zarr"
    line = fails_with_one_line(capsys, "tile", AWS_T19UDP, store, "--scl-labels")
    assert AWS_T19UDP.name in line and "holds no SCL layer" in line
    assert not store.exists()


@pytest.mark.shared_data
def test_band_folder_lacking_a_band_is_refused_unless_bands_say_so(tmp_path, capsys):
    """A band folder without B04 would become a 12-band store without a word."""
    import shutil

    from cloudkit.cli import main

    folder = tmp_path / AWS_T19UDP.name
    shutil.copytree(AWS_T19UDP, folder)
    (folder / "B04.jp2").unlink()
    out = tmp_path / "s.zarr"
    assert main(["tile", str(folder), str(out), "--tile-size", "32"]) == 1
    err = capsys.readouterr().err
    kept = "B01,B02,B03,B05,B06,B07,B08,B8A,B09,B10,B11,B12"
    assert err == (
        f"cloudkit: error: {folder}: lacks B04 of the 13 bands of an L1C product; to tile the "
        f"bands it has, pass --bands {kept}\n"
    )
    assert not out.exists()
    assert main(["tile", str(folder), str(out), "--tile-size", "32", "--bands", kept]) == 0
    assert read_scene_table(out)[0]["id"] == folder.name


def test_another_product_of_a_held_name_is_refused_not_skipped(tmp_path, capsys, monkeypatch):
    """Two dates of a tile in folders both named alike: "already in the store" must mean the
    same product, not the same name."""
    from cloudkit.cli import main

    first = write_l1c_safe(tmp_path / "a", size_10m=192, seed=1).path
    second = write_l1c_safe(tmp_path / "b", size_10m=192, seed=2).path
    assert first.name == second.name
    out = tmp_path / "s.zarr"
    assert main(["tile", str(first), str(out), "--tile-size", "32"]) == 0
    assert main(["tile", str(second), str(out), "--tile-size", "32"]) == 1
    err = capsys.readouterr().err
    assert f"{second}: {out} already holds a scene named {first.stem}, tiled from {first}" in err
    assert err.count("\n") == 1
    # the same product again, even given by a relative path, is held
    monkeypatch.chdir(tmp_path)
    assert main(["tile", "a/" + first.name, str(out), "--tile-size", "32"]) == 0
    assert "1 already in the store" in capsys.readouterr().out


def test_tile_runs_without_loading_torch(tmp_path):
    """torch is some 0.8 GB of resident memory and 4 s of start-up that tiling never uses:
    a plain `cloudkit tile` (no teacher) must not import it, or its peak memory doubles."""
    code = textwrap.dedent(
        f"""
        import sys
        from cloudkit.cli import main
        from cloudkit.sample.product import sample_product
        sys.argv = ["cloudkit", "tile", str(sample_product()), {str(tmp_path / "s.zarr")!r}]
        try:
            main()
        except SystemExit as done:
            assert not done.code, done.code
        print("torch" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False", "tile imported torch"
    assert (tmp_path / "s.zarr" / "zarr.json").is_file()
