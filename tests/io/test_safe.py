"""io/safe.py on the real .SAFE products of ../shared/data/safe, plus broken copies in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.errors import InvalidSceneError, SceneNotFoundError
from cloudkit.io.labels import SCL_LUT
from cloudkit.io.safe import read_safe
from cloudkit.io.scene import LABEL_CLEAR, LABEL_NODATA


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


class TestL2A:
    def test_baseline_04_metadata(self, t29unu: Path) -> None:
        scene = read_safe(t29unu)
        assert scene.scene_id == t29unu.name.removesuffix(".SAFE")
        assert scene.layout == "l2a-safe"
        assert scene.processing_baseline == "04.00"
        assert scene.product_type == "S2MSI2A"
        assert scene.quantification == 10000
        assert scene.radiometry_file == t29unu / "MTD_MSIL2A.xml"
        assert list(scene.bands) == list(L2A_BANDS)
        assert all(scene.offset_of(band) == -1000 for band in L2A_BANDS)

    def test_only_r60m_bands_on_disk(self, t29unu: Path) -> None:
        scene = read_safe(t29unu)
        assert scene.bands["B08"] == []
        for band in set(L2A_BANDS) - {"B08"}:
            (source,) = scene.bands[band]
            assert source.path.name.endswith(f"_{band}_60m.jp2")
            assert source.path.parent.name == "R60m"
            assert source.nominal_resolution == 60
            assert source.path.is_file()

    def test_absent_files_are_listed_as_missing(self, t29unu: Path) -> None:
        scene = read_safe(t29unu)
        (b08,) = scene.missing["B08"]
        assert b08.parent.name == "R10m"
        assert b08.name == "T29UNU_20221005T115411_B08_10m.jp2"
        assert [p.parent.name for p in scene.missing["B02"]] == ["R10m", "R20m"]
        assert "B09" not in scene.missing  # B09 is only listed in R60m, which is complete
        assert not any(p.exists() for paths in scene.missing.values() for p in paths)

    def test_scl_labels_only_on_request(self, t29unu: Path) -> None:
        assert read_safe(t29unu).labels == []
        labels = read_safe(t29unu, scl_labels=True).labels
        assert [(label.kind, label.nominal_resolution) for label in labels] == [
            ("scl", 20),
            ("scl", 60),
        ]
        assert all(label.path.is_file() for label in labels)

    def test_baseline_02_geotiff_product(self, t07hfe: Path) -> None:
        scene = read_safe(t07hfe)
        assert scene.processing_baseline == "02.12"
        assert scene.add_offset == {} and scene.offset_of("B02") == 0
        assert scene.missing == {}
        assert [s.nominal_resolution for s in scene.bands["B02"]] == [10, 20, 60]
        assert [s.nominal_resolution for s in scene.bands["B01"]] == [60]
        assert all(s.path.suffix == ".tif" for sources in scene.bands.values() for s in sources)

    def test_mtd_file_path_is_accepted(self, t07hfe: Path) -> None:
        assert read_safe(t07hfe / "MTD_MSIL2A.xml").scene_id == read_safe(t07hfe).scene_id


class TestL1C:
    def test_baseline_from_xml_not_name(self, t01lac: Path) -> None:
        assert "_N0" not in t01lac.name  # the real name has no baseline field
        scene = read_safe(t01lac)
        assert scene.layout == "l1c-safe"
        assert scene.processing_baseline == "02.09"
        assert scene.product_type == "S2MSI1C"

    def test_metadata_only_product_parses(self, t46rer: Path) -> None:
        scene = read_safe(t46rer)
        assert scene.processing_baseline == "03.01"
        assert scene.quantification == 10000
        assert list(scene.bands) == list(L1C_BANDS)
        assert all(sources == [] for sources in scene.bands.values())
        assert list(scene.missing) == list(L1C_BANDS)
        (b8a,) = scene.missing["B8A"]
        assert b8a.name == "T46RER_20210908T042701_B8A.jp2"
        assert b8a.parent.name == "IMG_DATA"

    def test_radiometric_offsets_by_band_id(self, t46rer: Path, tmp_path: Path) -> None:
        product = copy_metadata(t46rer, tmp_path)
        offsets = "".join(
            f'<RADIO_ADD_OFFSET band_id="{i}">{-1000 - i}</RADIO_ADD_OFFSET>' for i in range(13)
        )
        edit_mtd(
            product,
            "</QUANTIFICATION_VALUE>",
            f"</QUANTIFICATION_VALUE><Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>",
        )
        scene = read_safe(product)
        assert scene.offset_of("B01") == -1000
        assert scene.offset_of("B8A") == -1008  # band_id 8
        assert scene.offset_of("B12") == -1012

    def test_band_files_found_and_missing(self, t46rer: Path, tmp_path: Path) -> None:
        product = copy_metadata(t46rer, tmp_path)
        img = next((product / "GRANULE").glob("*")) / "IMG_DATA"
        img.mkdir()
        (img / "T46RER_20210908T042701_B02.tif").write_bytes(b"")  # .tif when no .jp2
        scene = read_safe(product)
        assert [s.path.name for s in scene.bands["B02"]] == ["T46RER_20210908T042701_B02.tif"]
        assert "B02" not in scene.missing and "B03" in scene.missing

    def test_empty_file_list_falls_back_to_img_data(self, t46rer: Path, tmp_path: Path) -> None:
        product = copy_metadata(t46rer, tmp_path)
        mtd = product / "MTD_MSIL1C.xml"
        lines = mtd.read_text().splitlines()
        mtd.write_text("\n".join(line for line in lines if "<IMAGE_FILE>" not in line))
        img = next((product / "GRANULE").glob("*")) / "IMG_DATA"
        img.mkdir()
        for band in ("B01", "B8A", "TCI"):
            (img / f"T46RER_20210908T042701_{band}.jp2").write_bytes(b"")
        scene = read_safe(product)
        assert [b for b, sources in scene.bands.items() if sources] == ["B01", "B8A"]
        assert scene.bands["B8A"][0].path == img / "T46RER_20210908T042701_B8A.jp2"
        assert scene.missing == {}

    def test_file_list_with_file_endings(self, t46rer: Path, tmp_path: Path) -> None:
        product = copy_metadata(t46rer, tmp_path)
        edit_mtd(product, "_B02</IMAGE_FILE>", "_B02.jp2</IMAGE_FILE>")
        img = next((product / "GRANULE").glob("*")) / "IMG_DATA"
        img.mkdir()
        (img / "T46RER_20210908T042701_B02.jp2").write_bytes(b"")
        scene = read_safe(product)
        assert scene.bands["B02"][0].path == img / "T46RER_20210908T042701_B02.jp2"


class TestErrors:
    def test_path_does_not_exist(self, tmp_path: Path) -> None:
        with pytest.raises(SceneNotFoundError) as err:
            read_safe(tmp_path / "S2A_MSIL1C_nothing.SAFE")
        assert "S2A_MSIL1C_nothing.SAFE" in one_line(err)

    def test_folder_without_metadata(self, tmp_path: Path) -> None:
        (tmp_path / "X.SAFE").mkdir()
        with pytest.raises(InvalidSceneError) as err:
            read_safe(tmp_path / "X.SAFE")
        assert "MTD_MSIL1C.xml" in one_line(err)

    def test_malformed_xml(self, tmp_path: Path) -> None:
        product = tmp_path / "S2B_MSIL2A_20230101T000000_N0509_R001_T31UFU_20230101T000000.SAFE"
        product.mkdir()
        (product / "MTD_MSIL2A.xml").write_text(
            "<n1:Level-2A_User_Product><General_Info><Product_Info>"
        )
        with pytest.raises(InvalidSceneError) as err:
            read_safe(product)
        message = one_line(err)
        assert "MTD_MSIL2A.xml" in message and "malformed XML" in message

    def test_bad_band_id(self, t46rer: Path, tmp_path: Path) -> None:
        product = copy_metadata(t46rer, tmp_path)
        edit_mtd(
            product,
            "</QUANTIFICATION_VALUE>",
            "</QUANTIFICATION_VALUE><Radiometric_Offset_List>"
            '<RADIO_ADD_OFFSET band_id="13">-1000</RADIO_ADD_OFFSET></Radiometric_Offset_List>',
        )
        with pytest.raises(InvalidSceneError, match="band_id '13'"):
            read_safe(product)


def test_scl_lut() -> None:
    assert SCL_LUT.dtype == np.uint8 and SCL_LUT.shape == (256,)
    assert list(SCL_LUT[:12]) == [255, 255, 0, 3, 0, 0, 0, 0, 1, 1, 2, 0]
    assert SCL_LUT[12] == LABEL_NODATA and SCL_LUT[255] == LABEL_NODATA
    assert SCL_LUT[4] == LABEL_CLEAR


def copy_metadata(product: Path, tmp_path: Path) -> Path:
    """A copy of a metadata-only product's XML files, to edit without touching the original."""
    copy = tmp_path / product.name
    shutil.copytree(product, copy, ignore=shutil.ignore_patterns("*.jp2", "*.tif", "DATASTRIP"))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared data is read-only
    return copy


def edit_mtd(product: Path, old: str, new: str) -> None:
    (mtd,) = product.glob("MTD_MSI*.xml")
    text = mtd.read_text()
    assert old in text
    mtd.write_text(text.replace(old, new, 1))
