"""MaskWriter: streamed strips become a mask COG, probability COG, quicklook and JSON summary.

The rasters are generated: a 700 x 900 "scene" at 10 m in UTM 29N (EPSG:32629) stands in for a
Sentinel-2 tile, small enough to write in milliseconds yet wider than one 512-px COG block, so
GDAL builds an overview level. Its classes are drawn per 2 x 2 block: three pixels share the
block's class and one differs, so the mode of every block (the first overview's pixel) is known
exactly and differs from what nearest resampling would give.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from cloudkit.errors import OutputError
from cloudkit.plots import QUICKLOOK_GAP_PX, QUICKLOOK_HEADER_PX
from cloudkit.predict.output import MaskWriter, OutputPaths, is_complete, output_paths

SCENE = "S2B_MSIL1C_20230615T104031_N0400_R008_T29UNU_20230615T131517"
CRS_UTM = CRS.from_epsg(32629)
TRANSFORM = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 5900040.0)
CLASSES = ("clear", "thick cloud", "thin cloud", "cloud shadow")
H, W = 700, 900
STRIPS = (1, 300, 399)  # uneven on purpose: strips need not align with blocks
NODATA_ROWS = 50  # rows 0..49 have no data (even, so whole 2 x 2 blocks are no-data)


def _scene_classes(height: int = H, width: int = W, seed: int = 0):
    """(classes, block_mode): per 2 x 2 block three pixels of one class, one of another."""
    rng = np.random.default_rng(seed)
    bh, bw = height // 2, width // 2
    mode = rng.integers(0, len(CLASSES), (bh, bw)).astype(np.uint8)
    other = (mode + rng.integers(1, len(CLASSES), (bh, bw))) % len(CLASSES)
    classes = np.repeat(np.repeat(mode, 2, axis=0), 2, axis=1)
    odd = rng.integers(0, 4, (bh, bw))  # which pixel of the block differs
    rows, cols = np.indices((bh, bw))
    classes[2 * rows + odd // 2, 2 * cols + odd % 2] = other
    classes[:NODATA_ROWS] = 255
    mode[: NODATA_ROWS // 2] = 255
    return classes, mode


def _probabilities(classes: np.ndarray, seed: int = 1) -> np.ndarray:
    """(K, H, W) float32 that sum to one, NaN where the class is no-data."""
    rng = np.random.default_rng(seed)
    p = rng.random((len(CLASSES), *classes.shape), dtype=np.float32)
    p /= p.sum(axis=0, keepdims=True)
    p[:, classes == 255] = np.nan
    return p


def _writer(out: Path, scene: str = SCENE, height: int = H, width: int = W, **kw) -> MaskWriter:
    kw.setdefault("threads", 1)
    return MaskWriter(
        out,
        scene,
        crs=CRS_UTM,
        transform=TRANSFORM,
        height=height,
        width=width,
        classes=CLASSES,
        **kw,
    )


def _write_scene(
    out: Path, classes, probs=None, rgb=None, strips=STRIPS, summary=None, **kw
) -> OutputPaths:
    """Write ``classes`` (and ``probs``, ``rgb``) strip by strip; ``kw`` go to MaskWriter."""
    with _writer(out, height=classes.shape[0], width=classes.shape[1], **kw) as writer:
        row0 = 0
        for rows in strips:
            part = slice(row0, row0 + rows)
            writer.write_rows(
                row0,
                classes[part],
                None if probs is None else probs[:, part],
                None if rgb is None else rgb[:, part],
            )
            row0 += rows
        return writer.finish(summary or {"scene": SCENE})


def _read_png(path: Path) -> np.ndarray:
    # PNG carries no georeferencing, which rasterio reports as a warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            assert ds.driver == "PNG"
            return ds.read()


def _panels(path: Path, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(true colour, classes over it) of a quicklook, each (3, h, w), where the layout puts
    them: below the header, side by side."""
    image = _read_png(path)[:3]
    rows = slice(QUICKLOOK_HEADER_PX, QUICKLOOK_HEADER_PX + h)
    assert image.shape[1] == QUICKLOOK_HEADER_PX + h
    return image[:, rows, :w], image[:, rows, w + QUICKLOOK_GAP_PX : 2 * w + QUICKLOOK_GAP_PX]


def _blend(background, colour) -> np.ndarray:
    return np.rint(0.5 * np.asarray(background, float) + 0.5 * np.asarray(colour, float))


@pytest.fixture(scope="module")
def scene():
    classes, mode = _scene_classes()
    return classes, mode, _probabilities(classes)


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    """One full scene with every output, written once for the read-only checks."""
    classes, _, probabilities = scene
    out = tmp_path_factory.mktemp("predictions")
    summary = {"scene": SCENE, "cloud_fraction": np.float32(0.25), "pixels": np.int64(H * W)}
    paths = _write_scene(
        out, classes, probabilities, probabilities=True, quicklook=True, summary=summary
    )
    return out, paths


class TestMask:
    def test_round_trips_values_and_georeferencing(self, scene, written):
        classes, _, _ = scene
        _, paths = written
        with rasterio.open(paths.mask) as ds:
            assert (ds.count, ds.height, ds.width) == (1, H, W)
            assert ds.dtypes == ("uint8",)
            assert ds.nodata == 255
            assert ds.crs.to_epsg() == 32629
            assert ds.transform == TRANSFORM
            assert np.array_equal(ds.read(1), classes)

    def test_describes_its_classes(self, written):
        _, paths = written
        with rasterio.open(paths.mask) as ds:
            assert ds.descriptions == ("classes",)
            tags = ds.tags()
            assert json.loads(tags["CLOUDKIT_CLASSES"]) == {
                "0": "clear",
                "1": "thick cloud",
                "2": "thin cloud",
                "3": "cloud shadow",
            }
            assert tags["CLOUDKIT_NODATA"] == "255"
            palette = ds.colormap(1)
        assert palette[0] == (40, 160, 40, 255)
        assert palette[1] == (255, 0, 255, 255)
        assert palette[2] == (0, 255, 255, 255)
        assert palette[3] == (255, 200, 0, 255)
        assert palette[255] == (0, 0, 0, 0)

    def test_is_a_cloud_optimised_geotiff(self, written):
        _, paths = written
        with rasterio.open(paths.mask) as ds:
            # GDAL 3.10 reports LAYOUT=COG for files with the COG driver's ghost header
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.overviews(1) == [2]
            assert ds.block_shapes == [(512, 512)]
            assert ds.compression.name == "deflate"
        head = paths.mask.read_bytes()[:1024]
        assert b"GDAL_STRUCTURAL_METADATA_SIZE" in head
        assert b"LAYOUT=IFDS_BEFORE_DATA" in head

    def test_overviews_take_the_mode_of_class_codes(self, scene, written):
        _, mode, _ = scene
        _, paths = written
        with rasterio.open(paths.mask, overview_level=0) as ds:
            overview = ds.read(1)
        assert set(np.unique(overview)) <= {0, 1, 2, 3, 255}
        # nearest, the COG driver's default for a paletted band, differs in a quarter of blocks
        assert np.array_equal(overview, mode)


class TestProbabilities:
    def test_one_float_band_per_class_with_nan_nodata(self, scene, written):
        classes, _, probabilities = scene
        _, paths = written
        with rasterio.open(paths.probabilities) as ds:
            assert ds.count == len(CLASSES)
            assert set(ds.dtypes) == {"float32"}
            assert math.isnan(ds.nodata)
            assert ds.descriptions == CLASSES
            assert ds.crs.to_epsg() == 32629
            assert ds.transform == TRANSFORM
            values = ds.read()
        assert np.array_equal(values, probabilities, equal_nan=True)
        assert np.isnan(values[:, classes == 255]).all()
        assert not np.isnan(values[:, classes != 255]).any()

    def test_is_a_compressed_cog_with_averaged_overviews(self, written):
        _, paths = written
        with rasterio.open(paths.probabilities) as ds:
            structure = ds.tags(ns="IMAGE_STRUCTURE")
            assert structure["LAYOUT"] == "COG"
            assert structure["COMPRESSION"] == "DEFLATE"
            assert structure["PREDICTOR"] == "3"
            assert ds.overviews(1) == [2]
        with rasterio.open(paths.probabilities, overview_level=0) as ds:
            overview = ds.read()
        assert np.isnan(overview[:, : NODATA_ROWS // 2]).all()
        # averages of probabilities that sum to one still sum to one
        assert np.allclose(overview[:, NODATA_ROWS // 2 :].sum(axis=0), 1, atol=1e-5)


class TestQuicklook:
    def test_grey_background_with_class_colours_and_black_nodata(self, scene, written):
        classes, _, _ = scene
        _, paths = written
        true_colour, image = _panels(paths.quicklook, H, W)  # long side 900: not decimated
        grey = (128, 128, 128)
        y, x = np.argwhere(classes == 1)[0]  # thick cloud: magenta
        assert tuple(image[:, y, x]) == tuple(_blend(grey, (255, 0, 255)))
        y, x = np.argwhere(classes == 3)[0]  # cloud shadow: orange
        assert tuple(image[:, y, x]) == tuple(_blend(grey, (255, 200, 0)))
        y, x = np.argwhere(classes == 0)[0]  # clear: not overlaid
        assert tuple(image[:, y, x]) == grey
        assert (image[:, classes == 255] == 0).all()
        assert (true_colour[:, classes == 255] == 0).all()
        assert (true_colour[:, classes != 255] == 128).all()

    def test_legend_gives_each_class_share_of_the_whole_mask(self, scene, tmp_path):
        classes, _, _ = scene
        writer = _writer(tmp_path, quicklook=True)
        for row0 in range(0, H, 100):
            writer.write_rows(row0, classes[row0 : row0 + 100])
        valid = classes[classes != 255]
        expected = [
            f"{name} {100 * np.mean(valid == code):.1f} %" for code, name in enumerate(CLASSES)
        ]
        expected.append(f"no data {100 * np.mean(classes == 255):.1f} % of the image")
        assert [label for label, _ in writer._legend()] == expected
        writer.abort()

    def test_decimated_true_colour_of_a_wide_scene(self, tmp_path):
        # 150 x 2100: q = ceil(2100 / 1024) = 3, so every third row and column is kept
        height, width = 150, 2100
        classes, _ = _scene_classes(height, width, seed=2)
        classes[:, :30] = 255  # no data on the left edge too
        rng = np.random.default_rng(3)
        rgb = rng.uniform(0, 0.4, (3, height, width)).astype(np.float32)
        paths = _write_scene(tmp_path, classes, rgb=rgb, strips=(1, 70, 79), quicklook=True)
        true_colour, image = _panels(paths.quicklook, 50, 700)

        small, refl = classes[::3, ::3], rgb[:, ::3, ::3].astype(np.float64)
        expected = np.rint(255 * np.clip(refl / 0.3, 0, 1) ** (1 / 1.6))
        plain = expected.copy()
        plain[:, small == 255] = 0
        assert np.abs(true_colour.astype(int) - plain).max() <= 1
        for code, colour in ((1, (255, 0, 255)), (2, (0, 255, 255)), (3, (255, 200, 0))):
            hit = small == code
            expected[:, hit] = _blend(expected[:, hit], np.array(colour)[:, None])
        expected[:, small == 255] = 0
        assert np.abs(image.astype(int) - expected).max() <= 1
        assert (image[:, :, :10] == 0).all()  # columns 0..29 had no data

    def test_no_quicklook_or_probabilities_unless_asked(self, scene, tmp_path):
        classes, _, _ = scene
        paths = _write_scene(tmp_path, classes)
        assert sorted(os.listdir(tmp_path)) == [f"{SCENE}.json", f"{SCENE}_mask.tif"]
        outputs = json.loads(paths.summary.read_text())["outputs"]
        assert outputs == {"mask": f"{SCENE}_mask.tif", "probabilities": None, "quicklook": None}


class TestSummary:
    def test_paths_follow_the_scene_id(self, tmp_path):
        paths = output_paths(tmp_path, SCENE)
        assert paths.mask == tmp_path / f"{SCENE}_mask.tif"
        assert paths.probabilities == tmp_path / f"{SCENE}_probabilities.tif"
        assert paths.quicklook == tmp_path / f"{SCENE}_quicklook.png"
        assert paths.summary == tmp_path / f"{SCENE}.json"

    def test_json_holds_the_summary_and_the_outputs(self, written):
        out, paths = written
        assert paths == output_paths(out, SCENE)
        summary = json.loads(paths.summary.read_text())
        assert summary["scene"] == SCENE
        assert summary["cloud_fraction"] == 0.25  # numpy scalars became plain numbers
        assert summary["pixels"] == H * W
        assert summary["outputs"] == {
            "mask": f"{SCENE}_mask.tif",
            "probabilities": f"{SCENE}_probabilities.tif",
            "quicklook": f"{SCENE}_quicklook.png",
        }
        assert sorted(os.listdir(out)) == sorted(
            p.name for p in (paths.mask, paths.probabilities, paths.quicklook, paths.summary)
        )

    def test_complete_only_after_finish(self, scene, tmp_path):
        classes, _, _ = scene
        assert not is_complete(tmp_path, SCENE)
        with _writer(tmp_path) as writer:
            writer.write_rows(0, classes)
            assert not is_complete(tmp_path, SCENE)
            # until finish, only hidden partial files (and the run's claim on the scene)
            # exist: a kill leaves no final name
            hidden = [n for n in os.listdir(tmp_path) if n.startswith(".")]
            assert hidden == os.listdir(tmp_path)
            assert all(n.endswith((".partial", ".lock")) for n in hidden)
            writer.finish({})
        assert is_complete(tmp_path, SCENE)
        output_paths(tmp_path, SCENE).summary.unlink()
        assert not is_complete(tmp_path, SCENE)

    def test_finish_replaces_older_outputs(self, scene, tmp_path):
        classes, _, _ = scene
        paths = output_paths(tmp_path, SCENE)
        paths.mask.write_bytes(b"old mask")
        paths.summary.write_text('{"old": true}')
        with _writer(tmp_path) as writer:
            writer.write_rows(0, classes)
            assert paths.mask.read_bytes() == b"old mask"  # untouched until finish
            writer.finish({"new": True})
        with rasterio.open(paths.mask) as ds:
            assert np.array_equal(ds.read(1), classes)
        assert json.loads(paths.summary.read_text())["new"] is True


class TestErrors:
    def test_rows_out_of_order(self, scene, tmp_path):
        classes, _, _ = scene
        with _writer(tmp_path) as writer:
            with pytest.raises(ValueError, match="starting at row 0, got row 1"):
                writer.write_rows(1, classes[1:10])
            writer.write_rows(0, classes[:10])
            with pytest.raises(ValueError, match="starting at row 10, got row 5"):
                writer.write_rows(5, classes[5:20])  # overlap
            with pytest.raises(ValueError, match="starting at row 10, got row 11"):
                writer.write_rows(11, classes[11:20])  # gap
            with pytest.raises(ValueError, match="past the scene height"):
                writer.write_rows(10, np.zeros((H, W), np.uint8))
        assert os.listdir(tmp_path) == []

    def test_bad_strips(self, scene, tmp_path):
        classes, _, probabilities = scene
        with _writer(tmp_path, probabilities=True) as writer:
            with pytest.raises(ValueError, match="classes must be"):
                writer.write_rows(0, classes[:10, :-1], probabilities[:, :10, :-1])
            with pytest.raises(ValueError, match="class codes must be 0..3 or 255"):
                writer.write_rows(0, np.full((10, W), 7, np.uint8), probabilities[:, :10])
            with pytest.raises(ValueError, match="pass them with every strip"):
                writer.write_rows(0, classes[:10])
            with pytest.raises(ValueError, match="probabilities must be"):
                writer.write_rows(0, classes[:10], probabilities[:2, :10])
            with pytest.raises(ValueError, match="rgb must be"):
                writer.write_rows(0, classes[:10], probabilities[:, :10], np.zeros((3, 9, W)))
        assert os.listdir(tmp_path) == []

    def test_missing_rows_at_finish_then_abort_leaves_nothing(self, scene, tmp_path):
        classes, _, probabilities = scene
        writer = _writer(tmp_path, probabilities=True, quicklook=True)
        writer.write_rows(0, classes[:300], probabilities[:, :300])
        with pytest.raises(ValueError, match="rows 300..700 .* never written"):
            writer.finish({})
        assert os.listdir(tmp_path)  # the partial files are still there to finish
        writer.abort()
        writer.abort()  # idempotent
        assert os.listdir(tmp_path) == []
        with pytest.raises(RuntimeError, match="finished or aborted"):
            writer.write_rows(300, classes[300:], probabilities[:, 300:])

    def test_exception_in_the_block_leaves_no_files(self, scene, tmp_path):
        classes, _, probabilities = scene
        with pytest.raises(KeyError), _writer(tmp_path, probabilities=True) as writer:
            writer.write_rows(0, classes, probabilities)
            raise KeyError("model crashed")
        assert os.listdir(tmp_path) == []

    def test_abort_keeps_the_outputs_of_an_earlier_run(self, scene, tmp_path):
        classes, _, _ = scene
        paths = output_paths(tmp_path, SCENE)
        paths.mask.write_bytes(b"earlier mask")
        paths.summary.write_text("{}")
        with _writer(tmp_path) as writer:
            writer.write_rows(0, classes[:100])
        assert sorted(os.listdir(tmp_path)) == sorted([paths.mask.name, paths.summary.name])
        assert paths.mask.read_bytes() == b"earlier mask"

    def test_stale_partial_files_of_a_killed_run_are_removed(self, tmp_path):
        stale = [
            f".{SCENE}_mask.tif.partial",
            f".{SCENE}_mask.cog.partial",
            f".{SCENE}_mask.cog.partial.ovr.tmp",  # GDAL's overview scratch file
            f".{SCENE}_probabilities.tif.partial",
            f".{SCENE}_quicklook.png.partial",
            f".{SCENE}.json.partial",
        ]
        others = ["other_scene_mask.tif", ".other_scene_mask.tif.partial", "other_scene.json"]
        for name in stale + others:
            (tmp_path / name).write_bytes(b"left by a killed run")
        writer = _writer(tmp_path)
        # only the new writer's own temporary and claim remain, created afresh
        ours = [f".{SCENE}_mask.tif.partial", f".{SCENE}.lock"]
        assert sorted(os.listdir(tmp_path)) == sorted([*others, *ours])
        assert (tmp_path / f".{SCENE}_mask.tif.partial").read_bytes() != b"left by a killed run"
        writer.abort()
        assert sorted(os.listdir(tmp_path)) == sorted(others)
        for name in others:
            assert (tmp_path / name).read_bytes() == b"left by a killed run"

    @pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
    def test_unwritable_directory(self, tmp_path):
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(OutputError, match=r"cannot write predictions of \S+ here"):
                _writer(locked)
        finally:
            locked.chmod(0o700)

    def test_output_folder_below_a_file(self, tmp_path):
        blocker = tmp_path / "not_a_folder"
        blocker.write_text("")
        with pytest.raises(OutputError, match=r"cannot write predictions of \S+ here \(.+\)"):
            _writer(blocker / "predictions")
