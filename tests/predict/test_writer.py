"""`cloudkit predict` on real products: the mask's grid, no-data and classes, parity with the
tile store, no seams between windows, atomic outputs, and one-line errors.

The real L2A product T29UNU is predicted at 60 m (its R60m files are the ones on disk) by a
U-Net fine-tuned for two epochs on its own SCL labels (tests/helpers/predict_models.py), three
times with different window layouts; the real AWS tile T19UDP (13 bands at 900 m) by an
untrained 13-band model. Synthetic L1C products (cloudkit.sample.synthetic) stand for bad downloads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from cloudkit.config import PredictOptions
from cloudkit.data.reflectance import ValueScale
from cloudkit.pipeline.run import Progress
from cloudkit.plots import QUICKLOOK_GAP_PX, QUICKLOOK_HEADER_PX
from cloudkit.predict.model import CheckpointPredictor
from cloudkit.predict.output import is_complete, output_paths
from cloudkit.predict.writer import predict_paths, unchecked_resolution
from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import one_line_error, run
from tests.helpers.predict_models import trained_checkpoint, untrained_checkpoint
from tests.helpers.shared_data import AWS_T19UDP, L2A_T29UNU, T29UNU_60M_BANDS

ALL_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
)  # fmt: skip
T29UNU_ID = L2A_T29UNU.name.removesuffix(".SAFE")
WINDOW = 128
#: window layouts of the T29UNU runs: (window, overlap); "hard" has no overlap, no blending
LAYOUTS = {"blended": (WINDOW, 32), "shifted": (WINDOW, 48), "hard": (WINDOW, 0)}


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return trained_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def runs(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """T29UNU at 60 m predicted with each layout of LAYOUTS; the out folder of each."""
    predictor = CheckpointPredictor(checkpoint, device="cpu")
    folders = {}
    for name, (window, overlap) in LAYOUTS.items():
        out = tmp_path_factory.mktemp(f"predict-{name}")
        options = PredictOptions(
            resolution=60,
            window=window,
            overlap=overlap,
            probabilities=True,
            quicklook=name == "blended",
        )
        summary = predict_paths([L2A_T29UNU], predictor, out, options)
        assert [r.status for r in summary.results] == ["predicted"], summary.results
        folders[name] = out
    return folders


def _source_60m() -> tuple[dict, np.ndarray]:
    """The grid of T29UNU's R60m files and where any of the model's bands has no data."""
    files = {p.stem.split("_")[-2]: p for p in L2A_T29UNU.glob("GRANULE/*/IMG_DATA/R60m/*.jp2")}
    nodata = None
    for band in T29UNU_60M_BANDS:
        with rasterio.open(files[band]) as ds:
            dn = ds.read(1)
            grid = {"crs": ds.crs, "transform": ds.transform, "shape": (ds.height, ds.width)}
        nodata = (dn == 0) if nodata is None else nodata | (dn == 0)
    return grid, nodata


def _cloud_probability(folder: Path) -> np.ndarray:
    with rasterio.open(output_paths(folder, T29UNU_ID).probabilities) as ds:
        return ds.read(2)


# ------------------------------------------------------------------------ the mask itself


class TestRealL2A:
    def test_grid_and_nodata_match_the_source(self, runs):
        grid, nodata = _source_60m()
        with rasterio.open(output_paths(runs["blended"], T29UNU_ID).mask) as ds:
            mask = ds.read(1)
            assert ds.crs == grid["crs"]
            assert ds.transform == grid["transform"]
            assert (ds.height, ds.width) == grid["shape"]
            assert ds.nodata == 255 and ds.dtypes == ("uint8",)
        assert nodata.any() and not nodata.all()  # the swath edge crosses this tile
        np.testing.assert_array_equal(mask == 255, nodata)

    def test_classes_are_the_documented_codes(self, runs):
        with rasterio.open(output_paths(runs["blended"], T29UNU_ID).mask) as ds:
            mask = ds.read(1)
            assert json.loads(ds.tags()["CLOUDKIT_CLASSES"]) == {"0": "clear", "1": "cloud"}
            assert ds.overviews(1)  # a COG with internal overviews
            overview = ds.read(1, out_shape=(ds.height // 2, ds.width // 2))
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert set(np.unique(mask)) == {0, 1, 255}
        assert set(np.unique(overview)) <= {0, 1, 255}

    def test_probabilities_agree_with_the_classes(self, runs):
        paths = output_paths(runs["blended"], T29UNU_ID)
        with rasterio.open(paths.mask) as ds:
            mask = ds.read(1)
        with rasterio.open(paths.probabilities) as ds:
            clear, cloud = ds.read(1), ds.read(2)
        valid = mask != 255
        assert np.isnan(cloud[~valid]).all() and not np.isnan(cloud[valid]).any()
        np.testing.assert_allclose(clear[valid] + cloud[valid], 1.0, atol=1e-6)
        np.testing.assert_array_equal(mask[valid], (cloud[valid] > 0.5).astype(np.uint8))

    def test_summary_reports_the_scene(self, runs):
        paths = output_paths(runs["blended"], T29UNU_ID)
        summary = json.loads(paths.summary.read_text())
        with rasterio.open(paths.mask) as ds:
            mask = ds.read(1)
        valid = mask != 255
        assert summary["valid_percent"] == pytest.approx(100 * valid.mean(), abs=1e-3)
        assert summary["cloud_percent"] == pytest.approx(100 * (mask[valid] == 1).mean(), abs=1e-3)
        assert summary["shadow_percent"] is None  # a cloud-only model
        assert summary["model"]["bands"] == list(T29UNU_60M_BANDS)
        assert summary["outputs"]["quicklook"] == paths.quicklook.name
        assert set(summary["timings"]) >= {"read_s", "preprocess_s", "model_s", "write_s"}
        assert summary["inference"] == {
            **summary["inference"],
            "window": WINDOW,
            "overlap": 32,
            "device": "cpu",
            "precision": "fp32",
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a plain PNG
            with rasterio.open(paths.quicklook) as ds:
                # true colour and the classes side by side, each panel's long side <= 1024
                assert ds.height <= 1024 + QUICKLOOK_HEADER_PX and ds.count == 4  # RGBA
                assert ds.width <= 2 * 1024 + 2 * QUICKLOOK_GAP_PX

    def test_cloud_cover_is_close_to_sen2cor(self, runs):
        """The fine-tuned model learnt SCL's clouds: its cloud cover must be near SCL's."""
        (scl_file,) = L2A_T29UNU.glob("GRANULE/*/IMG_DATA/R60m/*_SCL_60m.jp2")
        with rasterio.open(scl_file) as ds:
            scl = ds.read(1)
        scl_cloud = np.isin(scl[scl != 0], (8, 9, 10)).mean() * 100  # medium, high, cirrus
        summary = json.loads(output_paths(runs["blended"], T29UNU_ID).summary.read_text())
        assert abs(summary["cloud_percent"] - scl_cloud) < 15


class TestParityWithTheTileStore:
    def test_a_window_equals_the_store_tile_at_the_same_place(self, runs, checkpoint, tmp_path):
        """Without overlap each window is predicted alone: it must equal the model's output on
        the tile `cloudkit tile` stores at the same place (same readers, Rust cut and
        reflectance conversion)."""
        from cloudkit.config import TileOptions
        from cloudkit.data.tiles import TileDataset
        from cloudkit.models.checkpoint import load_finetuned
        from cloudkit.tiler.writer import tile_paths

        store = tmp_path / "t29unu-128.zarr"
        options = TileOptions(resolution=60, bands=T29UNU_60M_BANDS, tile_size=WINDOW)
        tile_paths([L2A_T29UNU], store, options)
        tiles = TileDataset([store], min_valid=1e-9)
        import zarr

        group = zarr.open_group(str(store), mode="r")
        rows, cols = group["tile_row"][:], group["tile_col"][:]
        probability = _cloud_probability(runs["hard"])
        h, w = probability.shape
        _, model = load_finetuned(checkpoint)
        picked = np.linspace(0, len(tiles) - 1, 12).astype(int)  # edge and inner tiles
        with torch.inference_mode():
            for i in picked:
                item = tiles[int(i)]
                expected = torch.sigmoid(model(item["image"][None]))[0, 0].numpy()
                r, c = int(rows[i]), int(cols[i])
                got = probability[r : r + WINDOW, c : c + WINDOW]
                expected = expected[: h - r, : w - c]
                valid = item["valid"][0].numpy()[: h - r, : w - c]
                assert valid.any()
                np.testing.assert_allclose(got[valid], expected[valid], atol=1e-5)
                assert np.isnan(got[~valid]).all()


class TestSeams:
    @staticmethod
    def _edge_jump_ratio(p: np.ndarray, other: np.ndarray, window: int, overlap: int) -> float:
        """Mean |change| between neighbouring rows at the window edges of ``p``'s layout, over
        the same in ``other`` (a layout with its edges elsewhere). About 1 without seams."""
        stride = window - overlap
        edges = {e for k in range(0, p.shape[0], stride) for e in (k, k + window)}
        edges = sorted(e for e in edges if 0 < e < p.shape[0])
        at = np.array(edges) - 1  # diff index i is the change between rows i and i + 1

        def jumps(a):
            return np.nanmean(np.abs(np.diff(a, axis=0))[at])

        return jumps(p) / jumps(other)

    def test_blending_leaves_no_seam(self, runs):
        blended, shifted = _cloud_probability(runs["blended"]), _cloud_probability(runs["shifted"])
        hard = _cloud_probability(runs["hard"])
        ratio = self._edge_jump_ratio(blended, shifted, *LAYOUTS["blended"])
        hard_ratio = self._edge_jump_ratio(hard, shifted, *LAYOUTS["hard"])
        print(f"edge jump ratio: blended {ratio:.2f}, windows cut hard {hard_ratio:.2f}")
        assert ratio < 1.5
        assert hard_ratio > 3  # the measure does see seams where there are some
        # two layouts of blended windows give nearly the same mask
        valid = ~np.isnan(blended)
        assert ((blended[valid] > 0.5) == (shifted[valid] > 0.5)).mean() > 0.97


# ------------------------------------------------------------------------ other inputs


@pytest.mark.shared_data
def test_real_aws_tile_all_13_bands(tmp_path):
    ckpt = untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS)
    predictor = CheckpointPredictor(ckpt, device="cpu")
    summary = predict_paths([AWS_T19UDP], predictor, tmp_path / "out", PredictOptions())
    (result,) = summary.results
    assert result.status == "predicted", result.error
    with rasterio.open(AWS_T19UDP / "B02.jp2") as src, rasterio.open(result.outputs.mask) as ds:
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        mask = ds.read(1)
        nodata = src.read(1) == 0
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert not nodata.any() or (mask[nodata] == 255).all()
    assert result.summary["inference"]["window"] == 64  # the checkpoint's tile size


@pytest.mark.shared_data
def test_light_head_on_the_real_l2a(tmp_path):
    """The light head (`finetune --head light`) through the same path: grid, no-data, codes."""
    ckpt = untrained_checkpoint(tmp_path / "m.pt", head="light")
    predictor = CheckpointPredictor(ckpt, device="cpu", precision="bf16")
    options = PredictOptions(resolution=60, window=256)
    (result,) = predict_paths([L2A_T29UNU], predictor, tmp_path / "out", options).results
    assert result.status == "predicted", result.error
    assert result.summary["model"]["head"] == "light"
    grid, nodata = _source_60m()
    with rasterio.open(result.outputs.mask) as ds:
        assert (ds.crs, ds.transform, ds.shape) == (grid["crs"], grid["transform"], grid["shape"])
        mask = ds.read(1)
    np.testing.assert_array_equal(mask == 255, nodata)
    assert set(np.unique(mask)) <= {0, 1, 255}


# ------------------------------------------------------------------------ atomic outputs


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _StopAfter(Progress):
    """Progress that interrupts the run after ``rows`` tile rows (a Ctrl-C mid-scene)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def row_done(self, windows, megabytes):
        self.rows -= 1
        if self.rows == 0:
            raise KeyboardInterrupt


class TestAtomicOutputs:
    @pytest.fixture()
    def synthetic(self, tmp_path):
        """A small synthetic L1C product (stands for a real .SAFE)."""
        return write_l1c_safe(tmp_path / "in", size_10m=384, seed=3).path

    def test_interrupted_run_leaves_nothing_and_old_outputs_stay(self, synthetic, tmp_path):
        predictor = CheckpointPredictor(
            untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS), device="cpu"
        )
        out = tmp_path / "out"
        options = PredictOptions(resolution=20, window=64, overlap=16)
        with pytest.raises(KeyboardInterrupt):
            predict_paths([synthetic], predictor, out, options, _StopAfter(2))
        assert _files(out) == []
        (first,) = predict_paths([synthetic], predictor, out, options).results
        before = {name: (out / name).read_bytes() for name in _files(out)}
        assert len(before) == 2  # mask and summary
        with pytest.raises(KeyboardInterrupt):
            overwrite = PredictOptions(resolution=20, window=64, overlap=16, overwrite=True)
            predict_paths([synthetic], predictor, out, overwrite, _StopAfter(2))
        assert {name: (out / name).read_bytes() for name in _files(out)} == before

    def test_existing_outputs_are_skipped_unless_overwrite(self, synthetic, tmp_path):
        predictor = CheckpointPredictor(
            untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS), device="cpu"
        )
        out = tmp_path / "out"
        options = PredictOptions(resolution=60)
        assert predict_paths([synthetic], predictor, out, options).results[0].status == (
            "predicted"
        )
        assert predict_paths([synthetic], predictor, out, options).results[0].status == "skipped"
        again = PredictOptions(resolution=60, overwrite=True)
        assert predict_paths([synthetic], predictor, out, again).results[0].status == "predicted"

    def test_another_product_of_the_same_name_is_not_skipped(self, synthetic, tmp_path):
        """Two dates of a tile in folders of the same name (here: the same product name, the
        same grid, other pixels), predicted by two runs (one run refuses a name found twice):
        the second must not pass for done."""
        predictor = CheckpointPredictor(
            untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS), device="cpu"
        )
        other = write_l1c_safe(tmp_path / "elsewhere", size_10m=384, seed=4).path
        assert other.name == synthetic.name
        out = tmp_path / "out"
        options = PredictOptions(resolution=60)
        assert predict_paths([synthetic], predictor, out, options).results[0].status == (
            "predicted"
        )
        (result,) = predict_paths([other], predictor, out, options).results
        assert result.status == "failed"
        assert result.error == (
            f"{other}: {out} already holds the mask of {synthetic}, another product named "
            f"{synthetic.stem}; predict this one into another folder (or pass --overwrite to "
            "replace that mask)"
        )
        # the same product again is still done
        assert predict_paths([synthetic], predictor, out, options).results[0].status == "skipped"

    def test_a_scene_another_run_is_writing_is_left_to_it(self, synthetic, tmp_path):
        """Two runs into one folder: the second fails the scene in one line and touches
        neither the first one's temporaries nor its claim; once given up, it predicts."""
        from cloudkit.predict.output import claim_scene

        predictor = CheckpointPredictor(
            untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS), device="cpu"
        )
        out = tmp_path / "out"
        out.mkdir()
        scene_id = synthetic.name.removesuffix(".SAFE")
        other = claim_scene(out, scene_id)  # the other run, mid-scene
        partial = out / f".{scene_id}_mask.tif.partial"
        partial.write_bytes(b"the other run's rows")
        options = PredictOptions(resolution=60)
        (result,) = predict_paths([synthetic], predictor, out, options).results
        assert result.status == "failed"
        assert "another run is writing this scene's outputs" in str(result.error)
        assert partial.read_bytes() == b"the other run's rows"
        other.release()
        partial.unlink()
        (result,) = predict_paths([synthetic], predictor, out, options).results
        assert result.status == "predicted"
        assert len(_files(out)) == 2  # mask and summary: no lock file left behind

    def test_overwrite_leaves_no_output_of_the_earlier_run(self, synthetic, tmp_path):
        predictor = CheckpointPredictor(
            untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS), device="cpu"
        )
        out = tmp_path / "out"
        full = PredictOptions(resolution=60, probabilities=True, quicklook=True)
        (first,) = predict_paths([synthetic], predictor, out, full).results
        assert first.outputs.probabilities.is_file() and first.outputs.quicklook.is_file()
        plain = PredictOptions(resolution=60, overwrite=True)
        (second,) = predict_paths([synthetic], predictor, out, plain).results
        assert second.status == "predicted"
        assert not second.outputs.probabilities.exists() and not second.outputs.quicklook.exists()
        assert len(_files(out)) == 2  # mask and summary

    def test_sigterm_removes_everything_of_the_scene(self, checkpoint, tmp_path):
        """`kill` (SIGTERM) mid-scene is handled like Ctrl-C: the partial files go too."""
        out = tmp_path / "out"
        proc, log = self._start(checkpoint, out, tmp_path)
        try:
            self._wait_for_partial_files(proc, out, log)
        finally:
            proc.terminate()
            code = proc.wait(timeout=120)
        assert code == 130, log.read_text()
        assert "cloudkit: interrupted" in log.read_text()
        assert _files(out) == []

    @staticmethod
    def _start(checkpoint, out, tmp_path):
        args = [
            sys.executable, "-m", "cloudkit.cli", "predict", str(L2A_T29UNU), "--model",
            str(checkpoint), "-o", str(out), "--resolution", "60", "--window", "128",
            "--device", "cpu", "--probabilities",
        ]  # fmt: skip
        log = tmp_path / "stderr.txt"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        return proc, log

    @staticmethod
    def _wait_for_partial_files(proc, out, log):
        deadline = time.monotonic() + 120
        while not any(n.endswith(".partial") for n in _files(out)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the scene's rows

    def test_killed_process_leaves_no_complete_looking_file(self, checkpoint, tmp_path):
        """SIGKILL mid-scene: only hidden partial files remain; a re-run completes cleanly."""
        out = tmp_path / "out"
        proc, log = self._start(checkpoint, out, tmp_path)
        try:
            self._wait_for_partial_files(proc, out, log)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        left = _files(out)
        hidden = (".partial", ".lock")  # the killed run's claim died with it (flock)
        assert left and all(n.startswith(".") and n.endswith(hidden) for n in left), left
        assert not is_complete(out, T29UNU_ID)
        predictor = CheckpointPredictor(checkpoint, device="cpu")
        options = PredictOptions(resolution=60, window=128)
        (result,) = predict_paths([L2A_T29UNU], predictor, out, options).results
        assert result.status == "predicted"
        assert not [n for n in _files(out) if n.endswith(hidden)]


# ------------------------------------------------------------------------ errors


def _run(capsys, *args) -> tuple[int, str, str]:
    return run(capsys, "predict", *args)


def _failures(err: str) -> list[str]:
    """The per-scene failure lines and the closing one-line error."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("cloudkit: error: ") and "Traceback" not in err
    return [line for line in lines if line.strip().startswith("failed:")]


class TestErrors:
    @pytest.mark.shared_data
    def test_13_band_model_on_l2a_says_what_works(self, tmp_path, capsys):
        ckpt = untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS)
        code, _, err = _run(capsys, L2A_T29UNU, "-m", ckpt, "-o", tmp_path, "--resolution", 60)
        assert code == 1
        (line,) = _failures(err)
        assert "B10" in line and "L2A" in line and "L1C" in line and "--bands" in line

    @pytest.mark.shared_data
    def test_missing_band_file_is_named(self, tmp_path, capsys):
        """T29UNU lacks its R10m files: at 10 m the plan must name the absent file."""
        ckpt = untrained_checkpoint(tmp_path / "m.pt")
        code, _, err = _run(capsys, L2A_T29UNU, "-m", ckpt, "-o", tmp_path, "--resolution", 10)
        assert code == 1
        (line,) = _failures(err)
        assert "B02_10m.jp2" in line

    def test_bad_scenes_are_reported_and_the_rest_predicted(self, tmp_path, capsys):
        good = write_l1c_safe(tmp_path / "good", size_10m=192, seed=1, tile_id="T31TCJ").path
        bad = write_l1c_safe(tmp_path / "bad", size_10m=192, seed=2, tile_id="T31TDJ").path
        b04 = next(bad.glob("GRANULE/*/IMG_DATA/*_B04.jp2"))
        b04.write_bytes(b04.read_bytes()[:300])  # a truncated download
        ckpt = untrained_checkpoint(tmp_path / "m.pt", ALL_BANDS)
        out = tmp_path / "out"
        code, stdout, err = _run(capsys, bad, good, "-m", ckpt, "-o", out, "--resolution", 60)
        assert code == 1
        (failure,) = _failures(err)
        assert b04.name in failure
        good_id = good.name.removesuffix(".SAFE")
        assert is_complete(out, good_id) and good_id in stdout
        assert [n for n in _files(out) if "T31TDJ" in n] == []  # nothing of the bad scene

    def test_a_model_that_records_no_resolution_says_so_once_a_run(self, tmp_path, capsys):
        scenes = [
            write_l1c_safe(tmp_path / "in", size_10m=192, seed=k, tile_id=tile).path
            for k, tile in ((1, "T31TCJ"), (2, "T31TDJ"))
        ]
        old = untrained_checkpoint(tmp_path / "old.pt", ALL_BANDS)  # as fine-tuned before
        code, _, err = _run(capsys, *scenes, "-m", old, "-o", tmp_path / "a", "--resolution", 60)
        assert code == 0, err
        (line,) = [line for line in err.splitlines() if "records no resolution" in line]
        assert (
            line == f"warning: {unchecked_resolution(CheckpointPredictor(old, device='cpu').info)}"
        )
        assert line.startswith(f"warning: {old}: the model records no resolution, so no scene")
        # one that records the pixels it was trained on is checked against them
        made_for = {"made_for": 5.0}
        new = untrained_checkpoint(tmp_path / "new.pt", ALL_BANDS, extra=made_for)
        code, _, err = _run(capsys, *scenes, "-m", new, "-o", tmp_path / "b", "--resolution", 60)
        assert code == 0, err
        assert "records no resolution" not in err
        assert err.count("read at 60 m, more than 8x coarser than the 5 m pixels this model") == 2

    @pytest.mark.shared_data
    def test_cuda_without_a_gpu(self, tmp_path, capsys):
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        ckpt = untrained_checkpoint(tmp_path / "m.pt")
        code, _, err = _run(capsys, L2A_T29UNU, "-m", ckpt, "--device", "cuda")
        assert code == 1
        assert "no CUDA device" in one_line_error(err)

    @pytest.mark.shared_data
    def test_not_a_checkpoint(self, tmp_path, capsys):
        junk = tmp_path / "model.pt"
        junk.write_bytes(b"not a torch file")
        code, _, err = _run(capsys, L2A_T29UNU, "-m", junk)
        assert code == 1
        assert "model.pt" in one_line_error(err)

    @pytest.mark.shared_data
    def test_overlap_larger_than_half_the_window(self, tmp_path, capsys):
        ckpt = untrained_checkpoint(tmp_path / "m.pt")
        code, _, err = _run(
            capsys, L2A_T29UNU, "-m", ckpt, "--resolution", 60, "--window", 64, "--overlap", 40
        )
        assert code == 1
        assert "--overlap 40" in one_line_error(err)


# ------------------------------------------------------------------------ the predictor


@pytest.fixture(scope="module")
def windows(t29unu) -> tuple[np.ndarray, np.ndarray]:
    """Two 64 px windows of T29UNU's store values (the tile store's first tiles)."""
    from cloudkit.io.discover import discover_scenes
    from cloudkit.io.grid import plan_grid
    from cloudkit.io.scene_rows import SceneRows
    from cloudkit.io.store import dn_shift_for

    (scene,) = discover_scenes([t29unu])
    plan = plan_grid(scene, resolution=60, bands=T29UNU_60M_BANDS)
    shifts = list(dn_shift_for([scene.offset_of(b) for b in plan.bands]))
    with SceneRows(plan, workers=2) as rows:
        bands, _ = rows.read(0, 64)
    from cloudkit import _core

    images, valid, *_ = _core.cut_stripe(
        0, bands, list(plan.factors), plan.height, plan.width, 64, 0, shifts
    )
    return images[:2].copy(), valid[:2].copy()


class TestPredictor:
    def test_folded_batchnorm_changes_only_rounding(self, checkpoint, windows):
        from cloudkit.models.checkpoint import load_finetuned

        predictor = CheckpointPredictor(checkpoint, device="cpu")
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor._model.modules())
        _, model = load_finetuned(checkpoint)
        x = predictor.inputs(*windows, T29UNU_60M_BANDS)
        with torch.inference_mode():
            expected = torch.sigmoid(model(x)).numpy()
        np.testing.assert_allclose(predictor.probabilities(x), expected, atol=1e-5)

    def test_light_head_folds_too(self, windows, tmp_path):
        from cloudkit.models.checkpoint import load_finetuned

        ckpt = untrained_checkpoint(tmp_path / "m.pt", head="light")
        _, model = load_finetuned(ckpt)
        with torch.no_grad():  # move BN statistics off their init so folding matters
            model.train()(torch.rand(2, len(T29UNU_60M_BANDS), 64, 64))
        torch.save({**torch.load(ckpt, weights_only=True), "model": _state(model)}, ckpt)
        predictor = CheckpointPredictor(ckpt, device="cpu")
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor._model.modules())
        x = predictor.inputs(*windows, T29UNU_60M_BANDS)
        with torch.inference_mode():
            expected = torch.sigmoid(model.eval()(x)).numpy()
        np.testing.assert_allclose(predictor.probabilities(x), expected, atol=1e-5)

    def test_bf16_on_the_cpu_stays_close_to_fp32(self, checkpoint, windows):
        fp32 = CheckpointPredictor(checkpoint, device="cpu")
        bf16 = CheckpointPredictor(checkpoint, device="cpu", precision="bf16")
        assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
        a = fp32.probabilities(fp32.inputs(*windows, T29UNU_60M_BANDS))
        b = bf16.probabilities(bf16.inputs(*windows, T29UNU_60M_BANDS))
        assert b.dtype == np.float32
        assert np.abs(a - b).max() < 0.05
        assert ((a > 0.5) == (b > 0.5)).mean() > 0.99

    def test_value_constants_come_from_the_checkpoint(self, checkpoint, tmp_path_factory):
        import zarr

        from tests.helpers.finetune_stores import real_store_64

        recorded = torch.load(checkpoint, weights_only=False)["normalisation"]
        assert recorded["scale"] and recorded["offset"]
        store_attrs = zarr.open_group(str(real_store_64(tmp_path_factory)), mode="r").attrs
        assert CheckpointPredictor(checkpoint, device="cpu").values == ValueScale.of(store_attrs)

    def test_checkpoint_without_constants_gets_the_stores(self, tmp_path):
        ckpt = untrained_checkpoint(tmp_path / "m.pt")  # normalisation holds only the kind
        bands = len(T29UNU_60M_BANDS)
        assert CheckpointPredictor(ckpt, device="cpu").values == ValueScale.of_store_convention(
            bands
        )

    def test_constants_unlike_the_stores_are_refused(self, tmp_path):
        from cloudkit.errors import CheckpointError

        other = ValueScale((1e-3,) * len(T29UNU_60M_BANDS), (0.0,) * len(T29UNU_60M_BANDS))
        ckpt = untrained_checkpoint(tmp_path / "m.pt", extra={"normalisation": other.record()})
        with pytest.raises(CheckpointError, match="scale"):
            CheckpointPredictor(ckpt, device="cpu")

    def test_unknown_normalisation_is_refused(self, tmp_path):
        from cloudkit.errors import CheckpointError

        ckpt = untrained_checkpoint(tmp_path / "m.pt", extra={"normalisation": {"kind": "zscore"}})
        with pytest.raises(CheckpointError, match="zscore"):
            CheckpointPredictor(ckpt, device="cpu")


def _state(model) -> dict:
    from cloudkit.models.segmentation import segmenter_state

    return segmenter_state(model, task="cloud")
