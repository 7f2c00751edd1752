"""Write one scene's predictions: mask COG, optional probability COG and quicklook, JSON summary.

`cloudkit predict` hands :class:`MaskWriter` the predicted rows strip by strip, top to bottom.
Each strip goes straight into uncompressed temporary GeoTIFFs on disk, so memory stays bounded
for a full 10980 x 10980 scene; only every q-th row and column is kept for the quicklook.
:meth:`MaskWriter.finish` turns the temporaries into Cloud-Optimised GeoTIFFs, moves every file
to its final name with ``os.replace`` and writes the JSON summary last: a scene is complete
exactly when its summary exists (:func:`is_complete`).

Temporary files are hidden and named ``.<scene>_<kind>.<ext>.partial`` in the output folder,
so a killed run never leaves a file under a final name; the next writer of that scene deletes
them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from cloudkit.errors import OutputError
from cloudkit.files.disk import disk_full
from cloudkit.files.jsonfile import write_json
from cloudkit.files.locks import FileLock
from cloudkit.io.labels import CLASSES_TAG, NODATA_TAG
from cloudkit.plots import quicklook_figure, save_png
from cloudkit.predict.paths import OutputPaths, is_complete, output_paths
from cloudkit.predict.quicklook import (
    OTHER_COLOUR,
    QUICKLOOK_GREY,
    QUICKLOOK_SIZE,
    class_colour,
    class_overlay,
    legend,
    true_colour,
)
from cloudkit.predict.seal import seal

__all__ = ["MaskWriter", "OutputPaths", "is_complete", "output_paths"]

#: class code of pixels without data, in the mask and in its palette
NODATA = 255
_COG_COMMON = {"COMPRESS": "DEFLATE", "BLOCKSIZE": 512}
# mode: overview pixels are the majority class code (nearest keeps one fixed pixel per block)
_MASK_COG = {**_COG_COMMON, "OVERVIEW_RESAMPLING": "MODE"}
_PROBABILITY_COG = {**_COG_COMMON, "OVERVIEW_RESAMPLING": "AVERAGE", "PREDICTOR": 3}
# nothing may land in a side-car .aux.xml: it would stay behind under a partial name
_GDAL_ENV = {"GDAL_PAM_ENABLED": "NO"}


#: (kind, extension) of every temporary: streamed GTiff, COG being written, quicklook
_PARTIALS = (
    ("mask", "tif"),
    ("mask", "cog"),
    ("probabilities", "tif"),
    ("probabilities", "cog"),
    ("quicklook", "png"),
    ("fallback", "u8"),  # the shadow check's other class of each pixel (raw bytes)
)


def _partial_names(scene_id: str) -> list[str]:
    """Every temporary name a writer of ``scene_id`` may create (GDAL may add suffixes)."""
    names = [f".{scene_id}_{kind}.{ext}.partial" for kind, ext in _PARTIALS]
    return [*names, f".{scene_id}.json.partial"]


def _remove_partials(out_dir: Path, scene_id: str) -> None:
    """Delete this scene's temporaries and GDAL's side files of them (.ovr.tmp, .aux.xml)."""
    for name in _partial_names(scene_id):
        for path in glob.glob(glob.escape(str(out_dir / name)) + "*"):
            Path(path).unlink(missing_ok=True)


def claim_scene(out_dir: Path, scene_id: str) -> FileLock:
    """An exclusive claim on one scene's outputs in a folder, so that two runs never write
    (or clean up) the same files at once; its hidden lock file goes with the claim."""
    lock = FileLock.take(out_dir / f".{scene_id}.lock", remove=True)
    if lock is None:
        raise OutputError(
            f"{out_dir / scene_id}: another run is writing this scene's outputs in "
            f"{out_dir} now; wait for it, or give another output folder"
        )
    return lock


class MaskWriter:
    """Stream a scene's predicted rows into its output files; see the module docstring.

    Use it as a context manager: leaving the block without :meth:`finish` (an exception, a
    missing call) deletes every temporary file and leaves existing final files untouched.
    """

    def __init__(
        self,
        out_dir: Path,
        scene_id: str,
        *,
        crs: CRS,
        transform: Affine,
        height: int,
        width: int,
        classes: Sequence[str],
        probabilities: bool = False,
        quicklook: bool = False,
        threads: int | None = None,
        fallback: bool = False,
    ) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"scene size must be positive, got {height} x {width}")
        if not 1 <= len(classes) < NODATA:
            raise ValueError(f"expected 1 to {NODATA - 1} class names, got {len(classes)}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.out_dir = Path(out_dir)
        self.scene_id = scene_id
        self.paths = output_paths(self.out_dir, scene_id)
        self.height, self.width = int(height), int(width)
        self.classes = tuple(str(c) for c in classes)
        self._crs, self._transform = crs, transform
        self._threads = "ALL_CPUS" if threads is None else str(threads)
        self._next_row = 0
        self._closed = False
        self._moves: list[tuple[Path, Path]] | None = None  # set by build()
        # rasterio's datasets (untyped), opened below: the mask's always, once constructed
        self._mask_ds: Any = None
        self._prob_ds: Any = None
        # quicklook: keep every q-th row and column, so the long side is <= QUICKLOOK_SIZE
        self._q = math.ceil(max(self.height, self.width) / QUICKLOOK_SIZE) if quicklook else 0
        self._ql_classes: list[np.ndarray] = []
        self._ql_background: list[np.ndarray] = []
        self._class_counts = np.zeros(NODATA + 1, np.int64)  # of every pixel, for the legend
        self._lock: FileLock | None = None
        # a second class per pixel, on disk beside the mask: what rewrite_classes may use
        self._fallback: np.memmap | None = None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock = claim_scene(self.out_dir, scene_id)
            _remove_partials(self.out_dir, scene_id)
            self._mask_ds = self._open_mask()
            if probabilities:
                self._prob_ds = self._open_probabilities()
            if fallback:
                self._fallback = np.lib.format.open_memmap(
                    self._partial("fallback", "u8"), "w+", np.uint8, (self.height, self.width)
                )
        except OutputError:
            self.abort()
            raise
        except OSError as err:  # RasterioIOError is an OSError too
            self.abort()
            raise self._cannot_write(err) from None

    # -- temporaries ------------------------------------------------------------------------

    def _cannot_write(self, err: OSError) -> OutputError:
        reason = err.strerror or " ".join(str(err).split())
        if "previous exception" in reason or not reason:  # GDAL's write errors say no more
            reason = "no space left on device" if disk_full(self.out_dir) else "a write failed"
        return OutputError(
            f"{self.out_dir}: cannot write predictions of {self.scene_id} here ({reason}); "
            "nothing of it was kept: free space or choose a writable output folder"
        )

    def _partial(self, kind: str, ext: str) -> Path:
        return self.out_dir / f".{self.scene_id}_{kind}.{ext}.partial"

    def _profile(self, dtype: str, count: int, **extra) -> dict:
        # striped and uncompressed: any strip height writes straight through to disk
        return {
            "driver": "GTiff",
            "dtype": dtype,
            "count": count,
            "height": self.height,
            "width": self.width,
            "crs": self._crs,
            "transform": self._transform,
            **extra,
        }

    def _open_mask(self):
        ds = rasterio.open(
            self._partial("mask", "tif"), "w", **self._profile("uint8", 1, nodata=NODATA)
        )
        ds.set_band_description(1, "classes")
        names = {str(code): name for code, name in enumerate(self.classes)}
        ds.update_tags(**{CLASSES_TAG: json.dumps(names), NODATA_TAG: str(NODATA)})
        palette = {
            code: (*(class_colour(name) or OTHER_COLOUR), 255)
            for code, name in enumerate(self.classes)
        }
        palette[NODATA] = (0, 0, 0, 0)
        ds.write_colormap(1, palette)
        return ds

    def _open_probabilities(self):
        k = len(self.classes)
        ds = rasterio.open(
            self._partial("probabilities", "tif"),
            "w",
            **self._profile("float32", k, nodata=float("nan")),
        )
        ds.descriptions = self.classes
        return ds

    # -- streaming --------------------------------------------------------------------------

    def write_rows(
        self,
        row0: int,
        classes: np.ndarray,
        probabilities: np.ndarray | None = None,
        rgb: np.ndarray | None = None,
        fallback: np.ndarray | None = None,
    ) -> None:
        """Write rows ``row0 .. row0 + len(classes)`` of the scene.

        ``classes``: (rows, width) class codes, 255 at no-data; ``probabilities``: float32
        (K, rows, width), NaN at no-data, required when the writer was made with
        ``probabilities=True``; ``rgb``: float32 reflectance (3, rows, width) of B04, B03,
        B02 for the quicklook, or None; ``fallback``: (rows, width) class codes kept for
        :meth:`rewrite_classes`, required when the writer was made with ``fallback=True``.
        Strips must follow each other without gap or overlap.
        """
        self._check_open()
        classes = self._check_classes(classes, row0)
        rows = classes.shape[0]
        window = Window(0, row0, self.width, rows)
        if self._prob_ds is not None:
            if probabilities is None:
                raise ValueError("this writer stores probabilities: pass them with every strip")
            probabilities = self._check_stack(
                probabilities, len(self.classes), rows, "probabilities"
            )
        if rgb is not None:
            rgb = self._check_stack(rgb, 3, rows, "rgb")
        if self._fallback is not None and fallback is None:
            raise ValueError("this writer keeps fallback classes: pass them with every strip")
        try:
            self._mask_ds.write(classes, 1, window=window)
            if self._prob_ds is not None:
                self._prob_ds.write(probabilities, window=window)
            if self._fallback is not None:
                assert fallback is not None  # refused above
                self._fallback[row0 : row0 + rows] = self._check_classes(fallback, row0)
        except OSError as err:  # a full disk, a folder gone read-only
            error = self._cannot_write(err)  # before the partial files free their space
            self.abort()
            raise error from None
        if self._q:
            self._keep_quicklook_background(row0, classes.shape[0], rgb)
        self._keep_class_rows(row0, classes)
        self._next_row = row0 + rows

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"writer of {self.scene_id} is already finished or aborted")

    def _check_classes(self, classes: np.ndarray, row0: int) -> np.ndarray:
        classes = np.asarray(classes)
        if classes.ndim != 2 or classes.shape[1] != self.width:
            raise ValueError(f"classes must be (rows, {self.width}), got {classes.shape}")
        if not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"classes must be integer class codes, got {classes.dtype}")
        if row0 != self._next_row:
            raise ValueError(
                f"rows must follow on: expected a strip starting at row {self._next_row}, "
                f"got row {row0}"
            )
        if row0 + classes.shape[0] > self.height:
            raise ValueError(
                f"rows {row0}..{row0 + classes.shape[0]} run past the scene height {self.height}"
            )
        bad = (classes >= len(self.classes)) & (classes != NODATA) | (classes < 0)
        if bad.any():
            raise ValueError(
                f"class codes must be 0..{len(self.classes) - 1} or {NODATA} (no data), "
                f"got {classes[bad][0]}"
            )
        return classes.astype(np.uint8, copy=False)

    def _check_stack(self, array: np.ndarray, bands: int, rows: int, what: str) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        if array.shape != (bands, rows, self.width):
            raise ValueError(f"{what} must be ({bands}, {rows}, {self.width}), got {array.shape}")
        return array

    def _keep_class_rows(self, row0: int, classes: np.ndarray) -> None:
        """Counts for the legend and every q-th row and column for the quicklook."""
        if not self._q:
            return
        q = self._q
        self._class_counts += np.bincount(classes.ravel(), minlength=NODATA + 1)
        first = -row0 % q  # first row of this strip that is a multiple of q
        cls = classes[first::q, ::q]
        if cls.shape[0]:
            self._ql_classes.append(cls.copy())

    def _keep_quicklook_background(self, row0: int, rows: int, rgb: np.ndarray | None):
        q = self._q
        first = -row0 % q
        kept = len(range(first, rows, q))
        if kept == 0:
            return
        if rgb is None:
            width = len(range(0, self.width, q))
            self._ql_background.append(np.full((3, kept, width), QUICKLOOK_GREY, np.uint8))
        else:
            self._ql_background.append(true_colour(rgb[:, first::q, ::q]))

    def rewrite_classes(self, change, rows: int = 512) -> None:
        """After the last row, before :meth:`build`: pass every strip of the mask (its row,
        its classes and its fallback classes) through ``change`` and keep what it returns."""
        self._check_open()
        if self._next_row != self.height:
            raise ValueError(f"rows of {self.scene_id} are still to come; rewrite after the last")
        if self._fallback is None:
            raise ValueError("this writer keeps no fallback classes to rewrite with")
        self._class_counts[:] = 0
        self._ql_classes = []
        with self._aborting():
            self._mask_ds.close()
            with rasterio.Env(**_GDAL_ENV), rasterio.open(self._partial("mask", "tif"), "r+") as ds:
                for row0 in range(0, self.height, rows):
                    n = min(rows, self.height - row0)
                    window = Window(0, row0, self.width, n)
                    classes = ds.read(1, window=window)
                    changed = change(row0, classes, np.asarray(self._fallback[row0 : row0 + n]))
                    if changed is not classes:
                        ds.write(self._check_classes_at(changed, n), 1, window=window)
                    self._keep_class_rows(row0, changed)

    @contextlib.contextmanager
    def _aborting(self) -> Iterator[None]:
        """Any failure inside deletes every temporary of the scene; a failed write (a full
        disk, a folder gone read-only) becomes one OutputError."""
        try:
            yield
        except OSError as err:
            error = self._cannot_write(err)
            self.abort()
            raise error from None
        except BaseException:
            self.abort()
            raise

    def _check_classes_at(self, classes: np.ndarray, rows: int) -> np.ndarray:
        if classes.shape != (rows, self.width):
            raise ValueError(
                f"rewritten classes must be ({rows}, {self.width}), got {classes.shape}"
            )
        return classes.astype(np.uint8, copy=False)

    # -- finishing --------------------------------------------------------------------------

    def build(self) -> None:
        """Convert the streamed rows into the final formats, still under partial names.

        Separate from :meth:`finish` so a caller can time it and put the time in the summary;
        :meth:`finish` builds first if this was not called.
        """
        self._check_open()
        if self._moves is not None:
            return
        if self._next_row != self.height:
            raise ValueError(
                f"rows {self._next_row}..{self.height} of {self.scene_id} were never written"
            )
        with self._aborting():
            self._moves = self._convert()

    def finish(self, summary: dict) -> OutputPaths:
        """Move every output into place and write ``summary`` (plus "outputs") as the JSON,
        last: the JSON's presence marks the scene complete."""
        self.build()
        with self._aborting():
            # an earlier run's summary would vouch for a mix of old and new files if this
            # run died between the moves below: the scene is incomplete until the new one
            self.paths.summary.unlink(missing_ok=True)
            assert self._moves is not None  # set by build()
            for partial, final in self._moves:
                os.replace(partial, final)
            with_probabilities, with_quicklook = self._prob_ds is not None, bool(self._q)
            # an earlier run's optional outputs that this run did not ask for would sit beside
            # the new mask as if they belonged to it
            if not with_probabilities:
                self.paths.probabilities.unlink(missing_ok=True)
            if not with_quicklook:
                self.paths.quicklook.unlink(missing_ok=True)
            outputs = {
                "mask": self.paths.mask.name,
                "probabilities": self.paths.probabilities.name if with_probabilities else None,
                "quicklook": self.paths.quicklook.name if with_quicklook else None,
            }
            self._fallback = None
            _remove_partials(self.out_dir, self.scene_id)  # GDAL side files, the fallback
            # the checksums let a re-run tell these files from damaged ones (seal.py)
            write_json(seal({**summary, "outputs": outputs}, self.out_dir), self.paths.summary)
        self._closed = True
        self._release()
        return self.paths

    def _convert(self) -> list[tuple[Path, Path]]:
        """Write every output under a partial name; (partial, final) pairs to move."""
        moves = []
        with rasterio.Env(**_GDAL_ENV):
            self._mask_ds.close()
            cog = self._partial("mask", "cog")
            self._copy_cog(self._partial("mask", "tif"), cog, _MASK_COG)
            moves.append((cog, self.paths.mask))
            if self._prob_ds is not None:
                self._prob_ds.close()
                cog = self._partial("probabilities", "cog")
                self._copy_cog(self._partial("probabilities", "tif"), cog, _PROBABILITY_COG)
                moves.append((cog, self.paths.probabilities))
            if self._q:
                moves.append((self._write_quicklook(), self.paths.quicklook))
        return moves

    def _copy_cog(self, src: Path, dst: Path, options: dict) -> None:
        rasterio.shutil.copy(src, dst, driver="COG", NUM_THREADS=self._threads, **options)
        src.unlink()  # the uncompressed copy is as large as the scene: free the disk now

    def _write_quicklook(self) -> Path:
        """True colour and the classes over it, side by side, under the scene's name and a
        legend with each class's share of the valid pixels (counted on the whole mask)."""
        classes = np.concatenate(self._ql_classes)
        background = np.concatenate(self._ql_background, axis=1)
        self._ql_classes, self._ql_background = [], []
        background[:, classes == NODATA] = 0
        overlay = class_overlay(background, classes, self.classes)
        png = self._partial("quicklook", "png")
        figure = quicklook_figure(
            np.moveaxis(background, 0, -1),
            np.moveaxis(overlay, 0, -1),
            title=self.scene_id,
            legend=self._legend(),
        )
        save_png(figure, png)
        return png

    def _legend(self) -> list[tuple[str, tuple[int, int, int] | None]]:
        """Each class's share of the whole mask's valid pixels (every row written counted)."""
        return legend(self._class_counts, self.classes, NODATA)

    def abort(self) -> None:
        """Close and delete every temporary file of this writer; calling it again is harmless."""
        if self._closed:
            return
        self._closed = True
        for ds in (self._mask_ds, self._prob_ds):
            if ds is not None and not ds.closed:
                # the files go anyway; an error here would hide the one that brought us here
                with contextlib.suppress(OSError, RasterioError):
                    ds.close()
        self._ql_classes, self._ql_background = [], []
        self._fallback = None  # the mapping goes; the file goes with the other partials
        if self._lock is not None:  # another run's claim: its files are not ours to delete
            _remove_partials(self.out_dir, self.scene_id)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # a no-op after finish()
