"""`cloudkit tile --labels-from ukis-csmask|s2cloudless`: a peer's classes as a store's labels.

s2cloudless is a pixel classifier, so its labels in the store must be exactly the mask
s2cloudless itself made of the same pixels (../shared/data/derived). Skipped with a reason when
the ``peers`` extra is not installed or ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from cloudkit.cli import main
from cloudkit.config import TileOptions
from cloudkit.errors import CloudkitError
from cloudkit.io.scene import LABEL_CLEAR, LABEL_CLOUD_SHADOW, LABEL_NODATA, LABEL_THICK_CLOUD
from cloudkit.io.store import read_scene_table
from cloudkit.peers.registry import S2Cloudless, UkisCsmask
from cloudkit.peers.teacher import _stripe, labels_on_grid, vote
from cloudkit.tiler.writer import tile_paths
from tests.helpers.shared_data import COGS_L2A, DERIVED, L2A_T29UNU, T29UNU_60M_BANDS

T19UDP = DERIVED / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif"
S2CLOUDLESS_MASK = DERIVED / "T19UDP_preview_s2cloudless_mask_thr0.4.npz"


def needs(peer) -> None:
    if not peer.installed():
        pytest.skip(f"{peer.name} is not installed (pip install 'cloudkit[peers]')")


def _tile(scenes, out: Path, **options) -> Path:
    tile_paths(scenes, out, TileOptions(**options))
    return out


def _labels_on_grid(store: Path, height: int, width: int) -> np.ndarray:
    """The store's labels pasted back onto the scene grid (255 where no tile covers)."""
    g = zarr.open_group(str(store), mode="r")
    n, t = int(g.attrs["num_tiles"]), int(g.attrs["tile_size"])
    grid = np.full((height + t, width + t), LABEL_NODATA, dtype=np.uint8)
    for i, (r, c) in enumerate(zip(g["tile_row"][:n], g["tile_col"][:n], strict=True)):
        grid[r : r + t, c : c + t] = g["labels"][i, 0]
    return grid[:height, :width]


def test_s2cloudless_labels_are_its_own_mask(shared_data, tmp_path):
    """Overlapping tiles, the scene's right and bottom edges: every label is what s2cloudless
    said of that pixel; no-data stays no-data; the store names the teacher and its licence."""
    needs(S2Cloudless)
    store = _tile(
        [T19UDP], tmp_path / "s2c.zarr", labels_from="s2cloudless", tile_size=256, overlap=32
    )
    labels = _labels_on_grid(store, 687, 687)
    with rasterio.open(T19UDP) as src:
        valid = (src.read() != 0).all(axis=0)
    reference = np.load(S2CLOUDLESS_MASK)["mask"]
    np.testing.assert_array_equal(labels[~valid], LABEL_NODATA)
    expected = np.where(reference[valid] > 0, LABEL_THICK_CLOUD, LABEL_CLEAR)
    np.testing.assert_array_equal(labels[valid], expected)
    (scene,) = read_scene_table(store)
    assert scene["label_kind"] == f"teacher:s2cloudless {S2Cloudless.version()}, CC BY-SA 4.0"
    assert 0.2 < scene["cloud_fraction"] < 0.4


def test_ukis_csmask_labels_see_the_whole_tile_row(shared_data, tmp_path):
    """ukis-csmask runs over each tile row's stripe: its labels are its classes, close to what
    it says of the whole image at once (the stripe has no context above and below)."""
    needs(UkisCsmask)
    store = _tile([T19UDP], tmp_path / "ukis.zarr", labels_from="ukis-csmask", tile_size=256)
    labels = _labels_on_grid(store, 687, 687)
    with rasterio.open(T19UDP) as src:
        dn = src.read()
    valid = (dn != 0).all(axis=0)
    assert set(np.unique(labels[valid])) == {LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW}
    peer = UkisCsmask()
    refl = dn[[1, 2, 3, 7, 11, 12]].astype(np.float32)[None] / 10000.0
    refl[:, :, ~valid] = np.nan
    whole = peer.label_codes(peer.probabilities(refl, peer.SIX, "L1C"))[0]
    # the same, but for the shadow the geometric check took back (no cloud casts it)
    checked = (whole == LABEL_CLOUD_SHADOW) & (labels != LABEL_CLOUD_SHADOW)
    assert ((labels == whole) | checked)[valid].mean() > 0.95
    (scene,) = read_scene_table(store)
    assert scene["label_kind"] == f"teacher:ukis-csmask {UkisCsmask.version()}, Apache-2.0"


def test_ukis_csmask_shadow_is_checked_against_its_clouds(shared_data, tmp_path):
    """Shadow no cloud casts leaves the teacher's labels before they are stored; the tiles'
    cloud fractions are those of the labels stored."""
    needs(UkisCsmask)
    summary = tile_paths(
        [T19UDP], tmp_path / "ukis.zarr", TileOptions(labels_from="ukis-csmask", tile_size=256)
    )
    (result,) = summary.results
    check = result.summary["shadow_check"]
    assert check["shadow_pixels"] >= check["removed_pixels"] > 0
    assert set(check["removed_to"]) <= {"clear", "thick cloud"}
    g = zarr.open_group(str(tmp_path / "ukis.zarr"), mode="r")
    n = int(g.attrs["num_tiles"])
    for i in range(n):
        labels = g["labels"][i, 0]
        labelled = labels != LABEL_NODATA
        if labelled.any():
            cloud = np.isin(labels[labelled], (1, 2)).mean()
            assert g["cloud_fraction"][i] == pytest.approx(cloud, abs=1e-6)


def test_teacher_replaces_a_datasets_own_labels(cloudsen12_root, tmp_path):
    needs(S2Cloudless)
    store = _tile([cloudsen12_root], tmp_path / "cs.zarr", labels_from="s2cloudless")
    kinds = {scene["label_kind"] for scene in read_scene_table(store)}
    assert kinds == {S2Cloudless.label_kind()}


def test_two_teachers_vote(shared_data, tmp_path):
    """ukis-csmask + s2cloudless: where both say cloud, or both not, ukis-csmask's label (its
    shadow checked as when it teaches alone); where they disagree, no label. s2cloudless
    is a pixel classifier, so "disagree" is checked against its own mask."""
    needs(UkisCsmask)
    needs(S2Cloudless)
    alone = _labels_on_grid(
        _tile([T19UDP], tmp_path / "u.zarr", labels_from="ukis-csmask", tile_size=256), 687, 687
    )
    summary = tile_paths(
        [T19UDP], tmp_path / "v.zarr", TileOptions(labels_from="ukis-csmask+s2cloudless",
                                                   tile_size=256),
    )  # fmt: skip
    voted = _labels_on_grid(tmp_path / "v.zarr", 687, 687)
    s2c = np.load(S2CLOUDLESS_MASK)["mask"] > 0
    with rasterio.open(T19UDP) as src:
        valid = (src.read() != 0).all(axis=0)
    ukis_cloud = np.isin(alone, (1, 2))
    kept = voted != LABEL_NODATA
    np.testing.assert_array_equal(voted[kept], alone[kept])
    np.testing.assert_array_equal(np.isin(voted[kept], (1, 2)), s2c[kept])
    # left out: where they disagree (a shadow the check turned into cloud may differ)
    dropped = valid & ~kept
    assert (ukis_cloud[dropped] != s2c[dropped]).mean() > 0.99
    assert (ukis_cloud[valid & kept] == s2c[valid & kept]).all()
    (result,) = summary.results
    vote = result.summary["teacher_vote"]
    assert vote["teachers"] == ["ukis-csmask", "s2cloudless"]
    assert vote["disputed"] == pytest.approx(dropped.sum() / valid.sum(), abs=0.02)
    assert result.summary["shadow_check"]["removed_pixels"] > 0
    (scene,) = read_scene_table(tmp_path / "v.zarr")
    assert scene["label_kind"] == f"{UkisCsmask.label_kind()} + {S2Cloudless.label_kind()}"


def test_scl_votes_first_with_the_teacher(shared_data, tmp_path):
    """--scl-labels --labels-from ukis-csmask on the Sahara tile (SCL at 200 m on the 100 m
    grid): SCL's own label where ukis-csmask agrees on cloud or not, none where it does not
    (ukis-csmask calls much of the bright sand cloud); the summary and the store say so."""
    needs(UkisCsmask)
    scl_store = _tile([COGS_L2A], tmp_path / "scl.zarr", scl_labels=True, tile_size=128)
    (scene,) = read_scene_table(scl_store)
    height, width = (int(n) for n in scene["shape"])
    scl = _labels_on_grid(scl_store, height, width)
    ukis_store = _tile([COGS_L2A], tmp_path / "u.zarr", labels_from="ukis-csmask", tile_size=128)
    ukis_cloud = np.isin(_labels_on_grid(ukis_store, height, width), (1, 2))
    summary = tile_paths(
        [COGS_L2A], tmp_path / "v.zarr",
        TileOptions(scl_labels=True, labels_from="ukis-csmask", tile_size=128),
    )  # fmt: skip
    voted = _labels_on_grid(tmp_path / "v.zarr", height, width)
    kept = voted != LABEL_NODATA
    np.testing.assert_array_equal(voted[kept], scl[kept])
    scl_cloud = np.isin(scl, (1, 2))
    # the teacher alone had its shadow checked (a shadow turned cloud may differ); voting, not
    assert (scl_cloud[kept] == ukis_cloud[kept]).mean() > 0.99
    dropped = (scl != LABEL_NODATA) & ~kept
    assert dropped.mean() > 0.05  # the sand ukis-csmask calls cloud
    assert (scl_cloud[dropped] != ukis_cloud[dropped]).mean() > 0.99
    (result,) = summary.results
    vote_report = result.summary["teacher_vote"]
    assert vote_report["teachers"] == ["scl", "ukis-csmask"]
    labelled = (scl != LABEL_NODATA).sum()
    assert vote_report["disputed"] == pytest.approx(dropped.sum() / labelled, abs=0.02)
    assert "shadow_check" not in result.summary  # SCL's shadow is Sen2Cor's
    (scene,) = read_scene_table(tmp_path / "v.zarr")
    (alone,) = read_scene_table(scl_store)
    assert scene["label_kind"] == f"{alone['label_kind']} + {UkisCsmask.label_kind()}"


def test_labels_on_grid_repeat_native_pixels():
    native = np.arange(12, dtype=np.uint8).reshape(3, 4)
    # target rows 2..4 of a grid with 2 target pixels per native one: native rows 1 and 2
    got = labels_on_grid(native[1:], 2, 3, 7, 2)
    np.testing.assert_array_equal(
        got, [[4, 4, 5, 5, 6, 6, 7], [4, 4, 5, 5, 6, 6, 7], [8, 8, 9, 9, 10, 10, 11]]
    )
    # past the native raster: no label
    np.testing.assert_array_equal(labels_on_grid(native[2:], 4, 3, 3, 2)[2], [255] * 3)
    np.testing.assert_array_equal(labels_on_grid(native, 0, 3, 4, 1), native)


def test_vote_rule():
    first = np.array([[0, 1, 3, 1, 255, 2]], np.uint8)
    other = np.array([[0, 1, 0, 0, 1, 255]], np.uint8)
    codes, disputed = vote(first, [other])
    np.testing.assert_array_equal(codes, [[0, 1, 3, 255, 255, 255]])
    np.testing.assert_array_equal(disputed, [[False, False, False, True, False, False]])


def test_stripe_from_overlapping_windows():
    windows = np.arange(3 * 1 * 4 * 4).reshape(3, 1, 4, 4)
    stripe = _stripe(windows, [0, 3, 6], 9)
    assert stripe.shape == (1, 4, 9)
    np.testing.assert_array_equal(stripe[0, :, 6:], windows[2, 0, :, :3])
    np.testing.assert_array_equal(stripe[0, :, :3], windows[0, 0, :, :3])


def _one_line(capsys, args) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cloudkit: error: "), err
    return err


def test_one_line_errors(shared_data, tmp_path, capsys, make_raster):
    out = str(tmp_path / "x.zarr")
    scene = str(L2A_T29UNU)
    mask_folder = tmp_path / "masks"
    mask_folder.mkdir()
    err = _one_line(capsys, ["tile", scene, out, "--labels-from", str(mask_folder), "--scl-labels"])
    assert "and --scl-labels both say where the labels come from" in err
    assert "SCL votes with peer models only" in err
    with pytest.raises(CloudkitError, match="--labels-from fmask: neither a peer model"):
        tile_paths([L2A_T29UNU], Path(out), TileOptions(labels_from="fmask"))
    with pytest.raises(CloudkitError, match="--labels-from ukis-csmask\\+fmask: neither a peer"):
        tile_paths([L2A_T29UNU], Path(out), TileOptions(labels_from="ukis-csmask+fmask"))
    needs(UkisCsmask)
    twice = ["--labels-from", "ukis-csmask+ukis-csmask"]
    assert "a teacher named twice" in _one_line(capsys, ["tile", scene, out, *twice])
    coarse = ["--resolution", "120", "--bands", ",".join(T29UNU_60M_BANDS), "--scl-labels"]
    err = _one_line(capsys, ["tile", scene, out, "--labels-from", "ukis-csmask", *coarse])
    assert "its SCL layer is finer than the 120 m grid" in err
    rgb = ["--resolution", "60", "--bands", "B02,B03,B04"]
    err = _one_line(capsys, ["tile", scene, out, "--labels-from", "ukis-csmask", *rgb])
    assert "ukis-csmask needs at least B02,B03,B04,B08" in err and "lacks B08" in err
    crop = make_raster(tmp_path / "crop.tif", count=4, descriptions=("B02", "B03", "B04", "B08"))
    err = _one_line(capsys, ["tile", str(crop), out, "--labels-from", "ukis-csmask"])
    assert "crop: cannot tell whether it is L1C or L2A" in err
    needs(S2Cloudless)
    bands = ["--resolution", "60", "--bands", ",".join(T29UNU_60M_BANDS)]
    err = _one_line(capsys, ["tile", scene, out, "--labels-from", "s2cloudless", *bands])
    assert "needs the cirrus band B10" in err and "is L2A" in err
    assert not Path(out).exists()  # nothing was written


# --- a folder of cloudkit masks as the teacher ------------------------------------------------


def _mask(folder: Path, scene_id: str, classes: np.ndarray, names, transform) -> Path:
    """A mask as `cloudkit predict` writes it (its MaskWriter), on the 20 m grid."""
    from rasterio.crs import CRS

    from cloudkit.predict.output import MaskWriter

    h, w = classes.shape
    writer = MaskWriter(folder, scene_id, crs=CRS.from_epsg(32631), transform=transform,
                        height=h, width=w, classes=names, threads=1)  # fmt: skip
    writer.write_rows(0, classes)
    return writer.finish({"scene": scene_id}).mask


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    from cloudkit.sample.synthetic import write_l1c_safe

    return write_l1c_safe(tmp_path_factory.mktemp("l1c"), size_10m=192, seed=3).path


def _grid_20m(product: Path):
    from cloudkit.io.discover import discover_scenes
    from cloudkit.io.grid import plan_grid

    (scene,) = discover_scenes([product])
    plan = plan_grid(scene, resolution=20)
    return scene.scene_id, plan.height, plan.width, plan.transform


def test_masks_folder_labels_are_the_masks(product, tmp_path):
    scene_id, h, w, transform = _grid_20m(product)
    classes = np.random.default_rng(0).integers(0, 4, (h, w)).astype(np.uint8)
    classes[:5] = 255
    names = ("clear", "thick cloud", "thin cloud", "cloud shadow")
    _mask(tmp_path / "masks", scene_id, classes, names, transform)
    store = _tile([product], tmp_path / "s.zarr", resolution=20, tile_size=32,
                  labels_from=str(tmp_path / "masks"))  # fmt: skip
    labels = _labels_on_grid(store, h, w)
    covered = labels != LABEL_NODATA
    assert covered.mean() > 0.5
    # multi's class indices are cloudkit's codes; the mask's no-data stays no-data
    np.testing.assert_array_equal(labels[covered], classes[covered])
    assert (labels[:5] == LABEL_NODATA).all()
    (record,) = read_scene_table(store)
    assert record["label_kind"] == f"mask:{scene_id}_mask.tif"


def test_binary_cloud_mask_gives_thick_cloud_and_clear(product, tmp_path):
    scene_id, h, w, transform = _grid_20m(product)
    classes = np.zeros((h, w), np.uint8)
    classes[:, : w // 2] = 1
    _mask(tmp_path / "masks", scene_id, classes, ("clear", "cloud"), transform)
    store = _tile([product], tmp_path / "s.zarr", resolution=20, tile_size=32,
                  labels_from=str(tmp_path / "masks"))  # fmt: skip
    labels = _labels_on_grid(store, h, w)
    covered = labels != LABEL_NODATA
    expected = np.where(classes == 1, LABEL_THICK_CLOUD, LABEL_CLEAR)
    np.testing.assert_array_equal(labels[covered], expected[covered])


def test_masks_folder_errors_are_one_line(product, tmp_path, capsys):
    scene_id, h, w, transform = _grid_20m(product)
    masks = tmp_path / "masks"
    masks.mkdir()
    args = ["tile", str(product), str(tmp_path / "s.zarr"), "--resolution", "20",
            "--labels-from", str(masks)]  # fmt: skip
    err = _one_line(capsys, args)
    assert f"{masks / (scene_id + '_mask.tif')}: missing; --labels-from {masks}" in err
    shadow = np.zeros((h, w), np.uint8)
    _mask(masks, scene_id, shadow, ("no shadow", "shadow"), transform)
    err = _one_line(capsys, args)
    assert "classes 'no shadow', 'shadow' cannot be labels (expected clear, thick cloud" in err
    assert not (tmp_path / "s.zarr").exists() or not read_scene_table(tmp_path / "s.zarr")
