"""Every model and teacher checks its own domain: a peer run on pixels far coarser than its
card says it was made for (ukis-csmask, about 30 m, on the 900 m AWS tile reported 0 % cloud
where s2cloudless finds 31 %) warns in predict, as the default model does, and refuses to
label a tile store (labels are stored as truth, with no warning to read)."""

from __future__ import annotations

import json

import pytest

from cloudkit.peers.registry import COARSEST, PEERS
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.shared_data import AWS_T19UDP


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_knows_the_pixels_it_was_made_for(name):
    peer = PEERS[name]
    assert peer.made_for is not None and f"{peer.made_for:g} m" in peer.card.resolution
    assert peer.out_of_domain(peer.made_for * COARSEST) is None
    problem = peer.out_of_domain(peer.made_for * COARSEST * 1.5)
    assert problem is not None and f"than the {peer.made_for:g} m {name} was made for" in problem


@pytest.mark.shared_data
def test_a_peer_far_outside_its_domain_warns_and_teaches_nothing(tmp_path, capsys):
    pytest.importorskip("ukis_csmask", reason="the peers extra is not installed")
    code, out, err = run(capsys, "predict", AWS_T19UDP, "--model", "ukis-csmask", "-o", tmp_path)
    assert code == 0, err
    (summary,) = tmp_path.glob("*.json")
    (warning,) = json.loads(summary.read_text())["warnings"]
    assert (
        "read at 900 m, more than 8x coarser than the 30 m pixels this model was trained on"
        in warning
    )
    assert "read at 900 m" in out + err  # said where the run is watched, not only in the JSON
    store = tmp_path / "t.zarr"
    line = fails_with_one_line(capsys, "tile", AWS_T19UDP, store, "--labels-from", "ukis-csmask")
    assert "--labels-from ukis-csmask: read at 900 m, more than 8x coarser than the 30 m" in line
    assert not (store / "images" / "c").exists()  # no scene committed
