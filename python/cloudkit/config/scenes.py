"""The scene pipeline's options (`cloudkit tile`, `cloudkit predict`), checked on
construction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cloudkit.config.choices import Decode, Shadows
from cloudkit.errors import OptionError, TileShapeError
from cloudkit.geometry.sun import SunAngles


def default_threads() -> int:
    """Decoding lanes and threads without --workers: CLOUDKIT_NUM_THREADS, else every core
    this process may run on."""
    env = os.environ.get("CLOUDKIT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True, kw_only=True)
class SceneOptions:
    """Options of every command that streams scenes; checked on construction."""

    resolution: float | None = None  # target pixel size; default: the finest band file's
    workers: int | None = None  # decoding lanes and kernel threads; default: default_threads()
    decode: Decode = Decode.full

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers {self.workers} must be at least 1")
        cores = len(os.sched_getaffinity(0))
        if self.workers is not None and self.workers > 4 * cores:  # beyond: a thread storm
            raise OptionError(
                f"--workers {self.workers}: more than 4 decoding lanes per core ({cores} cores "
                f"here); give at most {4 * cores}"
            )

    @property
    def threads(self) -> int:
        return self.workers or default_threads()


@dataclass(frozen=True, kw_only=True)
class TileOptions(SceneOptions):
    """`cloudkit tile`: one field per CLI option."""

    bands: tuple[str, ...] | None = None  # ESA names; default: every band of the scene
    tile_size: int = 384
    overlap: int = 0
    scl_labels: bool = False  # store L2A's scene classification as labels
    labels_from: str | None = None  # a peer model whose classes become the labels

    def validate(self) -> None:
        super().validate()
        if self.scl_labels and self.labels_from and Path(self.labels_from).is_dir():
            raise OptionError(
                f"--labels-from {self.labels_from} and --scl-labels both say where the labels "
                "come from; pass one of them (SCL votes with peer models only)"
            )
        t, o = self.tile_size, self.overlap
        if t < 16 or t > 4096:
            raise TileShapeError(
                f"--tile-size {t} is out of range; expected 16..4096 (384 is the default)"
            )
        if o < 0 or o >= t:
            raise TileShapeError(
                f"--overlap {o} must be at least 0 and smaller than --tile-size {t}"
            )


#: The blend only has to cover the margin where a window's border shows in its predictions;
#: more overlap buys nothing visible and costs windows (384 px windows overlapping by 64 px
#: run 1.5x the scene's pixels through the network, by 32 px 1.25x).
MAX_DEFAULT_OVERLAP = 32


def default_overlap(window: int) -> int:
    """A sixth of the window, in whole 8 px steps, at most MAX_DEFAULT_OVERLAP."""
    return min(MAX_DEFAULT_OVERLAP, (window // 6) // 8 * 8)


@dataclass(frozen=True, kw_only=True)
class PredictOptions(SceneOptions):
    """`cloudkit predict`: one field per CLI option (the model and device aside)."""

    # a mask at 20 m does not need the 10 m bands' finest wavelet level (README: Performance)
    decode: Decode = Decode.reduced
    window: int | None = None  # default: the checkpoint's training tile size
    overlap: int | None = None  # default: default_overlap(window)
    batch_size: int = 8
    probabilities: bool = False
    quicklook: bool = False
    overwrite: bool = False
    shadows: Shadows = Shadows.geometric
    sun_angles: SunAngles | None = None  # --sun-angles: for every scene, instead of its own

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1:
            raise OptionError(f"--batch-size {self.batch_size} must be at least 1")
        if self.window is not None and not 32 <= self.window <= 4096:
            raise TileShapeError(f"--window {self.window} is out of range; expected 32..4096")
        if self.overlap is not None and self.overlap < 0:
            raise TileShapeError(f"--overlap {self.overlap} must be at least 0")

    def window_for(self, tile_size: int, overlap: int | None = None) -> tuple[int, int]:
        """Window edge and overlap for a model trained on ``tile_size`` tiles (made for
        windows overlapping by ``overlap``, when it says)."""
        window = self.window or tile_size
        if self.overlap is not None:
            overlap = self.overlap
        elif overlap is None:
            overlap = default_overlap(window)
        if 2 * overlap > window:
            raise TileShapeError(
                f"--overlap {overlap} must be at most half of the window ({window} px); the "
                "blending ramps of two neighbours may not cross"
            )
        return window, overlap
