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


class TileShapeError(CloudkitError, ValueError):
    """Tile size, overlap or array shape is impossible."""


class StoreError(CloudkitError, OSError):
    """The tile store cannot be created, opened or written."""


class MissingDependencyError(CloudkitError, ImportError):
    """An optional dependency needed by this command is not installed."""


class CheckpointError(CloudkitError, ValueError):
    """A file given as a checkpoint is missing, unreadable or of the wrong kind."""
