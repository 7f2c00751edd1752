"""io/grid.py: plans on the real products and band folders, broken grids built in tmp_path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.errors import BandMismatchError, InvalidSceneError
from cloudkit.io.datasets import read_band_folder, read_cloudsen12, read_geotiff, read_whus2
from cloudkit.io.grid import _factor, plan_grid
from cloudkit.io.safe import read_safe
from cloudkit.io.scene import BandSource, Scene

ON_DISK_T29UNU = [b for b in L2A_BANDS if b != "B08"]  # the 11 bands of its R60m folder


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


class TestSafe:
    def test_t29unu_bands_on_disk_plan_at_60m(self, t29unu: Path) -> None:
        plan = plan_grid(read_safe(t29unu, scl_labels=True), bands=ON_DISK_T29UNU)
        assert plan.resolution == 60
        assert (plan.height, plan.width) == (1830, 1830)
        assert plan.crs.to_epsg() == 32629
        assert plan.bands == tuple(ON_DISK_T29UNU)
        assert plan.factors == (1,) * 11
        assert all(s.path.parent.name == "R60m" for s in plan.sources)
        assert plan.transform[:6] == (60.0, 0.0, 499980.0, 0.0, -60.0, 5900040.0)
        assert plan.label.path.name.endswith("SCL_60m.jp2") and plan.label_factor == 1

    def test_t29unu_default_bands_name_the_missing_b08(self, t29unu: Path) -> None:
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_safe(t29unu))
        message = one_line(err)
        assert "band B08" in message
        assert "R10m/T29UNU_20221005T115411_B08_10m.jp2, which is missing" in message
        assert f"--bands {','.join(ON_DISK_T29UNU)}" in message
        assert "--resolution 60" in message

    def test_t29unu_at_10m_names_missing_files_and_suggests_60(self, t29unu: Path) -> None:
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_safe(t29unu), bands=ON_DISK_T29UNU, resolution=10)
        message = one_line(err)
        assert "band B02 at 10 m needs" in message
        assert "R10m/T29UNU_20221005T115411_B02_10m.jp2, which is missing" in message
        assert "B03, B04, B05" in message and "B01" not in message.split("missing")[1]
        assert message.endswith("the files on disk give --resolution 60")

    def test_t29unu_at_30m_wants_the_absent_10m_files(self, t29unu: Path) -> None:
        # the full product would serve B02 at 30 m from R10m, not by upsampling R60m
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_safe(t29unu), bands=["B02", "B8A"], resolution=30)
        message = one_line(err)
        assert "band B02 at 30 m needs" in message and "R10m" in message
        assert "B8A" not in message.split("missing")[1]  # 20 m does not divide 30 m: R60m

    def test_t29unu_at_120m_area_averages_the_60m_files(self, t29unu: Path) -> None:
        plan = plan_grid(read_safe(t29unu), bands=["B02", "B8A"], resolution=120)
        assert plan.factors == (-2, -2) and (plan.height, plan.width) == (915, 915)

    def test_t07hfe_plans_at_its_real_pixel_size(self, t07hfe: Path) -> None:
        plan = plan_grid(read_safe(t07hfe, scl_labels=True))
        assert plan.bands == L2A_BANDS
        assert plan.resolution == 1098
        assert (plan.height, plan.width) == (100, 100)
        assert plan.factors == (1,) * 12
        assert plan.crs.to_epsg() == 32707
        # same pixel size in R10m/R20m/R60m: the finest product level wins
        assert plan.sources[1].path.parent.name == "R10m"
        assert plan.label.nominal_resolution == 20

    def test_metadata_only_product(self, t01lac: Path) -> None:
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_safe(t01lac))
        message = one_line(err)
        assert "T01LAC_20200717T221941_B01.jp2, which is missing" in message
        assert "download the full product" in message


class TestBandFolders:
    def test_aws_tile_at_900m(self, aws_tile: Path) -> None:
        plan = plan_grid(read_band_folder(aws_tile))
        assert plan.bands == L1C_BANDS
        assert plan.resolution == 900
        assert (plan.height, plan.width) == (122, 122)
        assert plan.factors == (1,) * 13
        assert plan.label is None and plan.label_factor is None

    def test_aws_tile_at_300m(self, aws_tile: Path) -> None:
        plan = plan_grid(read_band_folder(aws_tile), resolution=300)
        assert plan.factors == (3,) * 13
        assert (plan.height, plan.width) == (366, 366)
        assert plan.transform.c == 399960 and plan.transform.f == 5400000

    def test_cogs_l2a_mixed_resolutions(self, cogs_l2a: Path) -> None:
        plan = plan_grid(read_band_folder(cogs_l2a, scl_labels=True))
        assert plan.resolution == 100
        factor = dict(zip(plan.bands, plan.factors, strict=True))
        assert factor["B02"] == factor["B08"] == 1
        assert factor["B05"] == factor["B8A"] == factor["B12"] == 2
        assert factor["B01"] == factor["B09"] == 6
        assert (plan.height, plan.width) == (1098, 1098)
        assert plan.label.path.name == "SCL.tif" and plan.label_factor == 2

    def test_cogs_l2a_at_600m_downsamples(self, cogs_l2a: Path) -> None:
        plan = plan_grid(read_band_folder(cogs_l2a), bands=["B02", "B05", "B09"], resolution=600)
        assert plan.factors == (-6, -3, 1)
        assert (plan.height, plan.width) == (183, 183)

    def test_preview_without_georeferencing_is_a_bad_crs(self, aws_tile: Path) -> None:
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_band_folder(aws_tile / "preview"))
        assert "preview/B02.jp2: bad CRS" in one_line(err)

    def test_corrupt_raster(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B01.tif", res=60)
        (tmp_path / "B02.jp2").write_bytes(random.Random(7).randbytes(2048))
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_band_folder(tmp_path))
        assert "B02.jp2: not a readable raster" in one_line(err)


class TestFileChoice:
    """An L2A-like scene, as a full baseline-04.00 product has it: B01 in R20m and R60m."""

    @pytest.fixture
    def l2a_like(self, tmp_path: Path, make_raster) -> Scene:
        def source(band: str, res: int, size: int) -> BandSource:
            path = make_raster(
                tmp_path / f"R{res}m" / f"T31UFU_{band}_{res}m.tif", res=res, size=size
            )
            return BandSource(band, path, nominal_resolution=res)

        bands = {
            "B01": [source("B01", 20, 6), source("B01", 60, 2)],
            "B02": [source("B02", 10, 12), source("B02", 20, 6), source("B02", 60, 2)],
        }
        return Scene("T31UFU", tmp_path, "l2a-safe", bands)

    def test_finer_target_upsamples_the_native_file(self, l2a_like: Scene) -> None:
        plan = plan_grid(l2a_like)  # 10 m: B01's 20 m file is Sen2Cor's resampled copy
        assert plan.resolution == 10
        assert [s.nominal_resolution for s in plan.sources] == [60, 10]
        assert plan.factors == (6, 1)

    def test_equal_pixel_size_wins(self, l2a_like: Scene) -> None:
        plan = plan_grid(l2a_like, resolution=20)
        assert [s.nominal_resolution for s in plan.sources] == [20, 20]
        assert plan.factors == (1, 1) and (plan.height, plan.width) == (6, 6)

    def test_finer_data_beats_upsampled_coarse_data(self, l2a_like: Scene) -> None:
        plan = plan_grid(l2a_like, resolution=30)
        # B02: 10 m area-averaged by 3; B01: 20 m does not divide 30 m, so 60 m upsampled by 2
        assert [s.nominal_resolution for s in plan.sources] == [60, 10]
        assert plan.factors == (2, -3) and (plan.height, plan.width) == (4, 4)

    def test_coarser_target_downsamples_the_nearest_finer_file(self, l2a_like: Scene) -> None:
        plan = plan_grid(l2a_like, bands=["B02"], resolution=40)
        assert plan.sources[0].nominal_resolution == 20 and plan.factors == (-2,)
        assert (plan.height, plan.width) == (3, 3)


class TestGridChecks:
    def test_different_crs(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif")
        make_raster(tmp_path / "B03.tif", crs="EPSG:32630")
        with pytest.raises(InvalidSceneError) as err:
            plan_grid(read_band_folder(tmp_path))
        message = one_line(err)
        assert "B03.tif: CRS EPSG:32630 differs from EPSG:32629" in message
        assert "B02.tif" in message

    def test_geographic_crs(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif", crs="EPSG:4326", res=0.001, origin=(10.0, 50.0))
        with pytest.raises(InvalidSceneError, match="B02.tif: bad CRS.*geographic"):
            plan_grid(read_band_folder(tmp_path))

    def test_misaligned_origin(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif", res=10)
        make_raster(tmp_path / "B05.tif", res=20, size=4, origin=(600030.0, 5000040.0))
        with pytest.raises(InvalidSceneError, match="B05.tif: upper-left corner"):
            plan_grid(read_band_folder(tmp_path))

    def test_origin_within_half_a_pixel_is_aligned(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif", res=10)
        make_raster(tmp_path / "B05.tif", res=20, size=4, origin=(600004.0, 5000040.0))
        assert plan_grid(read_band_folder(tmp_path)).factors == (1, 2)

    def test_different_extent(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif", res=10, size=8)
        make_raster(tmp_path / "B05.tif", res=20, size=5)
        with pytest.raises(InvalidSceneError, match="B05.tif: 5x5 pixels of 20 m give 10x10"):
            plan_grid(read_band_folder(tmp_path))

    def test_non_integer_factor(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "B02.tif", res=10)
        make_raster(tmp_path / "B05.tif", res=25)
        with pytest.raises(InvalidSceneError, match="B05.tif: pixel size 25 m is not an integer"):
            plan_grid(read_band_folder(tmp_path))

    def test_unknown_and_absent_bands(self, aws_tile: Path, cogs_l2a: Path) -> None:
        with pytest.raises(BandMismatchError, match="unknown band.*B13"):
            plan_grid(read_band_folder(aws_tile), bands=["B02", "B13"])
        with pytest.raises(BandMismatchError, match="no band B10"):
            plan_grid(read_band_folder(cogs_l2a), bands=["B10"])

    def test_requested_bands_come_out_in_esa_order(self, aws_tile: Path) -> None:
        plan = plan_grid(read_band_folder(aws_tile), bands=["B12", "B8A", "B02"])
        assert plan.bands == ("B02", "B8A", "B12")
        assert [s.band for s in plan.sources] == ["B02", "B8A", "B12"]


class TestDatasets:
    def test_geotiff_stack(self, stack_13band: Path) -> None:
        plan = plan_grid(read_geotiff(stack_13band))
        assert (plan.height, plan.width) == (687, 687)
        assert [s.index for s in plan.sources] == list(range(1, 14))

    def test_whus2_native_resolutions_to_10m(self, whus2_root: Path) -> None:
        plan = plan_grid(read_whus2(whus2_root)[0])
        assert plan.resolution == 10 and (plan.height, plan.width) == (24, 24)
        assert plan.factors == (6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 6, 2, 2)
        assert plan.label.kind == "whus2" and plan.label_factor == 1

    def test_whus2_at_60m(self, whus2_root: Path) -> None:
        plan = plan_grid(read_whus2(whus2_root)[0], resolution=60)
        assert (plan.height, plan.width) == (4, 4)
        assert plan.factors[:2] == (1, -6) and plan.label_factor == -6

    def test_cloudsen12_sample(self, cloudsen12_root: Path) -> None:
        plan = plan_grid(read_cloudsen12(cloudsen12_root)[0])
        assert plan.factors == (1,) * 13 and (plan.height, plan.width) == (16, 16)
        assert plan.label.path.name == "manual_hq.tif"

    def test_file_with_too_few_bands(self, whus2_root: Path, make_raster) -> None:
        make_raster(
            whus2_root / "train" / "60m" / "S2A_T49RGP_20190511.tif", count=2, size=4, res=60
        )
        with pytest.raises(InvalidSceneError, match="has 2 band.*band 3 should hold B10"):
            plan_grid(read_whus2(whus2_root)[0])


@given(
    pixel=st.floats(min_value=0.5, max_value=2000, allow_nan=False),
    k=st.integers(min_value=2, max_value=60),
)
def test_factor_sign_convention(pixel: float, k: int) -> None:
    assert _factor(pixel * k, pixel, Path("coarse.tif")) == k  # upsample the coarser file
    assert _factor(pixel, pixel * k, Path("fine.tif")) == -k  # area-average the finer one
    assert _factor(pixel, pixel, Path("same.tif")) == 1
