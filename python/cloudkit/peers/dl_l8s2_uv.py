"""The DL-L8S2-UV cloud U-Nets (University of Valencia, MIT), run in torch from their own files.

Two Keras 2 networks of López-Puigdollers, Mateo-García and Gómez-Chova (Remote Sensing 13(5)
992, 2021; github.com/IPL-UV/DL-L8S2-UV), trained on the human-labelled Landsat-8 Biome set
and applied to Sentinel-2 by band correspondence: ``landsatbiomeRGBISWIR7.hdf5`` reads B02
B03 B04 B08 B11 B12, ``landsatbiomeRGBI6.hdf5`` B02 B03 B04 B08. Each is a U-Net of about
96k parameters whose input normalisation is its own first layer; it gives a cloud
probability, cloud where it is at least 0.5, and has no shadow class.

The weights are read in place, never downloaded or copied: from the folder named by the
environment variable ``CLOUDKIT_DL_L8S2_UV``, else ``../shared/data/peers/dl-l8s2-uv`` beside
the cloudkit checkout. Their MIT licence (copyright 2021 Image Processing Group, Image
Processing Lab, Universidad de Valencia) is the ``LICENSE`` file that sits with them. The
networks are rebuilt from each file's ``model_config`` by `models/keras_hdf5.py` (h5py, no
TensorFlow); on a real 256 px input they agree with TensorFlow 2.15 to 2.5e-10.

Input is L1C top-of-atmosphere reflectance (DN/10000 after the product's offset) at about
30 m, where the authors run them. Given the pixel size (`evaluate --reference`, `tile
--labels-from`), the input is resampled to 30 m (bilinear, antialiased when made coarser; at
most 8 times finer), run, and the probability resampled back to the input's grid: at 160 m
without it the 6-band network finds a fifth of s2cloudless's cloud on the T19UDP preview,
with it nearly all (cloud F1 0.95 on a 200 px crop). `cloudkit predict` gives no pixel size
to a peer; it reads products at 20 m (:data:`READ_AT`, the grid nearest 30 m that 10, 20 and
60 m band files share), where the networks run as they are.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudkit.errors import MissingDependencyError
from cloudkit.models.card import ModelCard, Score
from cloudkit.predict.blend import blend_weights, window_origins

if TYPE_CHECKING:
    import torch

#: the environment variable naming the folder that holds the two .hdf5 files
ENV = "CLOUDKIT_DL_L8S2_UV"
#: where they are otherwise: the shared samples beside the checkout
DEFAULT_FOLDER = Path(__file__).resolve().parents[3] / ".." / "shared/data/peers/dl-l8s2-uv"
SIX = ("B02", "B03", "B04", "B08", "B11", "B12")
FOUR = ("B02", "B03", "B04", "B08")
#: the file of each band set
FILES = {SIX: "landsatbiomeRGBISWIR7.hdf5", FOUR: "landsatbiomeRGBI6.hdf5"}
#: the source commit of the files
VERSION = "05c91ab"
#: the pixel size the networks work at, in metres
WORKS_AT = 30.0
#: the most a coarse input is upsampled: 240 m pixels are seen at 30 m, 900 m ones at 112 m
MAX_UPSAMPLING = 8
#: the grid `cloudkit predict` reads products at (unless --resolution): near 30 m, and one
#: that 10, 20 and 60 m band files share (30 m is no multiple of 20 m)
READ_AT = 20.0
#: windows the networks run on: what the input is cut into (after any upsampling)
WINDOW = 512
OVERLAP = 32

CARD = ModelCard(
    name="dl-l8s2-uv",
    version=VERSION,
    bands="B02 B03 B04 B08 (+ B11 B12 for its 6-band network), L1C only",
    classes=("clear", "cloud"),
    resolution="30 m (coarser input is upsampled to it, the result averaged back)",
    training_data="the Landsat-8 Biome set (96 scenes in 8 biomes with human cloud labels, "
    "snow/ice, barren and water included), applied to Sentinel-2 by band correspondence",
    licence="MIT",
    source="Image Processing Group, Universidad de Valencia, github.com/IPL-UV/DL-L8S2-UV "
    "(commit 05c91ab; Keras U-Nets of about 96k parameters, rebuilt in torch from the files); "
    "López-Puigdollers et al. 2021, Remote Sensing 13(5) 992",
    install=f"pip install 'cloudkit[peers]' (h5py); the two .hdf5 files and their LICENSE in "
    f"the folder ${ENV} names (default ../shared/data/peers/dl-l8s2-uv)",
    note="MIT, copyright 2021 Image Processing Group, Image Processing Lab, Universidad de "
    "Valencia: the LICENSE beside the weights travels with them; no shadow class",
    # measured with benches/bench_quality.py's sets and scoring (6-band network)
    scores=(
        Score(
            "cloud F1 against s2cloudless",
            0.929,
            "the T19UDP (L1C) preview at 160 m, run resampled to 30 m, 0.29 M pixels",
        ),
        Score(
            "cloud F1 against s2cloudless",
            0.569,
            "the s2cloudless 1.2.2 test arrays, run as given (their pixel size is not known)",
        ),
    ),
)


def weights_folder() -> Path:
    """The folder the weights are read from (``$CLOUDKIT_DL_L8S2_UV`` or the default)."""
    named = os.environ.get(ENV)
    return Path(named).expanduser() if named else DEFAULT_FOLDER.resolve()


def weights_path(bands: Sequence[str]) -> Path:
    """The file of the network reading ``bands``; MissingDependencyError in one line when it
    is not there."""
    folder = weights_folder()
    path = folder / FILES[tuple(bands)]
    if not path.is_file():
        raise MissingDependencyError(
            f"the peer model dl-l8s2-uv needs {path.name}, not found in {folder}; set {ENV} "
            "to the folder holding the DL-L8S2-UV files (github.com/IPL-UV/DL-L8S2-UV, MIT, "
            "with their LICENSE)"
        )
    return path


def installed() -> bool:
    """h5py is importable and both weight files are where they are looked for."""
    if importlib.util.find_spec("h5py") is None:
        return False
    return all((weights_folder() / name).is_file() for name in FILES.values())


def require() -> None:
    if importlib.util.find_spec("h5py") is None:
        raise MissingDependencyError(
            "the peer model dl-l8s2-uv reads its Keras files with h5py, which is not "
            "installed; pip install 'cloudkit[peers]'"
        )
    for bands in FILES:
        weights_path(bands)


@cache
def _network(path: Path):
    from cloudkit.peers.keras_hdf5 import load_keras_model

    return load_keras_model(path)


def network(bands: Sequence[str]):
    """The torch network reading ``bands`` (SIX or FOUR), in eval mode; built once."""
    return _network(weights_path(bands))


def rescaling(resolution: float | None) -> float:
    """How many times finer (above 1) or coarser (below 1) the input is made to bring
    ``resolution`` metres to 30 m: 1 when it is unknown or within 10 % of 30 m; at most
    :data:`MAX_UPSAMPLING` times finer (upsampling adds pixels, not the detail of 30 m)."""
    if resolution is None or not resolution > 0 or abs(resolution / WORKS_AT - 1) <= 0.1:
        return 1.0
    return min(float(MAX_UPSAMPLING), resolution / WORKS_AT)


def cloud_probability(
    refl: np.ndarray, bands: Sequence[str], *, resolution: float | None = None
) -> np.ndarray:
    """``(N, C, H, W)`` reflectance of ``bands`` (NaN where no data) at ``resolution`` metres
    (None: taken as about 30 m) -> float32 ``(N, H, W)`` cloud probability on the same grid.

    Resampled to 30 m (bilinear; antialiased when made coarser), run, and the probability
    resampled back to the input's grid the same way."""
    import torch  # here, not above: `tile` reads this module's facts and starts without torch

    net = network(bands)
    scale = rescaling(resolution)
    x = torch.from_numpy(np.nan_to_num(np.asarray(refl, np.float32), nan=0.0))
    n, _, h, w = x.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = np.empty((n, h, w), np.float32)
    with torch.inference_mode():
        for i in range(n):
            item = _resize(x[i : i + 1], size)
            out[i] = _resize(_windows(net, item), (h, w))[0, 0].numpy()
    return out


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812 (torch's own name; loaded with torch above)

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    finer = size[0] > x.shape[-2]
    return F.interpolate(x, size=size, mode="bilinear", antialias=not finer)


def _windows(net, x: torch.Tensor) -> torch.Tensor:
    """``net`` over ``(1, C, H, W)`` in overlapping windows of :data:`WINDOW`, blended as
    predict blends; sizes padded (reflect, else edge) to the network's multiple."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    h, w = x.shape[-2:]
    size = min(WINDOW, _ceil_to(max(h, w), net.multiple))
    ph, pw = max(size, _ceil_to(h, net.multiple)) - h, max(size, _ceil_to(w, net.multiple)) - w
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    height, width = x.shape[-2:]
    overlap = min(OVERLAP, size // 2)
    weights = torch.from_numpy(blend_weights(size, overlap))
    total = torch.zeros((1, 1, height, width))
    weight = torch.zeros((height, width))
    for i in window_origins(height, size, overlap):
        for j in window_origins(width, size, overlap):
            prob = net(x[:, :, i : i + size, j : j + size])
            total[:, :, i : i + size, j : j + size] += prob * weights
            weight[i : i + size, j : j + size] += weights
    return (total / weight)[:, :, :h, :w]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
