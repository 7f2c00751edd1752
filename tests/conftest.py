"""Shared fixtures: paths to the real Sentinel-2 samples, tiny generated datasets, and torch
on one thread.

The real samples live outside the repository in ``../shared/data`` (relative to the project
root; ``tests/helpers/shared_data.py`` says where) and are referenced in place, never copied;
tests that need them are skipped, with the reason, when they are absent. CloudSEN12, WHUS2-CD+
and SEN12MS are not available here: the ``*_root`` fixtures write a few dozen seeded pixels per
file under the real names, CRS and transforms, standing in for each dataset's layout.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.helpers import shared_data as samples

UTM_CRS = "EPSG:32629"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Torch computes on one intra-op thread in every test (a module that wants more sets it in
    a fixture of its own): the tensors of the tests are tiny, and on a busy shared machine
    OpenMP's spinning threads make a 2-thread step many times slower than a 1-thread one."""
    if importlib.util.find_spec("torch") is None:  # the tests that need torch import it
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared_data``: the test reads the real samples, skip it without them."""
    if item.get_closest_marker("shared_data") is not None:
        samples.require()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return samples.require()


def _sample(path: Path) -> Callable[[], Path]:
    """A session fixture giving the path of one real sample (skipped without the samples)."""

    @pytest.fixture(scope="session")
    def fixture() -> Path:
        samples.require()
        return path

    return fixture


t29unu = _sample(samples.L2A_T29UNU)
t07hfe = _sample(samples.L2A_T07HFE)
t01lac = _sample(samples.L1C_T01LAC)
t46rer = _sample(samples.L1C_T46RER)
aws_tile = _sample(samples.AWS_T19UDP)
cogs_l2a = _sample(samples.COGS_L2A)
stack_13band = _sample(samples.STACK_13BAND)


MakeRaster = Callable[..., Path]


def write_raster(
    path: Path,
    *,
    count: int = 1,
    size: int = 8,
    res: float = 10.0,
    origin: tuple[float, float] = (600000.0, 5000040.0),
    crs: str | None = UTM_CRS,
    dtype: str = "uint16",
    values: np.ndarray | None = None,
    descriptions: tuple[str, ...] | None = None,
    seed: int = 0,
) -> Path:
    """Write a small seeded GeoTIFF; ``values`` (2-D) fills every band when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if values is None:
        data = rng.integers(1, 5000, size=(count, size, size)).astype(dtype)
    else:
        data = np.broadcast_to(values, (count, *values.shape)).astype(dtype)
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": dtype,
        "transform": Affine(res, 0.0, origin[0], 0.0, -res, origin[1]),
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(index, text)
    return path


@pytest.fixture
def make_raster() -> MakeRaster:
    """Factory fixture: ``make_raster(path, count=13, size=8, res=10, ...)``."""
    return write_raster


@pytest.fixture
def cloudsen12_root(tmp_path: Path) -> Path:
    """Stands for the CloudSEN12 layout: metadata CSV, ROI/<roi_id>/<s2_id_gee>/S2L1C.tif
    (13 bands, 10 m) and labels/manual_hq.tif or manual_sc.tif. One listed sample is absent
    (a partial download) and must be skipped."""
    root = tmp_path / "cloudsen12"
    rows = [
        ("ROI_0001", "20190212T142031_20190212T143214_T19FDF", 0, "high"),
        ("ROI_0002", "20200405T101021_20200405T101643_T32TQM", 1, "scribble"),
        ("ROI_0003", "20181109T034001_20181109T034005_T47QQV", 2, "nolabel"),
        ("ROI_0004", "20170725T154911_20170725T155423_T17SNB", 0, "high"),  # not downloaded
    ]
    root.mkdir()
    with (root / "cloudsen12_metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["roi_id", "s2_id_gee", "test", "label_type", "cloud_coverage"])
        for roi, s2_id, test, label_type in rows:
            writer.writerow([roi, s2_id, test, label_type, "thin"])
    labels = np.arange(16 * 16).reshape(16, 16) % 4  # classes 0..3
    for seed, (roi, s2_id, _, label_type) in enumerate(rows[:3]):
        sample = root / "ROI" / roi / s2_id
        write_raster(sample / "S2L1C.tif", count=13, size=16, seed=seed)
        if label_type == "high":
            write_raster(sample / "labels" / "manual_hq.tif", size=16, dtype="uint8", values=labels)
        if label_type == "scribble":
            scribbles = labels.copy()
            scribbles[::2] = 99  # unlabelled pixels of a scribble annotation
            write_raster(
                sample / "labels" / "manual_sc.tif", size=16, dtype="uint8", values=scribbles
            )
    return root


@pytest.fixture
def whus2_root(tmp_path: Path) -> Path:
    """Stands for the WHUS2-CD+ layout: {train,test}/{10m,20m,60m,labels}/<id>.tif, with the
    10m file holding B02 B03 B04 B08, 20m B05 B06 B07 B8A B11 B12, 60m B01 B09 B10, and masks
    <id>_Mask.tif (255 cloud, 128 clear, 0 no data) on the 10 m grid."""
    root = tmp_path / "whus2"
    mask = np.array([0, 128, 255], dtype=np.uint8)[np.arange(24 * 24).reshape(24, 24) % 3]
    for seed, (split, scene) in enumerate(
        [("train", "S2A_T49RGP_20190511"), ("test", "S2B_T50SMH_20190804")]
    ):
        folder = root / split
        write_raster(folder / "10m" / f"{scene}.tif", count=4, size=24, res=10, seed=seed)
        write_raster(folder / "20m" / f"{scene}.tif", count=6, size=12, res=20, seed=seed)
        write_raster(folder / "60m" / f"{scene}.tif", count=3, size=4, res=60, seed=seed)
        write_raster(folder / "labels" / f"{scene}_Mask.tif", size=24, dtype="uint8", values=mask)
    return root


@pytest.fixture
def sen12ms_root(tmp_path: Path) -> Path:
    """Stands for the SEN12MS layout: <season>/s2_<scene>/ROIs<n>_<season>_s2_<scene>_p<k>.tif
    (13 bands), beside the Sentinel-1 and land-cover patches that must be ignored."""
    root = tmp_path / "sen12ms"
    for scene, patch in [(1, 30), (1, 31), (7, 2)]:
        folder = root / "ROIs1158_spring" / f"s2_{scene}"
        write_raster(folder / f"ROIs1158_spring_s2_{scene}_p{patch}.tif", count=13, seed=patch)
    write_raster(root / "ROIs1158_spring" / "s1_1" / "ROIs1158_spring_s1_1_p30.tif", count=2)
    write_raster(root / "ROIs1158_spring" / "lc_1" / "ROIs1158_spring_lc_1_p30.tif", count=4)
    return root
