"""`models/keras_hdf5.py`: the DL-L8S2-UV Keras files rebuilt in torch, checked against
TensorFlow's own output and against layers computed by hand with numpy.

The TensorFlow figures were measured once with tensorflow-cpu 2.15.1 in a separate
environment (the file's graph with its 32 px input made any size, the file's weights) on the
T19UDP preview crop below; TensorFlow is not needed here. Skipped with a reason without h5py
or ../shared/data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from cloudkit.errors import CheckpointError
from cloudkit.peers.keras_hdf5 import build_graph, load_keras_model
from tests.helpers.shared_data import DATA, STACK_13BAND

pytest.importorskip("h5py", reason="h5py is not installed (pip install 'cloudkit[peers]')")

FOLDER = DATA / "peers" / "dl-l8s2-uv"
SIX = FOLDER / "landsatbiomeRGBISWIR7.hdf5"
FOUR = FOLDER / "landsatbiomeRGBI6.hdf5"
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: TensorFlow 2.15.1 on the crop: output mean, and the output at these pixels
PIXELS = [(0, 0), (40, 100), (128, 128), (200, 31), (255, 255)]
TENSORFLOW = {
    SIX.name: (0.1791581, [0.000141609, 1.32039e-06, 0.989905, 9.45309e-12, 0.00294583]),
    FOUR.name: (0.0008116, [0.00112072, 4.05825e-08, 1.21862e-05, 1.18434e-10, 0.00522514]),
}


@pytest.fixture(scope="module")
def crop(shared_data) -> np.ndarray:
    """(6, 256, 256) reflectance B02 B03 B04 B08 B11 B12 of the T19UDP preview (160 m),
    rows and columns 200-456: half cloud."""
    with rasterio.open(STACK_13BAND) as src:
        dn = src.read()
    index = [L1C.index(b) for b in ("B02", "B03", "B04", "B08", "B11", "B12")]
    return dn[index, 200:456, 200:456].astype(np.float32) / 10000.0


def _run(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()


@pytest.mark.parametrize("path", [SIX, FOUR], ids=["six-band", "four-band"])
def test_networks_match_tensorflow(crop, path):
    net = load_keras_model(path)
    assert net.in_channels == (6 if path == SIX else 4)
    assert net.multiple == 4  # two 2x2 poolings
    assert 90_000 < sum(p.numel() for p in net.parameters()) < 100_000
    out = _run(net, crop[: net.in_channels])
    assert out.shape == (1, 256, 256)
    mean, pixels = TENSORFLOW[path.name]
    assert abs(float(out.mean()) - mean) < 1e-5
    np.testing.assert_allclose([out[0, i, j] for i, j in PIXELS], pixels, atol=1e-5, rtol=1e-3)


def test_first_layers_by_hand(crop):
    """The frozen 1x1 normalisation and the first separable convolution (depthwise 3x3 with
    'same' zero padding, then pointwise with bias), from the file's arrays with numpy."""
    import h5py

    net = load_keras_model(SIX)
    x = crop[:, :16, :16]
    with h5py.File(SIX, "r") as f:
        w = f["model_weights"]
        norm_k = w["normalization/normalization/kernel:0"][()]  # (1, 1, 6, 6)
        norm_b = w["normalization/normalization/bias:0"][()]
        dw = w["input_conv_1/input_conv_1/depthwise_kernel:0"][()]  # (3, 3, 6, 1)
        pw = w["input_conv_1/input_conv_1/pointwise_kernel:0"][()]  # (1, 1, 6, 32)
        bias = w["input_conv_1/input_conv_1/bias:0"][()]
    normed = np.einsum("chw,cd->dhw", x, norm_k[0, 0]) + norm_b[:, None, None]
    padded = np.pad(normed, ((0, 0), (1, 1), (1, 1)))
    depth = np.zeros_like(normed)
    for di in range(3):
        for dj in range(3):
            depth += dw[di, dj, :, 0][:, None, None] * padded[:, di : di + 16, dj : dj + 16]
    expected = np.einsum("chw,cd->dhw", depth, pw[0, 0]) + bias[:, None, None]
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x))[None]
        got_norm = net.layers["normalization"](t)
        got = net.layers["input_conv_1"](got_norm)[0].numpy()
    np.testing.assert_allclose(got_norm[0].numpy(), normed, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_batch_norm_keeps_keras_epsilon_and_frozen_layers_stay_frozen(shared_data):
    net = load_keras_model(SIX)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 10 and {m.eps for m in norms} == {1e-3}
    assert not any(p.requires_grad for p in net.layers["normalization"].parameters())
    assert all(p.requires_grad for p in net.layers["input_conv_1"].parameters())


def test_unknown_layers_and_files_are_one_line(tmp_path):
    config = {
        "class_name": "Model",
        "config": {
            "input_layers": [["in", 0, 0]],
            "output_layers": [["dense", 0, 0]],
            "layers": [
                {
                    "class_name": "InputLayer",
                    "name": "in",
                    "config": {"batch_input_shape": [None, 8, 8, 3]},
                },
                {
                    "class_name": "Dense",
                    "name": "dense",
                    "config": {"units": 2},
                    "inbound_nodes": [[["in", 0, 0, {}]]],
                },
            ],
        },
    }
    with pytest.raises(CheckpointError, match=r"m\.hdf5: layer dense \(Dense\)") as err:
        build_graph(json.loads(json.dumps(config)), {}, "m.hdf5")
    assert "\n" not in str(err.value)
    bad = tmp_path / "not.hdf5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(CheckpointError, match="not.hdf5: not a readable HDF5 file"):
        load_keras_model(bad)
