"""The Python API (`cloudkit.api`): arrays masked as `cloudkit predict` masks the same pixels,
the commands as functions, and one clear error for each kind of bad input.

The scene is a crop of the shipped sample product (clear ground, cumulus, their shadows and
the no-data wedge), written as a 13-band GeoTIFF at 20 m: `cloudkit predict` reads its pixels
as they are, so its mask is the reference for every kind of array. Windows of 64 px (instead
of the default model's 128) put several windows, their blending and chunk edges on a small
array.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.enums import Resampling

import cloudkit
from cloudkit.bands import L1C_BANDS
from cloudkit.cli import main
from cloudkit.errors import (
    BandMismatchError,
    CheckpointError,
    InvalidSceneError,
    OptionError,
    OutputError,
    ScenesFailedError,
    TileShapeError,
)
from cloudkit.sample.product import sample_product

WINDOW = {"window": 64, "overlap": 8}
#: the model's own shadow: what the windows give, before the geometric check
MODEL_SHADOWS = {"shadows": "model"}
SUN = (338.75, 37.69)  # azimuth, zenith: the sample's own (its MTD_TL.xml)
ROWS, COLS = slice(0, 150), slice(40, 210)  # of the sample at 20 m: every class and no data
has_xarray = importlib.util.find_spec("xarray") is not None
has_dask = importlib.util.find_spec("dask") is not None
needs_xarray = pytest.mark.skipif(
    not (has_xarray and has_dask and importlib.util.find_spec("rioxarray")),
    reason="xarray, dask and rioxarray are not installed (pip install 'cloudkit[xarray]')",
)
needs_dask = pytest.mark.skipif(not has_dask, reason="dask is not installed")
needs_ukis = pytest.mark.skipif(
    importlib.util.find_spec("ukis_csmask") is None,
    reason="ukis-csmask is not installed (pip install 'cloudkit[peers]')",
)


@dataclass(frozen=True)
class Scene:
    path: Path  # the GeoTIFF
    dn: np.ndarray  # (13, H, W) uint16, reflectance * 10000 (offset 0, as GeoTIFFs are read)
    mask: np.ndarray  # what `cloudkit predict --shadows model` wrote for it
    checked: np.ndarray  # ... with the shadow check (its default), given the sun
    estimated: np.ndarray  # ... with the check, the sun's direction estimated from the mask
    crs: rasterio.crs.CRS
    transform: Affine

    @property
    def reflectance(self) -> np.ndarray:
        return np.where(self.dn == 0, np.nan, self.dn / 10000.0).astype(np.float32)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Scene:
    folder = tmp_path_factory.mktemp("api")
    bands = []
    for band in L1C_BANDS:
        (jp2,) = sample_product().glob(f"GRANULE/*/IMG_DATA/*_{band}.jp2")
        with rasterio.open(jp2) as src:
            full = src.read(1, out_shape=(384, 384), resampling=Resampling.nearest)
            crs, origin = src.crs, (src.transform.c, src.transform.f)
        bands.append(full[ROWS, COLS])
    # the sample is of baseline 04.00 (DN = reflectance * 10000 + 1000); a plain GeoTIFF is
    # read with offset 0, so its DN are written as reflectance * 10000
    dn = np.stack(bands).astype(np.int32)
    dn = np.where(dn == 0, 0, np.clip(dn - 1000, 1, None)).astype(np.uint16)
    transform = Affine(20.0, 0.0, origin[0] + 20.0 * COLS.start, 0.0, -20.0, origin[1])
    path = folder / "scene.tif"
    profile = {"driver": "GTiff", "count": 13, "dtype": "uint16", "crs": crs}
    with rasterio.open(
        path, "w", **profile, width=dn.shape[2], height=dn.shape[1], transform=transform
    ) as dst:
        dst.write(dn)
    masks = []
    for name, extra in (
        ("model", ["--shadows", "model"]),
        ("checked", ["--sun-angles", ",".join(map(str, SUN))]),
        ("estimated", []),
    ):
        args = ["predict", path, "-o", folder / name, "--window", "64", "--overlap", "8", *extra]
        assert main([str(a) for a in args]) == 0
        with rasterio.open(folder / name / "scene_mask.tif") as src:
            masks.append(src.read(1))
    return Scene(path, dn, *masks, crs, transform)


@pytest.fixture(scope="module")
def model() -> cloudkit.Model:
    return cloudkit.load_model(device="cpu")


class TestLoadModel:
    def test_the_default_model_and_what_it_tells(self, model):
        assert model.source == "default"
        assert model.classes == ("clear", "thick cloud", "thin cloud", "cloud shadow")
        assert model.resolution == 20.0
        assert model.info.any_bands and "B02" in model.bands
        assert model.device == "cpu"
        assert "default" in repr(model)

    def test_an_unknown_name_is_one_checkpoint_error(self):
        with pytest.raises(CheckpointError, match="no such checkpoint file, nor a model name"):
            cloudkit.load_model("no-such-model")


class TestPredictArray:
    def test_the_scene_has_every_class_and_no_data(self, scene):
        present = set(np.unique(scene.mask).tolist())
        assert {0, 1, 3, 255} <= present

    def test_dn_bands_first_give_the_mask_of_cloudkit_predict(self, model, scene):
        classes = model.predict_array(
            scene.dn, bands=L1C_BANDS, resolution=20, dn_offset=0, **WINDOW, **MODEL_SHADOWS
        )
        assert classes.dtype == np.uint8 and classes.shape == scene.mask.shape
        np.testing.assert_array_equal(classes, scene.mask)

    def test_reflectance_bands_last_gives_the_same_mask(self, model, scene):
        last = np.moveaxis(scene.reflectance, 0, -1)
        classes = model.predict_array(
            last, bands=L1C_BANDS, resolution=20, band_axis=-1, **WINDOW, **MODEL_SHADOWS
        )
        np.testing.assert_array_equal(classes, scene.mask)

    def test_dn_of_baseline_04_with_their_offset_give_the_same_mask(self, model, scene):
        shifted = np.where(scene.dn == 0, 0, scene.dn + 1000).astype(np.uint16)
        classes = model.predict_array(
            shifted, bands=L1C_BANDS, resolution=20, dn_offset=-1000, **WINDOW, **MODEL_SHADOWS
        )
        np.testing.assert_array_equal(classes, scene.mask)

    def test_a_given_nodata_value_is_no_data(self, model, scene):
        dn = scene.dn.copy()
        dn[:, :20, :] = 7  # a fill value of some other product
        classes = model.predict_array(
            dn, bands=L1C_BANDS, resolution=20, dn_offset=0, nodata=7, **WINDOW
        )
        assert (classes[:20] == 255).all() and (classes[20:] != 255).any()

    def test_a_10_m_array_is_read_at_the_models_20_m_and_the_mask_repeated(self, model, scene):
        fine = scene.reflectance.repeat(2, axis=1).repeat(2, axis=2)  # 2 x 2 of each 20 m pixel
        classes = model.predict_array(
            fine, bands=L1C_BANDS, resolution=10, **WINDOW, **MODEL_SHADOWS
        )
        np.testing.assert_array_equal(classes, scene.mask.repeat(2, axis=0).repeat(2, axis=1))
        checked = model.predict_array(
            fine, bands=L1C_BANDS, resolution=10, sun_angles=SUN, **WINDOW
        )
        np.testing.assert_array_equal(checked, scene.checked.repeat(2, axis=0).repeat(2, axis=1))

    @pytest.mark.parametrize("lazy", [False, pytest.param(True, marks=needs_dask)])
    def test_a_10_m_pixel_without_data_is_no_data_and_its_neighbours_keep_their_class(
        self, model, scene, lazy
    ):
        fine = scene.reflectance.repeat(2, axis=1).repeat(2, axis=2)
        expected = scene.mask.repeat(2, axis=0).repeat(2, axis=1)
        with_data = np.argwhere(expected != 255)
        holes = np.zeros(fine.shape[1:], dtype=bool)
        for y, x in with_data[[len(with_data) // 3, 2 * len(with_data) // 3]]:
            holes[y, x] = True  # one of the four 10 m pixels of a 20 m pixel
        fine[4][holes] = np.nan  # one band lacks them
        array = fine
        if lazy:
            import dask.array as da

            array = da.from_array(fine, chunks=(13, 160, 160))
        classes, probs = model.predict_array(
            array, bands=L1C_BANDS, resolution=10, return_probabilities=True,
            **WINDOW, **MODEL_SHADOWS,
        )  # fmt: skip
        classes, probs = np.asarray(classes), np.asarray(probs)
        assert (classes[holes] == 255).all() and np.isnan(probs[:, holes]).all()
        # a model pixel averages what has data, so the rest of the mask does not change
        np.testing.assert_array_equal(classes[~holes], expected[~holes])

    def test_probabilities_one_per_class_nan_without_data(self, model, scene):
        classes, probs = model.predict_array(
            scene.reflectance[[1, 2, 3, 7]],  # B02 B03 B04 B08: an any-band model takes them
            bands=("B02", "B03", "B04", "B08"),
            resolution=20,
            return_probabilities=True,
            **WINDOW,
        )
        assert probs.shape == (4, *classes.shape) and probs.dtype == np.float32
        nodata = classes == 255
        assert np.isnan(probs[:, nodata]).all()
        np.testing.assert_allclose(probs[:, ~nodata].sum(axis=0), 1.0, atol=1e-4)

    def test_the_shadow_check_given_the_sun_gives_the_mask_of_cloudkit_predict(self, model, scene):
        classes = model.predict_array(
            scene.dn, bands=L1C_BANDS, resolution=20, dn_offset=0, sun_angles=SUN, **WINDOW
        )
        np.testing.assert_array_equal(classes, scene.checked)

    @needs_ukis
    def test_a_peer_gives_the_mask_cloudkit_predict_makes_with_it(self, scene, tmp_path):
        out = tmp_path / "ukis"
        args = ["predict", scene.path, "-o", out, "--model", "ukis-csmask", "--shadows=model"]
        assert main([str(a) for a in args]) == 0
        with rasterio.open(out / "scene_mask.tif") as src:
            expected = src.read(1)
        peer = cloudkit.load_model("ukis-csmask")
        classes = peer.predict_array(
            scene.reflectance, bands=L1C_BANDS, resolution=20, level="L1C", **MODEL_SHADOWS
        )
        np.testing.assert_array_equal(classes, expected)

    @needs_dask
    def test_a_dask_array_chunk_by_chunk_gives_the_same_mask(self, model, scene):
        import dask.array as da

        lazy = da.from_array(scene.reflectance, chunks=(4, 50, 60))
        classes, probs = model.predict_array(
            lazy, bands=L1C_BANDS, resolution=20, return_probabilities=True, **WINDOW
        )  # the model's shadow: the check needs the whole mask
        assert isinstance(classes, da.Array) and len(classes.chunks[0]) > 1
        np.testing.assert_array_equal(classes.compute(), scene.mask)
        assert probs.shape == (4, *scene.mask.shape)
        with pytest.raises(OptionError, match="compute the array first"):
            model.predict_array(lazy, bands=L1C_BANDS, resolution=20, shadows="geometric")

    @needs_xarray
    def test_a_dask_backed_dataarray_keeps_its_grid_and_gives_the_same_mask(self, model, scene):
        import rioxarray

        array = rioxarray.open_rasterio(scene.path, chunks={"y": 70, "x": 80})
        classes, probs = model.predict_array(
            array, bands=L1C_BANDS, dn_offset=0, return_probabilities=True, **WINDOW
        )
        assert classes.dims == ("y", "x") and probs.dims == ("class", "y", "x")
        assert list(probs.coords["class"].values) == list(model.classes)
        np.testing.assert_array_equal(classes.coords["x"].values, array.coords["x"].values)
        assert classes.rio.crs == scene.crs and classes.rio.transform() == scene.transform
        assert classes.rio.nodata == 255
        np.testing.assert_array_equal(classes.values, scene.mask)

    @needs_xarray
    def test_a_georeferenced_dataarray_in_memory_gets_the_shadow_check_of_predict(
        self, model, scene
    ):
        import rioxarray

        assert (scene.estimated != scene.mask).any()  # the check removed some shadow
        array = rioxarray.open_rasterio(scene.path)  # its latitude narrows the sun's search
        classes = model.predict_array(array, bands=L1C_BANDS, dn_offset=0, **WINDOW)
        np.testing.assert_array_equal(classes.values, scene.estimated)

    @needs_xarray
    def test_a_dataarray_names_its_bands_in_its_band_coordinate(self, model, scene):
        import xarray as xr

        y = 1000.0 - 20.0 * np.arange(scene.dn.shape[1])
        x = 20.0 * np.arange(scene.dn.shape[2])
        array = xr.DataArray(
            scene.reflectance,
            dims=("band", "y", "x"),
            coords={"band": list(L1C_BANDS), "y": y, "x": x},
        )
        classes = model.predict_array(array, **WINDOW, **MODEL_SHADOWS)  # 20 m: its coordinates
        np.testing.assert_array_equal(classes.values, scene.mask)
        np.testing.assert_array_equal(classes.coords["y"].values, y)


class TestBadArrays:
    def test_wrong_band_count(self, model, scene):
        with pytest.raises(BandMismatchError, match="has 13 band.* but bands names 4"):
            model.predict_array(
                scene.reflectance, bands=("B02", "B03", "B04", "B08"), resolution=20
            )

    def test_unknown_band_names(self, model, scene):
        names = ("B02", "B03", "RED", "B08")
        with pytest.raises(BandMismatchError, match="unknown Sentinel-2 band.*'RED'"):
            model.predict_array(scene.reflectance[:4], bands=names, resolution=20)

    def test_bands_the_model_needs_are_missing(self, model, scene):
        with pytest.raises(BandMismatchError, match="needs at least B02,B03,B04"):
            model.predict_array(scene.reflectance[7:9], bands=("B08", "B8A"), resolution=20)

    def test_nan_everywhere(self, model):
        nothing = np.full((3, 64, 64), np.nan, dtype=np.float32)
        with pytest.raises(InvalidSceneError, match="no valid pixel"):
            model.predict_array(nothing, bands=("B02", "B03", "B04"), resolution=20)

    def test_a_1x1_array(self, model):
        with pytest.raises(TileShapeError, match="1 x 1 pixels.*at least 32 x 32"):
            model.predict_array(
                np.full((3, 1, 1), 0.1, np.float32), bands=("B02", "B03", "B04"), resolution=20
            )

    def test_two_dimensions(self, model):
        with pytest.raises(TileShapeError, match=r"expected 3 dimensions, \(band, y, x\)"):
            model.predict_array(np.zeros((64, 64), np.float32), bands=("B02",), resolution=20)

    def test_dn_without_their_offset(self, model, scene):
        with pytest.raises(OptionError, match="pass dn_offset.*-1000 for processing baseline"):
            model.predict_array(scene.dn, bands=L1C_BANDS, resolution=20)

    def test_negative_dn(self, model, scene):
        with pytest.raises(InvalidSceneError, match="DN from -5"):
            model.predict_array(
                scene.dn.astype(np.int32) - 5, bands=L1C_BANDS, resolution=20, dn_offset=0
            )

    def test_dn_as_floats(self, model, scene):
        # CloudSEN12's GeoTIFFs hold DN as float32: read as reflectance they would clip to
        # bright cloud everywhere
        with pytest.raises(InvalidSceneError, match="floats up to .*divide them by 10000"):
            model.predict_array(scene.dn.astype(np.float32), bands=L1C_BANDS, resolution=20)

    def test_no_resolution(self, model, scene):
        with pytest.raises(OptionError, match="pixel size in metres"):
            model.predict_array(scene.reflectance, bands=L1C_BANDS)

    def test_no_band_names(self, model, scene):
        with pytest.raises(BandMismatchError, match="name them in order"):
            model.predict_array(scene.reflectance, resolution=20)

    def test_a_band_axis_in_the_middle(self, model, scene):
        with pytest.raises(OptionError, match="band_axis=1"):
            model.predict_array(scene.reflectance, bands=L1C_BANDS, resolution=20, band_axis=1)

    def test_bad_sun_angles(self, model, scene):
        with pytest.raises(OptionError, match="sun_angles: sun zenith 100.0 is out of range"):
            model.predict_array(
                scene.reflectance, bands=L1C_BANDS, resolution=20, sun_angles=(95.0, 100.0)
            )

    @needs_ukis
    def test_a_peer_needs_the_processing_level(self, scene):
        peer = cloudkit.load_model("ukis-csmask")
        with pytest.raises(OptionError, match="level='L1C'"):
            peer.predict_array(scene.reflectance, bands=L1C_BANDS, resolution=20)


class TestCommands:
    def test_predict_writes_the_cli_mask_and_says_what_it_did(self, model, scene, tmp_path, capsys):
        result = cloudkit.predict(scene.path, tmp_path, model=model, sun_angles=SUN, **WINDOW)
        (done,) = result.scenes
        assert done.status == "predicted" and result.masks == [tmp_path / "scene_mask.tif"]
        with rasterio.open(result.masks[0]) as src:
            np.testing.assert_array_equal(src.read(1), scene.checked)
        assert 0 < done.summary["cloud_percent"] < 100
        again = cloudkit.predict([scene.path], tmp_path, model="default")
        assert again.scenes[0].status == "skipped"
        assert capsys.readouterr() == ("", "")  # nothing printed

    def test_predict_raises_for_failed_scenes_unless_keep_going(self, scene, tmp_path):
        bad = tmp_path / "bad.tif"
        with rasterio.open(
            bad, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint16",
            crs=scene.crs, transform=scene.transform,
        ) as dst:  # fmt: skip
            dst.descriptions = ("B08", "B8A", "B11")  # no true colour for the default model
        with pytest.raises(ScenesFailedError, match="1 of 1 scene.*bad"):
            cloudkit.predict(bad, tmp_path / "out")
        result = cloudkit.predict(bad, tmp_path / "out", keep_going=True)
        assert [r.scene_id for r in result.failed] == ["bad"]

    def test_predict_refuses_an_unknown_option(self, scene, tmp_path):
        with pytest.raises(OptionError, match="no option windw"):
            cloudkit.predict(scene.path, tmp_path, windw=64)

    def test_tile_pretrain_finetune_evaluate(self, tmp_path, capsys):
        from cloudkit.sample.synthetic import write_l1c_safe

        product = write_l1c_safe(tmp_path, size_10m=384, seed=5, labels=tmp_path / "labels")
        store = tmp_path / "tiles.zarr"
        tiled = cloudkit.tile(
            product.path, store, resolution=20, tile_size=32, labels_from=tmp_path / "labels"
        )
        assert tiled.scenes[0].status == "tiled" and tiled.tiles > 20  # 36 less no-data ones
        seconds = tiled.scenes[0].summary["timings"]  # where the run went, for bench_tile.py
        assert {"read_s", "write_s", "cut_s", "store_s", "commit_s", "total_s"} <= set(seconds)
        assert 0 < seconds["cut_s"] + seconds["store_s"] <= seconds["write_s"] + 0.002
        again = cloudkit.tile(product.path, store, resolution=20, tile_size=32)
        assert again.tiles == 0 and again.scenes[0].status == "skipped"
        rgb = cloudkit.tile(product.path, tmp_path / "rgb.zarr", tile_size=32, bands="b04,B03,b02")
        assert zarr.open_group(str(rgb.store), mode="r").attrs["bands"] == ["B02", "B03", "B04"]

        common = {"epochs": 1, "batch_size": 8, "crop": 32, "workers": 0, "device": "cpu"}
        epochs: list[int] = []
        pretrained = cloudkit.pretrain(
            store,
            tmp_path / "moco",
            method="moco",
            queue_size=64,
            progress=lambda epoch, record: epochs.append(epoch),
            **common,
        )
        assert pretrained.checkpoint == tmp_path / "moco" / "last.pt"
        assert epochs == [1] and len(pretrained.epochs) == 1

        tuned = cloudkit.finetune(
            store, tmp_path / "ft", init=pretrained.checkpoint, fraction=1.0, task="cloud",
            freeze_epochs=0, patience=0, **common,
        )  # fmt: skip
        assert tuned.checkpoint.name == "best.pt" and tuned.checkpoint.is_file()
        assert "val_loss" in tuned.epochs[0]

        scores = cloudkit.evaluate(store, checkpoint=tuned.checkpoint, out=tmp_path / "e.json")
        assert scores.task == "cloud" and 0 < scores.tiles <= tiled.tiles
        assert set(scores.metrics["per_class"]) == {"clear", "cloud"}
        assert scores.path is not None and scores.path.is_file()

        if importlib.util.find_spec("s2cloudless") is not None:  # the peers extra
            peer = cloudkit.evaluate(store, reference="s2cloudless", task="cloud")
            assert peer.tiles == scores.tiles and peer.metrics["reference"].startswith(
                "s2cloudless"
            )

        mine = cloudkit.load_model(tuned.checkpoint, device="cpu")
        array = np.full((13, 40, 40), 0.2, dtype=np.float32)
        assert set(np.unique(mine.predict_array(array, bands=L1C_BANDS, resolution=20))) <= {0, 1}
        if has_dask:  # a binary model: two probabilities per pixel, chunk by chunk too
            import dask.array as da

            lazy = da.from_array(np.tile(array, (1, 3, 2)), chunks=(13, 40, 40))
            codes, probs = mine.predict_array(
                lazy, bands=L1C_BANDS, resolution=20, return_probabilities=True
            )
            assert probs.shape == (2, 120, 80) and probs.compute().shape == (2, 120, 80)
        assert capsys.readouterr() == ("", "")  # nothing printed by any of them

    def test_evaluate_takes_a_checkpoint_or_a_reference(self, tmp_path):
        with pytest.raises(OptionError, match="exactly one"):
            cloudkit.evaluate(tmp_path / "tiles.zarr")
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        with pytest.raises(OutputError):  # before any scoring
            cloudkit.evaluate(tmp_path / "tiles.zarr", checkpoint="x.pt", out=blocker / "e.json")


class TestFrontDoor:
    def test_everything_is_exported(self):
        for name in ("load_model", "predict", "tile", "pretrain", "finetune", "evaluate"):
            assert name in cloudkit.__all__ and callable(getattr(cloudkit, name))
        assert cloudkit.__version__ and cloudkit.errors.CloudkitError

    def test_predict_stays_the_function_once_its_namesake_package_is_imported(self):
        import cloudkit.predict.writer  # noqa: F401 - the subpackage of the same name

        assert cloudkit.predict is cloudkit.api.predict
        assert sys.modules["cloudkit.predict"].__path__  # the package is still importable

    def test_import_cloudkit_loads_no_torch(self):
        code = (
            "import sys, cloudkit; print(sorted({'torch', 'numpy', 'rasterio'} & set(sys.modules)))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == "[]"
