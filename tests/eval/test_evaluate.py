"""evaluate_reference and evaluate_checkpoint on real stores, and `cloudkit evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import zarr
from affine import Affine

from cloudkit.cli import main
from cloudkit.errors import BandMismatchError, CloudkitError, InvalidSceneError, OptionError
from cloudkit.eval.evaluate import evaluate_checkpoint
from cloudkit.eval.reference import MaskReader, evaluate_reference, tile_footprints
from cloudkit.io.store import StoreReader
from tests.helpers.pretrain_stores import subset_store
from tests.helpers.shared_data import STACK_13BAND, T19UDP_S2CLOUDLESS

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")


@pytest.fixture(scope="module")
def store(t29unu, tmp_path_factory) -> Path:
    """T29UNU (L2A) at 60 m in 64 px tiles with its SCL as labels."""
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    path = tmp_path_factory.mktemp("eval") / "t29unu-60m-64px.zarr"
    options = TileOptions(resolution=60, bands=BANDS, tile_size=64, scl_labels=True)
    tile_paths([t29unu], path, options)
    return path


@pytest.fixture(scope="module")
def scene_labels(store) -> tuple[np.ndarray, dict]:
    """The store's labels pasted back onto the scene grid (255 where no tile covers)."""
    from cloudkit.io.store import read_scene_table

    group = zarr.open_group(str(store), mode="r")
    (scene,) = read_scene_table(store)
    h, w = scene["shape"]
    t = int(group.attrs["tile_size"])
    grid = np.full((h + t, w + t), 255, dtype=np.uint8)
    n = int(group.attrs["num_tiles"])
    labels = group["labels"][:n, 0]
    for i, (r, c) in enumerate(zip(group["tile_row"][:n], group["tile_col"][:n], strict=True)):
        grid[r : r + t, c : c + t] = labels[i]
    return grid[:h, :w], scene


def _write_mask(path: Path, data: np.ndarray, scene: dict, transform=None, crs=None) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs or rasterio.crs.CRS.from_wkt(scene["crs"]),
        "transform": transform or Affine(*scene["transform"]),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


class TestReference:
    def test_scl_against_its_own_labels_is_perfect(self, store):
        m = evaluate_reference([store], reference="scl", task="multi")
        assert m["overall_accuracy"] == 1.0
        assert m["balanced_overall_accuracy"] == 1.0
        assert m["tiles"] > 100 and m["pixels"] > 1_000_000
        assert m["reference_nodata_pixels"] == 0
        cm = np.array(m["confusion_matrix"])
        assert (cm.diagonal() > 0).all()  # every class occurs: a real check

    def test_mask_on_the_scene_grid_and_shifted(self, store, scene_labels, tmp_path):
        labels, scene = scene_labels
        cloud = np.isin(labels, (1, 2)).astype(np.uint8)
        exact = _write_mask(tmp_path / "exact.tif", cloud, scene)
        m = evaluate_reference([store], reference=str(exact), task="cloud")
        assert m["overall_accuracy"] == 1.0
        assert m["per_class"]["cloud"]["support"] > 0

        a, b, c, d, e, f = scene["transform"]
        shifted = Affine(a, b, c + 64 * a, d, e, f)  # one tile east
        moved = _write_mask(tmp_path / "shifted.tif", cloud, scene, transform=shifted)
        m = evaluate_reference([store], reference=str(moved), task="cloud")
        assert m["overall_accuracy"] < 0.9
        assert m["reference_nodata_pixels"] > 0  # the first column of tiles lies outside

    def test_finer_mask_same_crs_is_resampled(self, store, scene_labels, tmp_path):
        labels, scene = scene_labels
        cloud = np.isin(labels, (1, 2)).astype(np.uint8).repeat(2, 0).repeat(2, 1)
        a, b, c, d, e, f = scene["transform"]
        fine = _write_mask(
            tmp_path / "fine.tif", cloud, scene, transform=Affine(a / 2, b, c, d, e / 2, f)
        )
        m = evaluate_reference([store], reference=str(fine), task="cloud", tiles=range(0, 500, 7))
        assert m["overall_accuracy"] == 1.0 and m["tiles"] > 0

    def test_probability_mask_with_threshold(self, store, scene_labels, tmp_path):
        labels, scene = scene_labels
        prob = np.where(np.isin(labels, (1, 2)), 0.45, 0.2).astype(np.float32)
        path = _write_mask(tmp_path / "prob.tif", prob, scene)
        tiles = range(0, 500, 5)
        m = evaluate_reference(
            [store], reference=str(path), task="cloud", threshold=0.4, tiles=tiles
        )
        assert m["overall_accuracy"] == 1.0 and m["threshold"] == 0.4
        m = evaluate_reference([store], reference=str(path), task="cloud", tiles=tiles)
        assert m["per_class"]["cloud"]["recall"] == 0.0  # default 0.5 for float masks

    def test_mask_of_no_class_is_refused_not_scored_empty(self, store, scene_labels, tmp_path):
        labels, scene = scene_labels
        path = _write_mask(tmp_path / "sevens.tif", np.full(labels.shape, 7, np.uint8), scene)
        with pytest.raises(InvalidSceneError, match="no pixel of the stores' labels has a class"):
            evaluate_reference([store], reference=str(path), task="cloud", tiles=range(0, 500, 7))

    @pytest.mark.parametrize("threshold", [float("nan"), 2.0, -1.0, 0.0])
    def test_threshold_outside_a_probability_is_refused(self, store, threshold):
        with pytest.raises(OptionError, match=f"--threshold {threshold}: .* in \\(0, 1\\)"):
            evaluate_reference([store], reference="mask.tif", task="cloud", threshold=threshold)

    def test_mask_in_another_crs_is_refused(self, store, scene_labels, tmp_path):
        _, scene = scene_labels
        path = _write_mask(
            tmp_path / "wgs84.tif",
            np.zeros((10, 10), np.uint8),
            scene,
            transform=Affine(0.01, 0, -9.0, 0, -0.01, 55.0),
            crs=rasterio.crs.CRS.from_epsg(4326),
        )
        with pytest.raises(InvalidSceneError, match="EPSG:4326.*reproject"):
            evaluate_reference([store], reference=str(path), task="cloud", tiles=[0])

    @pytest.mark.shared_data
    def test_store_without_labels_reads_windows_then_refuses(self, tmp_path):
        from cloudkit.config import TileOptions
        from cloudkit.tiler.writer import tile_paths

        path = tmp_path / "t19udp.zarr"
        tile_paths([STACK_13BAND], path, TileOptions(tile_size=64))
        with rasterio.open(T19UDP_S2CLOUDLESS) as ds:
            prob = ds.read(1)
        footprints = tile_footprints(StoreReader.open(path))
        group = zarr.open_group(str(path), mode="r")
        with MaskReader(T19UDP_S2CLOUDLESS) as reader:
            for tile in footprints[:: max(1, len(footprints) // 6)]:
                r, c = int(group["tile_row"][tile.index]), int(group["tile_col"][tile.index])
                window = reader.read(tile)
                inside = prob[r : r + 64, c : c + 64]
                h, w = inside.shape
                np.testing.assert_array_equal(window[:h, :w], inside)
                assert np.isnan(window[h:, :]).all() and np.isnan(window[:, w:]).all()
        with pytest.raises(CloudkitError, match="store has no labels"):
            evaluate_reference(
                [path], reference=str(T19UDP_S2CLOUDLESS), task="cloud", threshold=0.4
            )


def _checkpoint(path: Path, bands) -> Path:
    from cloudkit.models.encoder import Encoder
    from cloudkit.models.segmentation import build_segmenter, segmenter_state

    torch.manual_seed(0)
    model = build_segmenter(Encoder(bands), head="unet", num_classes=2, binary=True)
    payload = {
        "model": segmenter_state(model, task="cloud"),
        "task": "cloud",
        "bands": list(bands),
        "classes": ["clear", "cloud"],
        "head": "unet",
    }
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def small(store, tmp_path_factory) -> Path:
    """Eight labelled tiles of the store (no scenes/ table: a checkpoint needs none)."""
    return subset_store(store, tmp_path_factory.mktemp("small") / "small.zarr", 8)


class TestCheckpoint:
    def test_counts_only_valid_labelled_pixels(self, small, tmp_path):
        ckpt = _checkpoint(tmp_path / "best.pt", BANDS)
        m = evaluate_checkpoint(ckpt, [small], batch_size=3, device="cpu")
        group = zarr.open_group(str(small), mode="r")
        labels, valid = group["labels"][:, 0], group["valid"][:, 0] != 0
        counted = valid & (labels != 255)
        assert m["pixels"] == int(counted.sum()) == np.array(m["confusion_matrix"]).sum()
        support = int((counted & np.isin(labels, (1, 2))).sum())
        assert m["per_class"]["cloud"]["support"] == support
        assert set(m["per_class"]) == {"clear", "cloud"}
        assert m["tiles"] == 8 and m["task"] == "cloud"
        json.dumps(m, allow_nan=False)
        sub = evaluate_checkpoint(ckpt, [small], batch_size=3, device="cpu", tiles=[0, 1])
        assert sub["tiles"] == 2 and sub["pixels"] < m["pixels"]

    def test_band_mismatch(self, small, tmp_path):
        ckpt = _checkpoint(tmp_path / "rgb.pt", ("B02", "B03", "B04"))
        with pytest.raises(BandMismatchError, match="B02,B03,B04"):
            evaluate_checkpoint(ckpt, [small], batch_size=2, device="cpu")


class TestCli:
    def test_checkpoint_table_and_json(self, small, tmp_path, capsys):
        ckpt = _checkpoint(tmp_path / "best.pt", BANDS)
        assert (
            main(["evaluate", str(ckpt), str(small), "--device", "cpu", "--batch-size", "4"]) == 0
        )
        out = capsys.readouterr().out
        assert "overall accuracy" in out and "cloud" in out
        result = json.loads((tmp_path / "best.eval.json").read_text())
        assert result["tiles"] == 8 and len(result["confusion_matrix"]) == 2
        assert not list(tmp_path.glob(".*.partial"))  # the atomic write left no temporary

    def test_reference_scl(self, store, tmp_path, capsys):
        out = tmp_path / "scl.json"
        code = main(
            ["evaluate", "--reference", "scl", "--task", "joint", str(store), "--out", str(out)]
        )
        assert code == 0
        assert "balanced overall accuracy 1.0000" in capsys.readouterr().out
        assert json.loads(out.read_text())["overall_accuracy"] == 1.0

    def test_band_mismatch_is_one_line(self, small, tmp_path, capsys):
        ckpt = _checkpoint(tmp_path / "rgb.pt", ("B02", "B03", "B04"))
        assert main(["evaluate", str(ckpt), str(small), "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("cloudkit: error:") and err.count("\n") == 1 and "bands" in err

    def test_store_without_labels_is_one_line(self, small, tmp_path, capsys):
        unlabelled = subset_store(small, tmp_path / "nolabels.zarr", 2, labels=False)
        ckpt = _checkpoint(tmp_path / "best.pt", BANDS)
        assert main(["evaluate", str(ckpt), str(unlabelled), "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert "store has no labels" in err and err.count("\n") == 1

    def test_checkpoint_needs_a_store(self, tmp_path, capsys):
        assert main(["evaluate", str(tmp_path / "x.pt")]) == 1
        assert "expected a checkpoint and at least one store" in capsys.readouterr().err


class TestShadowCheck:
    """`evaluate --shadows geometric`: the default model (clear, thick, thin, shadow) on
    T29UNU's tiles, each checked with its scene's sun."""

    def test_scores_after_the_check_and_says_what_it_removed(self, store, tmp_path):
        from cloudkit.models.zoo import shipped_model

        default = shipped_model("default").path
        some = list(range(0, StoreReader.open(store).num_tiles, 5))  # a fifth: kept quick
        plain = evaluate_checkpoint(default, [store], batch_size=8, device="cpu", tiles=some)
        checked = evaluate_checkpoint(
            default, [store], batch_size=8, device="cpu", tiles=some, shadows="geometric"
        )
        check = checked["shadow_check"]
        assert check["shadow_pixels"] >= check["removed_pixels"] > 0
        assert plain["pixels"] == checked["pixels"]
        shadow = plain["per_class"]["cloud shadow"]
        after = checked["per_class"]["cloud shadow"]
        assert after["support"] == shadow["support"]  # the labels are the same
        assert after["recall"] <= shadow["recall"]  # the check only takes shadow away
        assert "shadow_check" not in plain

    def test_a_model_without_shadow_is_one_line(self, small, tmp_path, capsys):
        ckpt = _checkpoint(tmp_path / "best.pt", BANDS)
        args = ["evaluate", str(ckpt), str(small), "--device", "cpu", "--shadows", "geometric"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--shadows geometric" in err and "cloud shadow" in err
