"""The processing level of a scene, decided in one place (io/level.py) for every layout."""

from __future__ import annotations

import pytest

from cloudkit.errors import InvalidSceneError
from cloudkit.io.datasets import stored_scene_level
from cloudkit.io.discover import discover_scenes
from cloudkit.io.level import (
    L1C,
    L2A,
    level_in_name,
    processing_level,
    require_level,
)


def _level(path):
    (scene,) = discover_scenes([path])
    return processing_level(scene)


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557", L1C),
        ("S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454", L2A),
        ("S2A_29RKH_20200219_0_L2A", L2A),
        ("l1c_crop.tif", L1C),
        ("T19UDP_2017-07-29", None),
        ("L1CX_scene", None),  # not a word of its own
        ("MSIL1C_vs_MSIL2A", None),  # both: no answer
    ],
)
def test_level_in_name(name, level):
    assert level_in_name(name) == level


def test_real_products(t29unu, t01lac, aws_tile, cogs_l2a, stack_13band):
    assert _level(t29unu) == L2A  # the layout (MTD_MSIL2A.xml)
    assert _level(t01lac) == L1C
    assert _level(aws_tile) == L1C  # tileInfo.json's productName; the folder name says nothing
    assert _level(cogs_l2a) == L2A  # the STAC item's s2:product_type
    assert _level(stack_13band) == L1C


def test_datasets_of_l1c_images(cloudsen12_root, sen12ms_root, whus2_root):
    for root in (cloudsen12_root, sen12ms_root, whus2_root):
        assert {processing_level(s) for s in discover_scenes([root])} == {L1C}


def test_plain_geotiff_tells_by_b10_or_not_at_all(tmp_path, make_raster):
    thirteen = make_raster(tmp_path / "stack.tif", count=13)
    assert _level(thirteen) == L1C  # B10: no L2A has it
    four = make_raster(tmp_path / "crop.tif", count=4, descriptions=("B02", "B03", "B04", "B08"))
    assert _level(four) is None
    with pytest.raises(InvalidSceneError, match="crop: cannot tell whether it is L1C or L2A"):
        require_level(_level(four), "crop", "ukis-csmask")
    named = make_raster(
        tmp_path / "crop_L2A.tif", count=4, descriptions=("B02", "B03", "B04", "B08")
    )
    assert _level(named) == L2A


def test_stored_scene_rereads_a_band_folder(aws_tile, tmp_path):
    bands = ("B02", "B03", "B04", "B08")
    assert stored_scene_level("band-folder", aws_tile.name, str(aws_tile), bands) == L1C
    assert stored_scene_level("l2a-safe", "x", "/gone", bands) == L2A
    assert stored_scene_level("band-folder", "x", str(tmp_path / "gone"), bands) is None
    assert stored_scene_level("geotiff", "x", "/gone/x.tif", (*bands, "B10")) == L1C
