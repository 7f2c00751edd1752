"""`cloudkit predict`'s geometric shadow check end to end: sun angles read, given, computed or
estimated, what the check removed in the summary, and the mask it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cloudkit.cli import app
from cloudkit.io.datasets import read_band_folder, read_geotiff
from cloudkit.io.safe import read_safe
from cloudkit.io.sun_metadata import stac_angles, tag_angles
from cloudkit.sample.product import sample_product
from tests.helpers.cli import fails_with_one_line

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _predict(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "masks"
    result = runner.invoke(app, ["predict", "--sample", "-o", str(out), "--workers", "1", *args])
    assert result.exit_code == 0, result.output
    (summary,) = out.glob("*.json")
    return json.loads(summary.read_text())


class TestPredict:
    def test_summary_shows_the_angles_and_what_was_removed(self, tmp_path):
        summary = _predict(tmp_path)
        check = summary["shadow_check"]
        assert check["method"] == "geometric"
        assert check["sun"]["source"] == "MTD_TL.xml"  # the sample keeps the sun it cast with
        assert check["shadow_pixels"] >= check["removed_pixels"] >= 0
        assert set(check["removed_to"]) <= {"clear", "thick cloud", "thin cloud"}
        assert "shadows_s" in summary["timings"]

    def test_mask_and_percentages_agree_after_the_check(self, tmp_path):
        summary = _predict(tmp_path, "--shadows", "geometric")
        (mask,) = (tmp_path / "masks").glob("*_mask.tif")
        with rasterio.open(mask) as src:
            codes = src.read(1)
        valid = codes != 255
        shadow = 100 * float((codes[valid] == 3).sum()) / float(valid.sum())
        assert summary["shadow_percent"] == pytest.approx(shadow, abs=1e-3)

    def test_model_shadows_are_a_choice(self, tmp_path):
        geometric = _predict(tmp_path / "a")
        model = _predict(tmp_path / "b", "--shadows", "model")
        assert model["shadow_check"] == {"method": "model", "sun": geometric["shadow_check"]["sun"]}
        removed = geometric["shadow_check"]["removed_pixels"]
        valid = geometric["valid_percent"]
        assert model["shadow_percent"] >= geometric["shadow_percent"]
        if removed:
            assert model["shadow_percent"] > geometric["shadow_percent"]
        assert valid == model["valid_percent"]

    def test_given_angles_win(self, tmp_path):
        summary = _predict(tmp_path, "--sun-angles", "140,35")
        sun = summary["shadow_check"]["sun"]
        assert (sun["azimuth"], sun["zenith"], sun["source"]) == (140.0, 35.0, "given")

    @pytest.mark.parametrize("angles", ["400,30", "140,95", "x,y", "140"])
    def test_bad_angles_end_in_one_line(self, tmp_path, capsys, angles):
        line = fails_with_one_line(
            capsys, "predict", "--sample", "-o", tmp_path, "--sun-angles", angles
        )
        assert f"--sun-angles {angles}" in line
        assert not list(tmp_path.glob("*.json"))


class TestAnglesOfProducts:
    def test_safe_reads_mtd_tl(self):
        sun = read_safe(sample_product()).sun
        assert sun is not None and sun.source == "MTD_TL.xml"

    @pytest.mark.shared_data
    def test_real_safe_has_sun_and_view_angles(self):
        products = sorted((SHARED / "safe").glob("*T29UNU*.SAFE"))
        if not products:
            pytest.skip(f"the real samples are not at {SHARED}")
        sun = read_safe(products[0]).sun
        assert sun.azimuth == pytest.approx(172.8402, abs=1e-3)
        assert sun.zenith == pytest.approx(57.8206, abs=1e-3)
        assert 9.0 < sun.view_zenith < 9.5  # the mean over the 13 bands' detectors

    @pytest.mark.shared_data
    def test_stac_item_angles(self):
        folder = SHARED / "cogs-l2a" / "S2A_29RKH_20200219_0_L2A"
        if not folder.is_dir():
            pytest.skip(f"the real samples are not at {SHARED}")
        sun = read_band_folder(folder).sun
        assert sun.azimuth == pytest.approx(147.671, abs=1e-3)
        assert sun.zenith == pytest.approx(90 - 48.2932, abs=1e-3)

    @pytest.mark.shared_data
    def test_aws_tile_gets_its_time_for_a_computed_sun(self):
        folder = SHARED / "aws-l1c-tile" / "T19UDP_2017-07-29"
        if not folder.is_dir():
            pytest.skip(f"the real samples are not at {SHARED}")
        scene = read_band_folder(folder)
        assert scene.sun is None
        assert scene.acquired is not None and scene.acquired.year == 2017

    def test_stac_item_without_angles_is_no_error(self, tmp_path):
        assert stac_angles(tmp_path / "item.json", {"datetime": "2020-01-01T00:00:00Z"}) is None

    @pytest.mark.parametrize("bad", ["north", float("nan"), 123.0])
    def test_stac_item_with_bad_angles_is_one_line(self, tmp_path, bad):
        from cloudkit.errors import InvalidSceneError

        props = {"view:sun_azimuth": bad, "view:sun_elevation": -40.0 if bad == 123.0 else 40}
        with pytest.raises(InvalidSceneError) as err:
            stac_angles(tmp_path / "item.json", props)
        assert "item.json" in str(err.value) and "\n" not in str(err.value)

    def test_geotiff_tags(self, tmp_path):
        path = tmp_path / "scene.tif"
        profile = {
            "driver": "GTiff", "width": 8, "height": 8, "count": 13, "dtype": "uint16",
            "crs": "EPSG:32631", "transform": rasterio.transform.from_origin(3e5, 5e6, 10, 10),
        }  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.ones((13, 8, 8), np.uint16))
            dst.update_tags(SUN_AZIMUTH="151.5", SUN_ELEVATION="50")
        sun = read_geotiff(path).sun
        assert (sun.azimuth, sun.zenith) == (151.5, 40.0)
        assert tag_angles(path, {"other": "1"}) is None
