"""Peer models (ukis-csmask, s2cloudless) on real pixels, through cloudkit's inputs.

Skipped with a reason when the ``peers`` extra is not installed or ../shared/data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cloudkit.bands import L1C_BANDS
from cloudkit.data.reflectance import ValueScale, store_reflectance
from cloudkit.data.tasks import TASKS
from cloudkit.errors import BandMismatchError, CloudkitError, MissingDependencyError
from cloudkit.io.scene import LABEL_CLEAR, LABEL_CLOUD_SHADOW, LABEL_THICK_CLOUD
from cloudkit.peers.registry import PEERS, S2Cloudless, UkisCsmask, get_peer
from cloudkit.predict.blend import window_origins


def _needs(peer) -> None:
    if not peer.installed():
        pytest.skip(f"{peer.name} is not installed (pip install 'cloudkit[peers]')")


@pytest.fixture(scope="module")
def t19udp_preview(shared_data):
    """13-band L1C reflectance of the T19UDP preview (160 m), NaN outside the swath."""
    path = shared_data / "derived" / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif"
    with rasterio.open(path) as src:
        dn = src.read()[:, 250:506, 250:506].astype(np.float32)
    refl = dn / 10000.0  # baseline 02.05: no offset
    refl[:, (dn == 0).any(axis=0)] = np.nan
    return refl


@pytest.fixture(scope="module")
def s2cloudless_reference(shared_data):
    path = shared_data / "derived" / "T19UDP_preview_s2cloudless_prob.tif"
    with rasterio.open(path) as src:
        return src.read(1)[250:506, 250:506]


def test_registry_and_unknown_name():
    assert set(PEERS) == {"ukis-csmask", "s2cloudless", "dl-l8s2-uv"}
    with pytest.raises(CloudkitError, match="--model fmask: not a peer model; expected one of"):
        get_peer("fmask")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(UkisCsmask, "package", "no_such_package_for_cloudkit")
    with pytest.raises(MissingDependencyError, match=r"cloudkit\[peers\]"):
        get_peer("ukis-csmask")


def test_band_selection():
    ukis = UkisCsmask()
    assert ukis.bands_for(L1C_BANDS, "L1C") == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert ukis.bands_for(("B02", "B03", "B04", "B08"), "L2A") == ("B02", "B03", "B04", "B08")
    # T29UNU at 60 m: no B08, B8A stands in
    assert ukis.bands_for(("B02", "B03", "B04", "B8A", "B11", "B12"), "L2A")[3] == "B8A"
    with pytest.raises(BandMismatchError, match="lacks B08"):
        ukis.bands_for(("B02", "B03", "B04"), "L1C")
    s2c = S2Cloudless()
    assert s2c.bands_for(L1C_BANDS, "L1C") == S2Cloudless.BANDS
    with pytest.raises(BandMismatchError, match="L1C"):
        s2c.bands_for(L1C_BANDS, "L2A")
    with pytest.raises(BandMismatchError, match="lacks B10"):
        s2c.bands_for([b for b in L1C_BANDS if b != "B10"], "L1C")


def test_s2cloudless_matches_its_own_output(t19udp_preview, s2cloudless_reference):
    """Run on cloudkit's reflectance, s2cloudless reproduces the probabilities it gave on the
    same pixels when run by itself (the derived file)."""
    peer = S2Cloudless()
    _needs(peer)
    bands = peer.bands_for(L1C_BANDS, "L1C")
    refl = t19udp_preview[[L1C_BANDS.index(b) for b in bands]][None]
    probs = peer.probabilities(refl, bands, "L1C")
    assert probs.shape == (1, 2, 256, 256)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    valid = np.isfinite(t19udp_preview).all(axis=0) & np.isfinite(s2cloudless_reference)
    np.testing.assert_allclose(probs[0, 1][valid], s2cloudless_reference[valid], atol=1e-3)
    assert peer.codes == (LABEL_CLEAR, LABEL_THICK_CLOUD)


def test_ukis_csmask_agrees_with_s2cloudless_on_clouds(t19udp_preview, s2cloudless_reference):
    """Two independent detectors on the same real cumulus field: ukis-csmask's cloud class
    overlaps s2cloudless's cloud mask far better than chance, and windows of other sizes
    than its 256 px are handled."""
    peer = UkisCsmask()
    _needs(peer)
    bands = peer.bands_for(L1C_BANDS, "L1C")
    refl = t19udp_preview[[L1C_BANDS.index(b) for b in bands]][None]
    probs = peer.probabilities(refl, bands, "L1C")
    assert probs.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    classes = probs[0].argmax(axis=0)
    valid = np.isfinite(t19udp_preview).all(axis=0)
    theirs = (s2cloudless_reference > 0.4) & valid
    ours = (classes == 1) & valid
    iou = (theirs & ours).sum() / max((theirs | ours).sum(), 1)
    assert theirs.sum() > 500
    assert iou > 0.4
    wide = np.concatenate([refl, refl[..., :44]], axis=-1)[:, :, :200]  # 200 x 300 px
    odd = peer.probabilities(wide, bands, "L1C")
    assert odd.shape == (1, 3, 200, 300)
    # wider than a window: overlapping windows; the first one's own pixels are its output
    wider = np.concatenate([refl, refl, refl[..., :88]], axis=-1)  # 256 x 600: origins 0 172 344
    blended = peer.probabilities(wider, bands, "L1C")
    np.testing.assert_allclose(blended[..., :172], probs[..., :172], atol=1e-6)


def test_tasks_a_peer_can_be_scored_on():
    ukis, s2c = UkisCsmask(), S2Cloudless()
    for name in ("cloud", "shadow", "joint"):
        ukis.check_task(TASKS[name])
    with pytest.raises(CloudkitError, match="calls thin cloud thick cloud; its tasks: cloud, "):
        ukis.check_task(TASKS["multi"])
    s2c.check_task(TASKS["cloud"])
    for name in ("shadow", "joint", "multi"):
        with pytest.raises(CloudkitError, match=r"s2cloudless cannot be scored .*tasks: cloud$"):
            s2c.check_task(TASKS[name])


def test_label_codes_follow_each_peers_rule():
    probs = np.array([0.7, 0.55, 0.35, 0.2], np.float32).reshape(1, 1, 2, 2)
    s2c = S2Cloudless().label_codes(np.concatenate([1 - probs, probs], axis=1))
    # s2cloudless: cloud above 0.4, not above 0.5
    assert s2c.tolist() == [[[LABEL_THICK_CLOUD, LABEL_THICK_CLOUD], [LABEL_CLEAR, LABEL_CLEAR]]]
    three = np.zeros((1, 3, 1, 3), np.float32)
    three[0, [0, 1, 2], 0, [0, 1, 2]] = 1.0
    assert UkisCsmask().label_codes(three).tolist() == [
        [[LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW]]
    ]


def test_label_kind_names_version_and_licence():
    assert S2Cloudless.label_kind().startswith("teacher:s2cloudless ")
    assert S2Cloudless.label_kind().endswith(", CC BY-SA 4.0")
    assert UkisCsmask.label_kind().endswith(", Apache-2.0")


def test_window_origins_overlap_and_reach_the_end():
    assert window_origins(256, 256, 32) == [0]
    assert window_origins(600, 256, 32) == [0, 172, 344]
    for length in range(257, 1200, 37):
        origins = window_origins(length, 256, 32)
        assert origins[0] == 0 and origins[-1] == length - 256
        assert all(b - a <= 256 - 32 for a, b in zip(origins, origins[1:], strict=False))


def test_reflectance_for_peers_matches_the_models():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 12000, size=(2, 3, 8, 8)).astype(np.uint16)
    valid = (rng.random((2, 1, 8, 8)) > 0.2).astype(np.uint8)
    scale = ValueScale.of_store_convention(3)
    refl = scale.reflectance_or_nan(values, valid)
    import torch

    ref = store_reflectance(torch.from_numpy(values), torch.from_numpy(valid), *scale.tensors())
    missing = (values == 0) | (valid == 0)
    assert np.isnan(refl[missing]).all()
    np.testing.assert_array_equal(refl[~missing], ref.numpy()[~missing])
