"""The dl-l8s2-uv peer (`dl_l8s2_uv.py`, `peers.DlL8S2Uv`): its bands, its weights read in
place, cloud on real cloudy pixels, and `cloudkit models`, `predict --model`, `tile
--labels-from` and `evaluate --reference` with it.

Skipped with a reason without h5py, the weight files or ../shared/data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cloudkit.errors import BandMismatchError, MissingDependencyError
from cloudkit.io.scene import LABEL_CLEAR, LABEL_THICK_CLOUD
from cloudkit.peers import dl_l8s2_uv
from cloudkit.peers.registry import DlL8S2Uv, get_peer
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.shared_data import (
    DERIVED,
    L2A_T29UNU,
    STACK_13BAND,
    T19UDP_S2CLOUDLESS,
    T29UNU_60M_BANDS,
)

CROP = DERIVED / "T19UDP_preview_crop128_13band.tif"
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


@pytest.fixture
def peer(shared_data) -> DlL8S2Uv:
    if not DlL8S2Uv.installed():
        pytest.skip(f"dl-l8s2-uv is not installed: h5py and {dl_l8s2_uv.weights_folder()}")
    return get_peer("dl-l8s2-uv")


def test_bands_and_levels():
    peer = DlL8S2Uv()
    assert peer.bands_for(L1C, "L1C") == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert peer.bands_for(("B02", "B03", "B04", "B08"), "L1C") == ("B02", "B03", "B04", "B08")
    with pytest.raises(BandMismatchError, match="needs at least B02,B03,B04,B08.*lacks B08"):
        peer.bands_for(("B02", "B03", "B04"), "L1C", what="x.tif")
    with pytest.raises(BandMismatchError, match="L1C reflectance but x.tif is L2A"):
        peer.bands_for(L1C, "L2A", what="x.tif")
    assert peer.label_kind() == "teacher:dl-l8s2-uv 05c91ab, MIT"


def test_resampled_to_30m(peer):
    got = [dl_l8s2_uv.rescaling(r) for r in (None, 10, 20, 30, 32, 60, 160, 900)]
    assert got == pytest.approx([1, 1 / 3, 2 / 3, 1, 1, 2, 16 / 3, 8])
    # probabilities come back on the input's grid
    refl = np.full((1, 4, 50, 70), 0.05, np.float32)
    for resolution in (10.0, 160.0):
        probs = peer.probabilities(refl, dl_l8s2_uv.FOUR, "L1C", resolution=resolution)
        assert probs.shape == (1, 2, 50, 70)


def test_missing_weights_say_where(monkeypatch, tmp_path):
    monkeypatch.setenv(dl_l8s2_uv.ENV, str(tmp_path))
    assert not DlL8S2Uv.installed()
    with pytest.raises(MissingDependencyError) as err:
        get_peer("dl-l8s2-uv")
    message = str(err.value)
    assert f"not found in {tmp_path}; set {dl_l8s2_uv.ENV}" in message and "\n" not in message


def test_cli_without_weights_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(dl_l8s2_uv.ENV, str(tmp_path / "none"))
    line = fails_with_one_line(
        capsys, "predict", STACK_13BAND, "--model", "dl-l8s2-uv", "-o", tmp_path / "m"
    )
    assert "landsatbiomeRGBISWIR7.hdf5, not found in" in line
    code, out, _ = run(capsys, "models")
    assert code == 0 and "dl-l8s2-uv 05c91ab (MIT)  [peer, not installed]" in out


def test_finds_cloud_on_real_cloudy_pixels(peer):
    """A 200 px crop of the T19UDP preview (160 m), half cloud by s2cloudless: both networks,
    run at about 30 m, find it."""
    with rasterio.open(STACK_13BAND) as src:
        dn = src.read()[:, 200:400, 200:400]
    with rasterio.open(T19UDP_S2CLOUDLESS) as src:
        reference = src.read(1)[200:400, 200:400] > 0.4
    refl = dn.astype(np.float32) / 10000.0
    for bands, least in ((dl_l8s2_uv.SIX, 0.9), (dl_l8s2_uv.FOUR, 0.8)):
        index = [L1C.index(b) for b in bands]
        probs = peer.probabilities(refl[index][None], bands, "L1C", resolution=160.0)
        assert probs.shape == (1, 2, 200, 200)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        cloud = peer.label_codes(probs)[0] == LABEL_THICK_CLOUD
        f1 = 2 * (cloud & reference).sum() / (cloud.sum() + reference.sum())
        assert f1 > least, (bands, f1)


def test_predict_tile_and_evaluate(peer, tmp_path, capsys):
    """A 128 px crop of the T19UDP preview (13 bands at 160 m): predict's mask is the peer's
    own on the file's reflectance (predict gives a peer no pixel size: it runs at 160 m); a
    store labelled by the peer (which resamples to 30 m, as evaluate does) scores it near 1;
    L2A is refused."""
    out = tmp_path / "masks"
    code, _, err = run(capsys, "predict", CROP, "--model", "dl-l8s2-uv", "-o", out)
    assert code == 0, err
    scene = CROP.stem
    summary = json.loads((out / f"{scene}.json").read_text())
    assert summary["model"]["bands"] == list(dl_l8s2_uv.SIX)
    assert summary["model"]["head"] == "peer dl-l8s2-uv 05c91ab"
    with rasterio.open(CROP) as src:
        dn = src.read([L1C.index(b) + 1 for b in dl_l8s2_uv.SIX])
    valid = (dn != 0).all(axis=0)
    with rasterio.open(out / f"{scene}_mask.tif") as src:
        mask = src.read(1)
    refl = np.where(valid, dn.astype(np.float32) / 10000.0, np.nan)[None]
    direct = peer.label_codes(peer.probabilities(refl, dl_l8s2_uv.SIX, "L1C"))[0]
    assert (mask[valid] == direct[valid]).mean() > 0.99
    assert (mask[~valid] == 255).all()
    assert 0.1 < (mask[valid] == LABEL_THICK_CLOUD).mean() < 0.9

    store = tmp_path / "uv.zarr"
    args = ("--labels-from", "dl-l8s2-uv", "--tile-size", "128", "--overlap", "0")
    code, _, err = run(capsys, "tile", CROP, store, *args)
    assert code == 0, err
    code, report, err = run(
        capsys, "evaluate", "--reference", "dl-l8s2-uv", "--task", "cloud", store, "-o",
        tmp_path / "r.json"
    )  # fmt: skip
    assert code == 0, err
    scores = json.loads((tmp_path / "r.json").read_text())
    assert scores["reference"] == "dl-l8s2-uv 05c91ab" and scores["licence"] == "MIT"
    assert scores["per_class"]["cloud"]["f1"] > 0.9
    line = fails_with_one_line(
        capsys, "evaluate", "--reference", "dl-l8s2-uv", "--task", "multi", store
    )
    assert "dl-l8s2-uv cannot be scored on --task multi" in line
    line = fails_with_one_line(
        capsys, "tile", L2A_T29UNU, tmp_path / "l2a.zarr", "--labels-from", "dl-l8s2-uv",
        "--bands", ",".join(T29UNU_60M_BANDS),
    )  # fmt: skip
    assert "dl-l8s2-uv reads top-of-atmosphere L1C reflectance" in line


def test_labels_are_cloud_or_clear(peer):
    probs = np.zeros((1, 2, 4, 4), np.float32)
    probs[:, 1] = np.linspace(0, 1, 16).reshape(4, 4)
    probs[:, 0] = 1 - probs[:, 1]
    codes = peer.label_codes(probs)
    assert set(np.unique(codes)) == {LABEL_CLEAR, LABEL_THICK_CLOUD}
    assert (codes == LABEL_THICK_CLOUD).sum() == 8
