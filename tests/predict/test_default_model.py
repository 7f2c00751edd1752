"""`cloudkit predict SCENE` with no --model: the model that ships inside cloudkit, on every
product layout the readers accept, and one line where a product's bands are too few.

The weights are the real shipped file (checked by SHA-256 on load); the products are the real
samples of ../shared/data where there is one of the layout (skipped without them) and the
synthetic L1C that ships with cloudkit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudkit.bands import BANDS
from cloudkit.models import zoo as model_zoo
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.shared_data import (
    AWS_T19UDP,
    COGS_L2A,
    L2A_T07HFE,
    L2A_T29UNU,
    STACK_13BAND,
)

CODES = {0, 1, 2, 3, 255}  # clear, thick cloud, thin cloud, cloud shadow, no data
ALL_BANDS = tuple(b.name for b in BANDS)


def _predicted(capsys, tmp_path: Path, *args) -> tuple[np.ndarray, dict]:
    """Run `cloudkit predict ARGS -o tmp_path` (no --model): the mask's classes and summary."""
    code, out, err = run(capsys, "predict", *args, "-o", tmp_path)
    assert code == 0, err
    (mask,) = tmp_path.glob("*_mask.tif")
    with rasterio.open(mask) as src:
        classes = src.read(1)
        assert src.crs is not None and src.transform.a > 0
    (summary,) = tmp_path.glob("*.json")
    return classes, json.loads(summary.read_text())


def _subset_geotiff(path: Path, bands: tuple[str, ...]) -> Path:
    """The real 13-band T19UDP preview with only ``bands``, named in the band descriptions."""
    with rasterio.open(STACK_13BAND) as src:
        names = src.descriptions
        profile = src.profile | {"count": len(bands)}
        data = src.read([names.index(b) + 1 for b in bands])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, band in enumerate(bands, start=1):
            dst.set_band_description(i, band)
    return path


def test_the_default_is_the_first_shipped_model():
    default = model_zoo.shipped_model(model_zoo.DEFAULT)
    assert default is model_zoo.SHIPPED[0]
    assert model_zoo.verified_weights(default).stat().st_size < 50e6  # the wheel stays small


def test_the_shipped_sample_l1c(tmp_path, capsys):
    classes, summary = _predicted(capsys, tmp_path, "--sample")
    assert set(np.unique(classes)) <= CODES
    # the synthetic sample holds cumulus and cirrus over land: some cloud, not all
    assert 1.0 < summary["cloud_percent"] < 95.0


@pytest.mark.shared_data
def test_real_l2a_safe_with_60m_bands_only(tmp_path, capsys):
    classes, summary = _predicted(capsys, tmp_path, L2A_T29UNU)
    assert classes.shape == (1830, 1830)
    assert set(np.unique(classes)) <= CODES
    assert summary["valid_percent"] > 50 and summary["warnings"] == []


@pytest.mark.shared_data
def test_real_l2a_safe_of_twelve_bands(tmp_path, capsys):
    classes, _ = _predicted(capsys, tmp_path, L2A_T07HFE)
    assert set(np.unique(classes)) <= CODES


@pytest.mark.shared_data
def test_real_l1c_band_folder(tmp_path, capsys):
    classes, summary = _predicted(capsys, tmp_path, AWS_T19UDP)
    assert classes.shape == (122, 122)
    assert summary["cloud_percent"] is not None
    # 900 m is far outside what the model learnt (crops seen at 10 to 60 m): the mask comes
    # with a warning
    (warning,) = summary["warnings"]
    assert "read at 900 m, more than 8x coarser than the 60 m pixels this model was trained on" in (
        warning
    )


@pytest.mark.shared_data
def test_real_l2a_cog_folder(tmp_path, capsys):
    classes, _ = _predicted(capsys, tmp_path, COGS_L2A)
    assert set(np.unique(classes)) <= CODES


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "bands", [("B02", "B03", "B04"), ("B02", "B03", "B04", "B08", "B11", "B12"), ALL_BANDS]
)
def test_geotiff_of_some_bands(tmp_path, capsys, bands):
    scene = _subset_geotiff(tmp_path / "S2A_MSIL1C_20170729_T19UDP_subset.tif", bands)
    out = tmp_path / "masks"
    classes, _ = _predicted(capsys, out, scene)
    assert classes.shape == (687, 687)
    assert set(np.unique(classes)) <= CODES


def _failure(capsys, scene: Path, out: Path) -> str:
    """The one `failed:` line predict reports for a bad scene (exit code 1, no mask)."""
    code, _, err = run(capsys, "predict", scene, "-o", out)
    assert code == 1 and "Traceback" not in err
    (failure,) = [line for line in err.splitlines() if line.strip().startswith("failed:")]
    assert not list(out.glob("*_mask.tif"))
    return failure


@pytest.mark.shared_data
def test_too_few_bands_is_one_line_naming_them(tmp_path, capsys):
    scene = _subset_geotiff(tmp_path / "S2A_MSIL1C_20170729_T19UDP_nir.tif", ("B08", "B11"))
    failure = _failure(capsys, scene, tmp_path / "masks")
    assert scene.stem in failure
    assert all(band in failure for band in ("B02", "B03", "B04"))


def test_unnamed_bands_stop_in_one_line(tmp_path, capsys, make_raster):
    scene = make_raster(tmp_path / "S2A_MSIL1C_20230615_unnamed.tif", count=3, size=64)
    line = fails_with_one_line(capsys, "predict", scene, "-o", tmp_path / "masks")
    assert str(scene) in line and "no band descriptions" in line
    assert not (tmp_path / "masks").exists() or not list((tmp_path / "masks").iterdir())
