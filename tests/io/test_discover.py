"""io/discover.py: every layout found from the path a user would type."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudkit.errors import InvalidSceneError, SceneNotFoundError, UnknownLayoutError
from cloudkit.io.discover import discover_scenes


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


class TestLayouts:
    def test_folder_of_safe_products(self, shared_data: Path) -> None:
        scenes = discover_scenes([shared_data / "safe"])
        assert [s.scene_id[:26] for s in scenes] == [
            "S2A_MSIL1C_20200717T221941",
            "S2A_MSIL1C_20210908T042701",
            "S2A_MSIL2A_20190212T192651",
            "S2A_MSIL2A_20221005T115411",
        ]
        assert [s.layout for s in scenes] == ["l1c-safe"] * 2 + ["l2a-safe"] * 2

    def test_product_and_its_metadata_file(self, t07hfe: Path) -> None:
        (by_folder,) = discover_scenes([t07hfe])
        (by_file,) = discover_scenes([t07hfe / "MTD_MSIL2A.xml"])
        assert by_folder.scene_id == by_file.scene_id

    def test_scl_labels_pass_through(self, t07hfe: Path, cogs_l2a: Path) -> None:
        scenes = discover_scenes([t07hfe, cogs_l2a], scl_labels=True)
        assert [len(s.labels) for s in scenes] == [1, 2]  # sorted: S2A_29RKH.. before S2A_MSIL2A..

    def test_band_folders(self, aws_tile: Path, cogs_l2a: Path) -> None:
        scenes = discover_scenes([aws_tile, cogs_l2a])
        assert [s.scene_id for s in scenes] == ["S2A_29RKH_20200219_0_L2A", "T19UDP_2017-07-29"]
        assert {s.layout for s in scenes} == {"band-folder"}

    def test_folder_of_geotiffs_skips_other_files(self, shared_data: Path) -> None:
        # derived/ also holds a 1-band probability map and an .npz: neither is a scene
        scenes = discover_scenes([shared_data / "derived"])
        assert [s.scene_id for s in scenes] == [
            "S2A_MSIL1C_20170729_T19UDP_preview_13band",
            "T19UDP_preview_crop128_13band",
        ]
        assert {s.layout for s in scenes} == {"geotiff"}

    def test_single_geotiff(self, stack_13band: Path) -> None:
        (scene,) = discover_scenes([stack_13band])
        assert scene.layout == "geotiff"

    def test_dataset_roots(
        self, cloudsen12_root: Path, whus2_root: Path, sen12ms_root: Path
    ) -> None:
        scenes = discover_scenes([sen12ms_root, whus2_root, cloudsen12_root])
        layouts = [s.layout for s in scenes]
        assert layouts == ["cloudsen12"] * 3 + ["sen12ms"] * 3 + ["whus2"] * 2
        assert scenes == sorted(scenes, key=lambda s: s.scene_id)

    def test_folder_of_dataset_roots(self, cloudsen12_root: Path, whus2_root: Path) -> None:
        assert cloudsen12_root.parent == whus2_root.parent
        scenes = discover_scenes([whus2_root.parent])
        assert len(scenes) == 5

    def test_sen12ms_season_folder_and_patch(self, sen12ms_root: Path) -> None:
        assert len(discover_scenes([sen12ms_root / "ROIs1158_spring"])) == 3
        (patch,) = sen12ms_root.rglob("*_s2_7_p2.tif")
        assert [s.scene_id for s in discover_scenes([patch])] == ["sen12ms/ROIs1158_spring_s2_7_p2"]


class TestErrors:
    def test_missing_path(self, tmp_path: Path) -> None:
        with pytest.raises(SceneNotFoundError) as err:
            discover_scenes([tmp_path / "nowhere.SAFE"])
        assert "nowhere.SAFE: no such file or folder" in one_line(err)

    def test_text_file(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("not a scene")
        with pytest.raises(UnknownLayoutError) as err:
            discover_scenes([tmp_path / "notes.txt"])
        message = one_line(err)
        assert "notes.txt: matches no layout" in message and ".SAFE product" in message

    def test_random_folder(self, tmp_path: Path) -> None:
        (tmp_path / "misc" / "sub").mkdir(parents=True)
        (tmp_path / "misc" / "readme.md").write_text("hello")
        with pytest.raises(UnknownLayoutError, match="misc: matches no layout"):
            discover_scenes([tmp_path / "misc"])

    def test_zip_archive(self, tmp_path: Path) -> None:
        (tmp_path / "S2A_MSIL1C.SAFE.zip").write_bytes(b"PK")
        with pytest.raises(UnknownLayoutError, match="unzip it"):
            discover_scenes([tmp_path / "S2A_MSIL1C.SAFE.zip"])

    def test_duplicate_scene_ids(self, aws_tile: Path) -> None:
        with pytest.raises(InvalidSceneError) as err:
            discover_scenes([aws_tile, aws_tile])
        assert "scene T19UDP_2017-07-29 found twice" in one_line(err)

    def test_broken_product_in_a_folder_is_an_error(self, tmp_path: Path) -> None:
        product = tmp_path / "products" / "S2A_MSIL1C_X.SAFE"
        product.mkdir(parents=True)
        (product / "MTD_MSIL1C.xml").write_text("<broken")
        with pytest.raises(InvalidSceneError, match="MTD_MSIL1C.xml: malformed XML"):
            discover_scenes([tmp_path / "products"])
