"""`cloudkit evaluate --reference ukis-csmask|s2cloudless`: a peer scored on a store's labels.

Skipped with a reason when the ``peers`` extra is not installed or ../shared/data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudkit.cli import main
from cloudkit.errors import BandMismatchError, CloudkitError
from cloudkit.eval.reference import evaluate_reference
from cloudkit.peers.registry import S2Cloudless, UkisCsmask
from cloudkit.peers.scoring import evaluate_peer
from tests.helpers.shared_data import L2A_T29UNU, T29UNU_60M_BANDS

#: tiles of the 384 px store holding cloud, clear ground and cloud shadow
MIXED = [2, 4, 8, 14]


def needs(peer) -> None:
    if not peer.installed():
        pytest.skip(f"{peer.name} is not installed (pip install 'cloudkit[peers]')")


def t29unu_store(path: Path, bands=T29UNU_60M_BANDS, tile_size: int = 384) -> Path:
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    options = TileOptions(resolution=60, bands=bands, tile_size=tile_size, scl_labels=True)
    tile_paths([L2A_T29UNU], path, options)
    return path


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory) -> Path:
    """T29UNU (L2A) at 60 m in 384 px tiles with its SCL as labels."""
    return t29unu_store(tmp_path_factory.mktemp("peer-eval") / "t29unu.zarr")


def test_ukis_csmask_agrees_with_sen2cor(store):
    """On real L2A pixels ukis-csmask's L2A network and Sen2Cor's SCL mostly agree."""
    needs(UkisCsmask)
    cloud = evaluate_peer([store], peer="ukis-csmask", task="cloud", tiles=MIXED)
    assert cloud["tiles"] == len(MIXED)
    assert cloud["reference"] == f"ukis-csmask {UkisCsmask.version()}"
    assert cloud["licence"] == "Apache-2.0"
    assert cloud["per_class"]["cloud"]["f1"] > 0.85
    assert cloud["per_class"]["clear"]["support"] > 0
    shadow = evaluate_reference([store], reference="ukis-csmask", task="shadow", tiles=MIXED)
    assert shadow["pixels"] == cloud["pixels"]  # the same pixels count, whatever the task
    assert shadow["per_class"]["shadow"]["support"] > 0
    assert shadow["per_class"]["shadow"]["f1"] > 0.3


def test_tasks_the_peer_cannot_tell_are_refused(store):
    needs(UkisCsmask)
    needs(S2Cloudless)
    with pytest.raises(CloudkitError, match="ukis-csmask cannot be scored on --task multi"):
        evaluate_peer([store], peer="ukis-csmask", task="multi")
    with pytest.raises(CloudkitError, match="s2cloudless cannot be scored on --task shadow"):
        evaluate_peer([store], peer="s2cloudless", task="shadow")
    with pytest.raises(CloudkitError, match="--threshold applies to mask rasters"):
        evaluate_reference([store], reference="s2cloudless", task="cloud", threshold=0.3)


def test_s2cloudless_refuses_l2a(store):
    needs(S2Cloudless)
    with pytest.raises(BandMismatchError, match=r"needs the cirrus band B10.* is L2A"):
        evaluate_peer([store], peer="s2cloudless", task="cloud")


@pytest.mark.shared_data
def test_store_without_the_peers_bands(tmp_path):
    needs(UkisCsmask)
    rgb = t29unu_store(tmp_path / "rgb.zarr", bands=("B02", "B03", "B04"), tile_size=128)
    with pytest.raises(BandMismatchError, match=r"needs at least B02,B03,B04,B08 .* lacks B08"):
        evaluate_peer([rgb], peer="ukis-csmask", task="cloud")


def test_cli_table_json_and_one_line_errors(store, tmp_path, capsys):
    needs(UkisCsmask)
    out = tmp_path / "ukis.json"
    args = ["evaluate", "--reference", "ukis-csmask", str(store), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "reference ukis-csmask" in printed and "task cloud" in printed
    result = json.loads(out.read_text())
    assert result["task"] == "cloud" and result["tiles"] > len(MIXED)
    assert main(["evaluate", "--reference", "ukis-csmask", "--task", "multi", str(store)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cloudkit: error: ukis-csmask cannot be scored") and err.count("\n") == 1
