"""`cloudkit predict --model ukis-csmask|s2cloudless`: a peer through cloudkit's own readers,
windows, blending and COG writer, on real products.

The pipeline's mask must be what the peer itself says of the product's reflectance read
straight from its files (the T19UDP band folder: 13 bands at 900 m, baseline 02.05, no offset),
so offsets, band order and no-data reach the peer right. Skipped with a reason when the
``peers`` extra is not installed or ../shared/data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudkit.cli import main
from cloudkit.peers.registry import S2Cloudless, UkisCsmask
from tests.helpers.shared_data import AWS_T19UDP, L2A_T29UNU

T19UDP_ID = AWS_T19UDP.name
T29UNU_ID = L2A_T29UNU.name.removesuffix(".SAFE")


def needs(peer) -> None:
    if not peer.installed():
        pytest.skip(f"{peer.name} is not installed (pip install 'cloudkit[peers]')")


def _predict(capsys, *args) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _band_folder_reflectance(bands) -> tuple[np.ndarray, np.ndarray]:
    """(1, C, H, W) reflectance of the AWS folder straight from its files (DN / 10000), NaN
    where some band has no data; and that validity."""
    dn = np.stack([rasterio.open(AWS_T19UDP / f"{b}.jp2").read(1) for b in bands])
    valid = (dn != 0).all(axis=0)
    refl = dn.astype(np.float32) / 10000.0
    refl[:, ~valid] = np.nan
    return refl[None], valid


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_ukis_csmask_on_the_band_folder_is_the_peer_itself(shared_data, tmp_path, capsys):
    needs(UkisCsmask)
    out = tmp_path / "masks"
    code, stdout, _ = _predict(
        capsys, AWS_T19UDP, "--model", "ukis-csmask", "-o", out, "--probabilities"
    )
    assert code == 0 and f"{T19UDP_ID}_mask.tif" in stdout
    summary = json.loads((out / f"{T19UDP_ID}.json").read_text())
    assert summary["classes"] == {"0": "clear", "1": "cloud", "2": "cloud shadow"}
    assert summary["model"]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert summary["model"]["head"] == f"peer ukis-csmask {UkisCsmask.version()}"
    assert (summary["inference"]["window"], summary["inference"]["overlap"]) == (256, 32)
    peer = UkisCsmask()
    refl, valid = _band_folder_reflectance(peer.SIX)
    # the scene (122 px) fills a corner of one 256 px window; the rest is no data
    window = np.full((1, 6, 256, 256), np.nan, np.float32)
    window[..., :122, :122] = refl
    direct = peer.probabilities(window, peer.SIX, "L1C")[0, :, :122, :122]
    probs = _read(out / f"{T19UDP_ID}_probabilities.tif")
    np.testing.assert_allclose(probs[:, valid], direct[:, valid], atol=2e-3)
    mask = _read(out / f"{T19UDP_ID}_mask.tif")[0]
    assert (mask[~valid] == 255).all()
    assert (mask[valid] == direct.argmax(axis=0)[valid]).mean() > 0.999


def test_s2cloudless_uses_its_own_threshold(shared_data, tmp_path, capsys):
    needs(S2Cloudless)
    out = tmp_path / "masks"
    code, _, _ = _predict(
        capsys, AWS_T19UDP, "--model", "s2cloudless", "-o", out, "--probabilities"
    )
    assert code == 0
    summary = json.loads((out / f"{T19UDP_ID}.json").read_text())
    assert summary["classes"] == {"0": "clear", "1": "cloud"}
    assert (summary["inference"]["window"], summary["inference"]["overlap"]) == (512, 0)
    peer = S2Cloudless()
    refl, valid = _band_folder_reflectance(peer.BANDS)
    direct = peer.probabilities(refl, peer.BANDS, "L1C")[0, 1]
    cloud = _read(out / f"{T19UDP_ID}_probabilities.tif")[1]
    np.testing.assert_allclose(cloud[valid], direct[valid], atol=1e-3)
    mask = _read(out / f"{T19UDP_ID}_mask.tif")[0]
    np.testing.assert_array_equal(mask[valid], (cloud[valid] > 0.4).astype(np.uint8))
    assert 0.1 < mask[valid].mean() < 0.6  # tileInfo.json: 24 % cloud


def test_ukis_csmask_on_l2a_at_60m_takes_b8a(shared_data, tmp_path, capsys):
    """T29UNU has no B08 on disk: B8A stands in, and the L2A network runs."""
    needs(UkisCsmask)
    out = tmp_path / "masks"
    code, _, _ = _predict(capsys, L2A_T29UNU, "-m", "ukis-csmask", "-o", out, "--resolution", 60)
    assert code == 0
    summary = json.loads((out / f"{T29UNU_ID}.json").read_text())
    assert summary["model"]["bands"] == ["B02", "B03", "B04", "B8A", "B11", "B12"]
    assert 40 < summary["cloud_percent"] < 80  # Sen2Cor: about 60 % cloud
    assert summary["shadow_percent"] > 1


def test_s2cloudless_on_l2a_is_one_failure_line(shared_data, tmp_path, capsys):
    needs(S2Cloudless)
    code, _, err = _predict(capsys, L2A_T29UNU, "-m", "s2cloudless", "-o", tmp_path)
    assert code == 1
    (failure,) = [line for line in err.splitlines() if line.strip().startswith("failed:")]
    assert "needs the cirrus band B10" in failure and "is L2A" in failure


def test_product_of_unknown_level_is_refused(shared_data, tmp_path, capsys, make_raster):
    needs(UkisCsmask)
    crop = make_raster(
        tmp_path / "crop.tif", count=4, size=32, descriptions=("B02", "B03", "B04", "B08")
    )
    code, _, err = _predict(capsys, crop, "-m", "ukis-csmask", "-o", tmp_path / "out")
    assert code == 1
    (failure,) = [line for line in err.splitlines() if line.strip().startswith("failed:")]
    assert "cannot tell whether it is L1C or L2A" in failure and "MSIL1C" in failure


def test_gpu_options_are_refused_in_one_line(tmp_path, capsys):
    needs(UkisCsmask)
    code, _, err = _predict(
        capsys, AWS_T19UDP, "-m", "ukis-csmask", "--device", "cuda", "--precision", "bf16"
    )
    assert code == 1
    assert err.strip() == (
        "cloudkit: error: ukis-csmask runs on the CPU in fp32 (its own runtime, not torch); "
        "drop --device cuda, --precision bf16"
    )
