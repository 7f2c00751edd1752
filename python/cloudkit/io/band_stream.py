"""Stream the rows of several rasters at once, decoding ahead in background threads.

JPEG 2000 decodes whole codestream tiles (1024 x 1024 in Sentinel-2 products): a window
that cuts a tile row decodes all of it, and GDAL's block cache does not spare the work when
the next window asks for the rest. So each file is read in chunks of whole block rows, each
pixel decoded once, and row ranges are served from those chunks. One thread per file decodes
at most :data:`_AHEAD_CHUNKS` chunks past the rows the caller has asked for; a semaphore caps
how many decode at once, so `workers` cores decode while the caller (the Rust kernels, GIL
released) works on the current rows. A file never runs further ahead than that, so the rows
held stay a few chunks per file however slow the caller is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudkit.errors import InvalidSceneError

#: GDAL options for every decoding thread (rasterio's Env is per thread).
GDAL_OPTIONS = {
    "GDAL_NUM_THREADS": 1,  # parallelism comes from decoding several files at once
    "GDAL_CACHEMAX": 256,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}
_MIN_CHUNK_ROWS = 256
#: chunks a file decodes past the last row asked for (before, a queue of two and a chunk
#: waiting to enter it: as deep, bounded by rows asked for rather than by chunks taken)
_AHEAD_CHUNKS = 2
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RasterBand:
    """One band of one file to stream, with an optional per-chunk conversion (e.g. a LUT), at
    full resolution or at a JPEG 2000 file's reduced resolution ``level`` (2**level coarser)."""

    path: Path
    index: int = 1
    convert: Callable[[np.ndarray], np.ndarray] | None = None
    level: int = 0


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Lane:
    """One file: a decoding thread filling a queue with (first_row, rows) chunks."""

    def __init__(self, band: RasterBand, slots: threading.Semaphore, stop: threading.Event):
        self.band = band
        self._slots, self._stop = slots, stop
        self._queue: queue.Queue = queue.Queue()  # bounded by _may_decode
        self._asked = 0  # the end of the rows asked for so far
        self._asked_changed = threading.Condition()
        self._chunks: list[
            tuple[int, np.ndarray]
        ] = []  # consumed from the queue, kept until passed
        with rasterio.Env(**GDAL_OPTIONS), _open(band.path, band.level) as ds:
            self.height, self.width, count = ds.height, ds.width, ds.count
            if band.index > count:
                raise InvalidSceneError(
                    f"{band.path}: has {count} band(s), band {band.index} was expected"
                )
            block_rows = ds.block_shapes[band.index - 1][0]
        block_rows = max(1, min(block_rows, self.height))
        self.chunk_rows = block_rows * max(1, -(-_MIN_CHUNK_ROWS // block_rows))
        self._thread = threading.Thread(
            target=self._run, name=f"decode {band.path.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            with rasterio.Env(**GDAL_OPTIONS), _open(self.band.path, self.band.level) as ds:
                for row0 in range(0, self.height, self.chunk_rows):
                    rows = min(self.chunk_rows, self.height - row0)
                    if not self._may_decode(row0):
                        return
                    with self._slots:
                        if self._stop.is_set():
                            return
                        data = self._read(ds, row0, rows)
                    if not self._put((row0, data)):
                        return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(_Failure(err))

    def _may_decode(self, row0: int) -> bool:
        """Wait until the chunk at ``row0`` is at most :data:`_AHEAD_CHUNKS` past the rows
        asked for; False when the stream stops first."""
        limit = _AHEAD_CHUNKS * self.chunk_rows
        with self._asked_changed:
            while row0 >= self._asked + limit:
                if self._stop.is_set():
                    return False
                self._asked_changed.wait(_POLL_SECONDS)
        return not self._stop.is_set()

    def _read(self, ds, row0: int, rows: int) -> np.ndarray:
        try:
            data = ds.read(self.band.index, window=Window(0, row0, self.width, rows))
        except rasterio.errors.RasterioIOError as err:
            raise InvalidSceneError(
                f"{self.band.path}: cannot decode rows {row0}-{row0 + rows} ({_first_line(err)})"
            ) from err
        return self.band.convert(data) if self.band.convert is not None else data

    def _put(self, item) -> bool:
        if self._stop.is_set():
            return False
        self._queue.put(item)
        return True

    def rows(self, row0: int, count: int) -> np.ndarray:
        """Rows [row0, row0 + count) as one C-contiguous array; row0 never goes backwards."""
        end = row0 + count
        with self._asked_changed:
            self._asked = max(self._asked, end)
            self._asked_changed.notify()
        while not self._chunks or self._chunks[-1][0] + len(self._chunks[-1][1]) < end:
            item = self._queue.get()
            if isinstance(item, _Failure):
                raise item.error
            self._chunks.append(item)
        # forget chunks that end before row0: later requests start at or after it
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= row0:
            self._chunks.pop(0)
        parts = [
            data[max(row0 - first, 0) : max(min(end - first, len(data)), 0)]
            for first, data in self._chunks
            if first < end
        ]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(out)

    def join(self) -> None:
        self._thread.join()


class BandStream:
    """Decode several rasters ahead of a consumer that asks for increasing row ranges.

    Use as a context manager; leaving it stops and joins the decoding threads.
    """

    def __init__(self, bands: list[RasterBand], *, workers: int) -> None:
        self._bands = bands
        self._slots = threading.Semaphore(max(1, workers))
        self._stop = threading.Event()
        self._lanes: list[_Lane] = []

    def __enter__(self) -> BandStream:
        try:
            for band in self._bands:
                self._lanes.append(_Lane(band, self._slots, self._stop))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for lane in self._lanes:
            lane.join()

    def shape(self, i: int) -> tuple[int, int]:
        return self._lanes[i].height, self._lanes[i].width

    def rows(self, i: int, row0: int, count: int) -> np.ndarray:
        return self._lanes[i].rows(row0, count)


def _open(path: Path, level: int = 0):
    try:
        # GDAL shows a JPEG 2000 file's resolution level j as its overview j - 1; a str,
        # not a Path: rasterio takes a Path for a local file, and /vsicurl/ URLs are not
        name = str(path)
        return rasterio.open(name, overview_level=level - 1) if level else rasterio.open(name)
    except rasterio.errors.RasterioIOError as err:
        raise InvalidSceneError(f"{path}: cannot open raster ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
