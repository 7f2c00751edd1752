"""cloudkit's exceptions.

Every error a user can cause derives from :class:`CloudkitError` and also from the builtin
that fits, so ``except FileNotFoundError`` keeps working for callers that do not know cloudkit.
The CLI prints these as one line (no traceback) and exits with code 1.
"""

from __future__ import annotations


class CloudkitError(Exception):
    """Root of every error cloudkit raises on purpose."""


class SceneNotFoundError(CloudkitError, FileNotFoundError):
    """A path given as a scene or product does not exist."""


class InvalidSceneError(CloudkitError, ValueError):
    """A product or dataset is malformed: missing band, unreadable raster, bad metadata."""


class UnknownLayoutError(InvalidSceneError):
    """A path exists but matches none of the layouts cloudkit reads."""


class BandMismatchError(CloudkitError, ValueError):
    """Bands of the data do not match what the store or checkpoint expects."""


class OptionError(CloudkitError, ValueError):
    """An option's value is invalid, contradicts another option, or asks more of the data
    than it holds; the message names the option to change."""


class TileShapeError(CloudkitError, ValueError):
    """Tile, window or crop geometry is impossible: size, overlap, or an array's shape."""


class StoreError(CloudkitError, OSError):
    """The tile store cannot be created, opened or written, or lacks what a command reads."""


class MissingDependencyError(CloudkitError, ImportError):
    """An optional dependency needed by this command is not installed."""


class CheckpointError(CloudkitError, ValueError):
    """A checkpoint is missing, unreadable, of the wrong kind, or holds a model state cloudkit
    cannot rebuild; or a run folder's checkpoint stands in the way of a new run."""


class OutputError(CloudkitError, OSError):
    """An output folder or file (other than a tile store) cannot be written."""


class DeviceError(CloudkitError, RuntimeError):
    """The device or the torchrun process layout a run asks for is not available here."""


class TrainingDivergedError(CloudkitError, FloatingPointError):
    """The loss or the weights became NaN or infinite; training stopped before saving them."""


class ScenesFailedError(CloudkitError, RuntimeError):
    """Some scenes of a run failed (each reported as it failed); the others were written."""
