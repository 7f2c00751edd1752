"""io/datasets.py: real band folders and GeoTIFF from ../shared/data; CloudSEN12, WHUS2-CD+
and SEN12MS from the generated stand-ins of conftest.py (those datasets are not available)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.errors import InvalidSceneError, SceneNotFoundError, UnknownLayoutError
from cloudkit.io.datasets import (
    read_band_folder,
    read_cloudsen12,
    read_geotiff,
    read_sen12ms,
    read_whus2,
)
from cloudkit.io.labels import CLOUDSEN12_LUT, SCL_LUT, WHUS2_LUT


class TestBandFolder:
    def test_aws_tile(self, aws_tile: Path) -> None:
        scene = read_band_folder(aws_tile)
        assert scene.scene_id == "T19UDP_2017-07-29"
        assert scene.layout == "band-folder"
        assert list(scene.bands) == list(L1C_BANDS)
        assert [s.path.name for s in scene.bands["B8A"]] == ["B8A.jp2"]
        # tileInfo.json names the product: baseline 02.05, before the 04.00 offset
        assert scene.processing_baseline == "02.05"
        assert scene.product_type == "S2MSI1C"
        assert scene.quantification == 10000 and scene.offset_of("B02") == 0
        assert scene.labels == [] and scene.missing == {}

    def test_preview_subfolder_is_its_own_band_folder(self, aws_tile: Path) -> None:
        scene = read_band_folder(aws_tile / "preview")
        assert list(scene.bands) == list(L1C_BANDS)
        assert scene.processing_baseline is None

    def test_cogs_l2a_with_stac_item(self, cogs_l2a: Path) -> None:
        scene = read_band_folder(cogs_l2a)
        assert list(scene.bands) == list(L2A_BANDS)  # AOT, WVP, TCI, SCL are not bands
        assert scene.processing_baseline == "02.14"
        assert scene.product_type == "S2MSI2A"
        assert scene.quantification == 10000  # STAC raster:bands scale 0.0001
        assert scene.radiometry_file is not None and scene.radiometry_file.suffix == ".json"
        assert all(scene.offset_of(b) == 0 for b in L2A_BANDS)
        assert scene.labels == []

    def test_scl_offered_as_label(self, cogs_l2a: Path) -> None:
        (label,) = read_band_folder(cogs_l2a, scl_labels=True).labels
        assert label.path.name == "SCL.tif" and label.kind == "scl"
        assert label.lut is SCL_LUT

    def test_stac_offsets_are_used(self, tmp_path: Path, make_raster) -> None:
        for band in ("B02", "B03"):
            make_raster(tmp_path / "tile" / f"{band}.tif")
        assets = {
            band: {
                "href": f"https://example.com/items/tile/{band}.tif",
                "raster:bands": [{"scale": 0.0001, "offset": -0.1}],
            }
            for band in ("B02", "B03")
        }
        item = {"type": "Feature", "properties": {"s2:processing_baseline": "05.09"}}
        (tmp_path / "tile" / "item.json").write_text(json.dumps({**item, "assets": assets}))
        scene = read_band_folder(tmp_path / "tile")
        assert scene.quantification == 10000
        assert scene.add_offset == {"B02": -1000, "B03": -1000}

    def test_baseline_04_without_offsets_gets_the_harmonisation_offset(
        self, tmp_path: Path, make_raster
    ) -> None:
        make_raster(tmp_path / "tile" / "B02.jp2.tif")  # not a band name: ignored
        make_raster(tmp_path / "tile" / "B04.tif")
        name = "S2B_MSIL1C_20230611T103629_N0509_R008_T32TMT_20230611T124243"
        (tmp_path / "tile" / "tileInfo.json").write_text(json.dumps({"productName": name}))
        scene = read_band_folder(tmp_path / "tile")
        assert list(scene.bands) == ["B04"]
        assert scene.processing_baseline == "05.09"
        assert scene.add_offset == {"B04": -1000}

    def test_prefixed_band_names(self, shared_data: Path) -> None:
        patch = next((shared_data / "bigearthnet" / "BigEarthNet-S2-Example").iterdir())
        assert list(read_band_folder(patch).bands) == list(L2A_BANDS)

    def test_malformed_json(self, tmp_path: Path, make_raster) -> None:
        make_raster(tmp_path / "tile" / "B02.tif")
        (tmp_path / "tile" / "tileInfo.json").write_text("{ not json")
        with pytest.raises(InvalidSceneError, match="tileInfo.json: malformed JSON"):
            read_band_folder(tmp_path / "tile")

    def test_folder_without_bands(self, tmp_path: Path) -> None:
        with pytest.raises(UnknownLayoutError, match="no band files"):
            read_band_folder(tmp_path)

    def test_a_band_in_two_files_is_refused_not_guessed(self, tmp_path: Path, make_raster):
        for name in ("B02.tif", "B03.tif", "B04.jp2", "B04.tif"):
            make_raster(tmp_path / "tile" / name)
        with pytest.raises(InvalidSceneError, match=r"band B04 is in 2 files \(B04.jp2, B04.tif\)"):
            read_band_folder(tmp_path / "tile")


class TestGeoTiff:
    def test_real_13_band_stack(self, stack_13band: Path) -> None:
        scene = read_geotiff(stack_13band)
        assert scene.layout == "geotiff"
        assert scene.scene_id == stack_13band.stem
        assert list(scene.bands) == list(L1C_BANDS)
        assert [scene.bands[b][0].index for b in ("B01", "B08", "B8A", "B12")] == [1, 8, 9, 13]

    def test_12_bands_without_descriptions_are_l2a(self, tmp_path: Path, make_raster) -> None:
        scene = read_geotiff(make_raster(tmp_path / "l2a.tif", count=12))
        assert list(scene.bands) == list(L2A_BANDS)
        assert scene.bands["B11"][0].index == 11

    def test_descriptions_name_the_bands(self, tmp_path: Path, make_raster) -> None:
        path = make_raster(tmp_path / "rgbn.tif", count=4, descriptions=("B4", "B3", "B2", "B8"))
        scene = read_geotiff(path)
        assert list(scene.bands) == ["B02", "B03", "B04", "B08"]
        assert [scene.bands[b][0].index for b in scene.bands] == [3, 2, 1, 4]

    @pytest.mark.parametrize(
        "descriptions, says",
        [
            (("B02", "B04", "B04", "B08"), "bands 2 and 3 are both described as B04"),
            (("B2", "B04", "b4", "B08"), "bands 2 and 3 are both described as B04"),
            (("B02", "red", "B04", "B08"), "band 2 is described as 'red', which names no"),
            (("B02", "", "B04", "B08"), "band 2 is described as '', which names no"),
        ],
    )
    def test_band_names_there_are_obeyed_or_refused(
        self, descriptions, says, tmp_path: Path, make_raster
    ) -> None:
        path = make_raster(tmp_path / "named.tif", count=4, descriptions=descriptions)
        with pytest.raises(InvalidSceneError, match=f"named.tif: {says}"):
            read_geotiff(path)

    def test_a_band_named_twice_stops_tile_and_predict(self, tmp_path: Path, make_raster, capsys):
        """Never tiled or predicted in an assumed order: one line, and a store it would
        append to keeps what it holds."""
        from tests.helpers.cli import fails_with_one_line, run

        names = ("B01", "B02", "B04", "B04", *L1C_BANDS[4:])  # B03's place says B04
        bad = make_raster(tmp_path / "bad" / "twice.tif", count=13, size=64, descriptions=names)
        good = make_raster(tmp_path / "good" / "ok.tif", count=13, size=64, descriptions=L1C_BANDS)
        store = tmp_path / "s.zarr"
        tile = ("--resolution", "10", "--tile-size", "32")
        assert run(capsys, "tile", good, store, *tile)[0] == 0

        def files() -> dict:
            found = (p for p in store.rglob("*") if p.is_file() and p.name != ".cloudkit.lock")
            return {p.relative_to(store): p.read_bytes() for p in found}

        before = files()
        says = "twice.tif: bands 3 and 4 are both described as B04"
        assert says in fails_with_one_line(capsys, "tile", bad, store, *tile)
        assert files() == before
        assert says in fails_with_one_line(capsys, "predict", bad, "-o", tmp_path / "masks")
        assert not list((tmp_path / "masks").glob("*_mask.tif"))

    def test_not_a_sentinel2_stack(self, tmp_path: Path, make_raster) -> None:
        with pytest.raises(UnknownLayoutError, match="3 band"):
            read_geotiff(make_raster(tmp_path / "rgb.tif", count=3))

    def test_not_a_raster(self, tmp_path: Path) -> None:
        (tmp_path / "x.tif").write_text("hello")
        with pytest.raises(InvalidSceneError, match="x.tif: not a readable raster"):
            read_geotiff(tmp_path / "x.tif")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(SceneNotFoundError):
            read_geotiff(tmp_path / "absent.tif")


class TestCloudSEN12:
    def test_samples_on_disk(self, cloudsen12_root: Path) -> None:
        scenes = read_cloudsen12(cloudsen12_root)
        assert [s.scene_id for s in scenes] == [
            "cloudsen12/ROI_0001/20190212T142031_20190212T143214_T19FDF",
            "cloudsen12/ROI_0002/20200405T101021_20200405T101643_T32TQM",
            "cloudsen12/ROI_0003/20181109T034001_20181109T034005_T47QQV",
        ]  # ROI_0004 is listed but not downloaded
        assert [s.split for s in scenes] == ["train", "val", "test"]
        assert {s.layout for s in scenes} == {"cloudsen12"}
        first = scenes[0]
        assert list(first.bands) == list(L1C_BANDS)
        assert first.bands["B10"][0].path.name == "S2L1C.tif"
        assert first.bands["B10"][0].index == 11
        assert first.quantification == 10000 and first.offset_of("B01") == 0

    def test_labels_by_label_type(self, cloudsen12_root: Path) -> None:
        high, scribble, nolabel = read_cloudsen12(cloudsen12_root)
        assert [(x.kind, x.path.name) for x in high.labels] == [
            ("cloudsen12-high", "manual_hq.tif")
        ]
        assert [x.kind for x in scribble.labels] == ["cloudsen12-scribble"]
        assert nolabel.labels == []
        lut = high.labels[0].lut
        assert lut is CLOUDSEN12_LUT
        assert list(lut[:5]) == [0, 1, 2, 3, 255] and lut[99] == 255

    def test_missing_columns(self, cloudsen12_root: Path) -> None:
        (cloudsen12_root / "cloudsen12_metadata.csv").write_text("roi_id,s2_id_gee\nA,B\n")
        with pytest.raises(InvalidSceneError, match="no column.*test, label_type"):
            read_cloudsen12(cloudsen12_root)

    def test_short_row(self, cloudsen12_root: Path) -> None:
        path = cloudsen12_root / "cloudsen12_metadata.csv"
        path.write_text(path.read_text() + "ROI_0009\n")
        with pytest.raises(InvalidSceneError, match="line 6: empty roi_id or s2_id_gee"):
            read_cloudsen12(cloudsen12_root)

    def test_listed_label_missing(self, cloudsen12_root: Path) -> None:
        (label,) = cloudsen12_root.rglob("manual_hq.tif")
        label.unlink()
        with pytest.raises(InvalidSceneError, match="manual_hq.tif: missing.*label_type high"):
            read_cloudsen12(cloudsen12_root)

    def test_image_missing_is_recorded(self, cloudsen12_root: Path) -> None:
        (image,) = cloudsen12_root.glob("ROI/ROI_0001/*/S2L1C.tif")
        image.unlink()
        scene = read_cloudsen12(cloudsen12_root)[0]
        assert scene.bands["B02"] == [] and scene.missing["B02"] == [image]

    def test_bad_split(self, cloudsen12_root: Path) -> None:
        path = cloudsen12_root / "cloudsen12_metadata.csv"
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        rows[1][2] = "7"
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        with pytest.raises(InvalidSceneError, match="line 2: test is '7'"):
            read_cloudsen12(cloudsen12_root)


class TestWHUS2:
    def test_scenes_and_band_indices(self, whus2_root: Path) -> None:
        train, test = read_whus2(whus2_root)
        assert (train.scene_id, train.split) == ("whus2/train/S2A_T49RGP_20190511", "train")
        assert (test.scene_id, test.split) == ("whus2/test/S2B_T50SMH_20190804", "test")
        assert list(train.bands) == list(L1C_BANDS)
        where = {b: (s[0].path.parent.name, s[0].index) for b, s in train.bands.items()}
        assert where["B01"] == ("60m", 1)
        assert where["B08"] == ("10m", 4)
        assert where["B8A"] == ("20m", 4)
        assert where["B10"] == ("60m", 3)
        assert where["B12"] == ("20m", 6)

    def test_mask_lut(self, whus2_root: Path) -> None:
        (label,) = read_whus2(whus2_root)[0].labels
        assert label.path.name == "S2A_T49RGP_20190511_Mask.tif" and label.kind == "whus2"
        assert label.lut is WHUS2_LUT
        assert (WHUS2_LUT[255], WHUS2_LUT[128], WHUS2_LUT[0], WHUS2_LUT[1]) == (1, 0, 255, 255)

    def test_missing_resolution_file(self, whus2_root: Path) -> None:
        (whus2_root / "test" / "60m" / "S2B_T50SMH_20190804.tif").unlink()
        scene = read_whus2(whus2_root)[1]
        assert list(scene.missing) == ["B01", "B09", "B10"]
        assert scene.bands["B09"] == []

    def test_missing_mask(self, whus2_root: Path) -> None:
        (whus2_root / "train" / "labels" / "S2A_T49RGP_20190511_Mask.tif").unlink()
        with pytest.raises(InvalidSceneError, match="_Mask.tif: missing"):
            read_whus2(whus2_root)


class TestSEN12MS:
    def test_one_scene_per_s2_patch(self, sen12ms_root: Path) -> None:
        scenes = read_sen12ms(sen12ms_root)
        assert [s.scene_id for s in scenes] == [
            "sen12ms/ROIs1158_spring_s2_1_p30",
            "sen12ms/ROIs1158_spring_s2_1_p31",
            "sen12ms/ROIs1158_spring_s2_7_p2",
        ]
        assert all(s.layout == "sen12ms" and s.labels == [] for s in scenes)
        assert scenes[0].bands["B12"][0].index == 13

    def test_single_patch_file(self, sen12ms_root: Path) -> None:
        (patch,) = sen12ms_root.rglob("*_s2_7_p2.tif")
        assert [s.path for s in read_sen12ms(patch)] == [patch]

    def test_no_patches(self, tmp_path: Path) -> None:
        with pytest.raises(UnknownLayoutError, match="no SEN12MS"):
            read_sen12ms(tmp_path)


def test_label_luts_are_read_only() -> None:
    for lut in (SCL_LUT, WHUS2_LUT, CLOUDSEN12_LUT):
        assert lut.dtype == np.uint8 and not lut.flags.writeable
