"""cloudkit._core against plain numpy references, on random arrays and a real L2A product.

Resampling is checked through the product's own kernel, `cut_stripe`, with one tile covering
the grid (`on_grid`). `reflectance_tiles` exists only in a `_core` built with the
`whole-raster` feature (see benches/bench_kernels.py); its tests skip otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cloudkit import _core
from cloudkit.errors import InvalidSceneError, StoreError, TileShapeError
from cloudkit.io.store import StoreLayout, TileStore
from tests.helpers import numpy_reference as ref

# --- numpy references live in numpy_reference.py (shared with the benchmarks) ---------------


def read_stripe(band: np.ndarray, factor: int, y0: int, rows: int) -> np.ndarray:
    """The native rows of `band` for target rows [y0, y0 + rows), as io/ reads them."""
    first, n = _core.band_window(y0, rows, factor, band.shape[0])
    return np.ascontiguousarray(band[first : first + n])


def tile_row_origins(height: int, width: int, tile: int, overlap: int) -> list[int]:
    return sorted({r for r, _ in _core.tile_windows(height, width, tile, overlap)})


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)  # NaN positions must match too


def on_grid(native: np.ndarray, factor: int, height: int, width: int, **kw) -> np.ndarray:
    """``native`` (DN, or label codes when uint8) resampled by ``factor`` onto a ``height`` x
    ``width`` grid by `cut_stripe`, as one tile row holding one tile."""
    tile = max(height, width)
    if native.dtype == np.uint8:  # label codes ride along a band of ones
        band = np.ones((height, width), np.uint16)
        out = _core.cut_stripe(
            0, [band], [1], height, width, tile, 0, labels=native, label_factor=factor, **kw
        )
        return out[2][0, 0, :height, :width]
    images = _core.cut_stripe(0, [native], [factor], height, width, tile, 0, **kw)[0]
    return images[0, 0, :height, :width]


whole_raster = pytest.mark.skipif(
    not hasattr(_core, "reflectance_tiles"),
    reason="reflectance_tiles needs _core built with the whole-raster feature "
    "(see benches/bench_kernels.py)",
)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20221005)


def random_dn(rng: np.random.Generator, shape, zeros: float = 0.2) -> np.ndarray:
    a = rng.integers(1, 20000, size=shape, dtype=np.uint16)
    a[rng.random(shape) < zeros] = 0
    return a


def random_scene(rng: np.random.Generator, height: int, width: int):
    """Bands at factors 1, 2, 6 and -2 that cover a height x width grid (with extra edges)."""
    factors = [1, 2, 6, -2]
    shapes = [
        (height, width),
        (-(-height // 2), -(-width // 2)),
        (-(-height // 6), -(-width // 6)),
        (height * 2 + 1, width * 2 + 1),
    ]
    return [random_dn(rng, s) for s in shapes], factors


@pytest.fixture(scope="module")
def real_bands(t29unu: Path) -> dict[str, np.ndarray]:
    """1830 x 1830 R60m bands of the real T29UNU L2A product (about 40 % no-data)."""
    rasterio = pytest.importorskip("rasterio")
    out = {}
    for name in ("B01", "B02", "B04", "SCL"):
        (path,) = t29unu.glob(f"GRANULE/*/IMG_DATA/R60m/*_{name}_60m.jp2")
        with rasterio.open(path) as src:
            out[name] = src.read(1)
    return out


# --- conversions and errors -------------------------------------------------------------------


class TestConversions:
    def test_non_contiguous_input_is_refused(self, rng):
        a = random_dn(rng, (8, 6))
        with pytest.raises(ValueError, match=r"bands\[0\] must be C-contiguous"):
            _core.cut_stripe(0, [a.T], [1], 6, 8, 8, 0)
        with pytest.raises(ValueError, match=r"bands\[1\] must be C-contiguous"):
            _core.cut_stripe(0, [a, a[:, ::2]], [1, 1], 8, 3, 8, 0)
        codes = np.zeros((6, 8), np.uint8).T
        with pytest.raises(ValueError, match="labels must be C-contiguous"):
            _core.cut_stripe(0, [a], [1], 8, 6, 8, 0, labels=codes, label_factor=1)

    def test_wrong_dtype_is_a_type_error(self):
        with pytest.raises(TypeError):
            _core.cut_stripe(0, [np.zeros((4, 4), np.int32)], [1], 4, 4, 4, 0)
        with pytest.raises(TypeError):
            _core.cut_stripe(0, [np.zeros((4, 4), np.float32)], [1], 4, 4, 4, 0)
        band = np.ones((4, 4), np.uint16)
        with pytest.raises(TypeError):
            _core.cut_stripe(0, [band], [1], 4, 4, 4, 0, labels=band, label_factor=1)

    def test_results_are_new_arrays(self, rng):
        a16 = random_dn(rng, (3, 5))
        codes = rng.integers(0, 256, (3, 5), dtype=np.uint8)
        images, valid, labels, *_ = _core.cut_stripe(
            0, [a16], [1], 3, 5, 8, 0, labels=codes, label_factor=1
        )
        assert images.dtype == np.uint16 and labels.dtype == np.uint8 and valid.dtype == np.uint8
        assert not np.shares_memory(images, a16) and not np.shares_memory(labels, codes)
        images[:] = 7  # owned and writeable
        assert a16[0, 0] != 7 or a16.size == 0

    def test_shape_and_factor_errors_are_tile_shape_errors(self, rng):
        a = random_dn(rng, (6, 6))
        for call in (
            lambda: _core.cut_stripe(0, [a], [0], 6, 6, 6, 0),
            lambda: _core.band_window(0, 4, 0, 10),
            lambda: _core.tile_windows(10, 10, 4, 4),
            lambda: _core.tile_windows(10, 10, 0, 0),
            lambda: _core.cut_stripe(0, [a], [1, 2], 6, 6, 6, 0),
            lambda: _core.cut_stripe(0, [a], [2], 13, 12, 13, 0),  # 6 * 2 rows cannot cover 13
            lambda: _core.cut_stripe(0, [a], [1], 6, 6, 6, 0, shifts=[0, 0]),
        ):
            with pytest.raises(TileShapeError):
                call()

    def test_threads(self, rng, monkeypatch):
        a = random_dn(rng, (5, 5))
        expected = ref.upsample_nearest(a, 2)
        assert_same(on_grid(a, 2, 10, 10, threads=1), expected)
        monkeypatch.setenv("CLOUDKIT_NUM_THREADS", "2")
        assert_same(on_grid(a, 2, 10, 10), expected)
        with pytest.raises(ValueError, match="threads"):
            on_grid(a, 2, 10, 10, threads=0)
        monkeypatch.setenv("CLOUDKIT_NUM_THREADS", "many")
        with pytest.raises(ValueError, match="CLOUDKIT_NUM_THREADS"):
            on_grid(a, 2, 10, 10)


# --- kernels on random arrays -----------------------------------------------------------------


class TestKernels:
    @pytest.mark.parametrize("k", [1, 2, 3, 6])
    def test_upsample(self, rng, k):
        a = random_dn(rng, (7, 9))
        assert_same(on_grid(a, k, 7 * k, 9 * k), ref.upsample_nearest(a, k))
        codes = rng.integers(0, 256, (4, 3), dtype=np.uint8)
        assert_same(on_grid(codes, k, 4 * k, 3 * k), ref.upsample_nearest(codes, k))

    @pytest.mark.parametrize("d", [1, 2, 3, 5])
    def test_downsample_mean(self, rng, d):
        a = random_dn(rng, (17, 23), zeros=0.5)
        a[:d, :d] = 0  # one all-no-data block
        assert_same(on_grid(a, -d, 17 // d, 23 // d), ref.downsample_mean(a, d))

    def test_downsample_mean_rounds_half_up(self):
        a = np.array([[1, 2, 0, 0], [0, 0, 0, 0]], np.uint16)
        assert_same(on_grid(a, -2, 1, 2), np.array([[2, 0]], np.uint16))

    @pytest.mark.parametrize("d", [2, 3, 4])
    def test_downsample_mode(self, rng, d):
        codes = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(13, 14))
        codes[:d, :d] = 255
        assert_same(on_grid(codes, -d, 13 // d, 14 // d), ref.downsample_mode(codes, d))

    def test_downsample_mode_ties_go_to_the_smallest_code(self):
        codes = np.array([[3, 1], [1, 3]], np.uint8)
        assert_same(on_grid(codes, -2, 1, 1), np.array([[1]], np.uint8))

    def test_band_window(self):
        assert _core.band_window(384, 384, 6, 1830) == (64, 64)
        assert _core.band_window(5, 4, 2, 100) == (2, 3)
        assert _core.band_window(10, 5, -3, 1000) == (30, 15)
        assert _core.band_window(10800, 384, 6, 1830) == (1800, 30)

    @pytest.mark.parametrize("label_factor", [2, -2])
    @pytest.mark.parametrize("clip_rows", [False, True])
    @pytest.mark.parametrize(("tile", "overlap"), [(8, 2), (4, 0), (8, 7), (64, 0)])
    @pytest.mark.parametrize("shifts", [[0, -1000, 7, 3], [0, -1000, 100, 65535]])
    def test_cut_stripe_matches_stack_then_cut(
        self, rng, label_factor, clip_rows, tile, overlap, shifts
    ):
        height, width = 26, 31
        bands, factors = random_scene(rng, height, width)
        label_shape = (13, 16) if label_factor == 2 else (53, 63)
        labels = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=label_shape)
        stack = ref.stack_bands(bands, factors, height, width, shifts)
        images, valid = ref.cut_tiles_with_valid(stack, tile, overlap)
        labels_on_grid = (
            ref.upsample_nearest(labels, 2) if label_factor == 2 else ref.downsample_mode(labels, 2)
        )
        # Labels pad with 255: shift codes by one so that the zero padding marks the padding.
        shifted = labels_on_grid[None, :height, :width].astype(np.int32) + 1
        ref_codes = ref.cut_tiles_with_valid(shifted, tile, overlap)[0]
        ref_codes = np.where(ref_codes == 0, 255, ref_codes - 1).astype(np.uint8)

        rows = tile_row_origins(height, width, tile, overlap)
        cols = len(_core.tile_windows(height, width, tile, overlap)) // len(rows)
        for row, y0 in enumerate(rows):
            # Readers may ask for a whole tile of rows or only the rows inside the scene.
            n = min(tile, height - y0) if clip_rows else tile
            stripes = [read_stripe(b, f, y0, n) for b, f in zip(bands, factors, strict=True)]
            label_stripe = read_stripe(labels, label_factor, y0, n)
            args = (height, width, tile, overlap, shifts, label_stripe, label_factor)
            out = _core.cut_stripe(y0, stripes, factors, *args)
            got_images, got_valid, got_codes, valid_fraction, cloud_fraction = out
            at = slice(row * cols, (row + 1) * cols)
            assert_same(got_images, images[at])
            assert_same(got_valid, valid[at])
            assert_same(got_codes, ref_codes[at])
            assert_same(
                valid_fraction, (valid[at].sum(axis=(1, 2, 3)) / tile**2).astype(np.float32)
            )
            codes = ref_codes[at].reshape(cols, -1)
            cloudy = np.isin(codes, [1, 2]).sum(axis=1)
            labelled = (codes != 255).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                expected = np.where(labelled > 0, cloudy / labelled, np.nan).astype(np.float32)
            np.testing.assert_allclose(cloud_fraction, expected, rtol=1e-6)


# --- real data ----------------------------------------------------------------------------------


class TestRealData:
    @pytest.mark.parametrize("d", [3, 6])
    def test_downsample_mean(self, real_bands, d):
        b01 = real_bands["B01"]
        assert_same(on_grid(b01, -d, 1830 // d, 1830 // d), ref.downsample_mean(b01, d))

    def test_upsample(self, real_bands):
        b02 = real_bands["B02"]
        assert_same(on_grid(b02, 2, 3660, 3660), ref.upsample_nearest(b02, 2))

    def test_downsample_mode_of_scene_classification(self, real_bands):
        scl = real_bands["SCL"]
        scl = np.where(scl == 0, 255, scl).astype(np.uint8)  # SCL 0 is no data
        assert_same(on_grid(scl, -3, 610, 610), ref.downsample_mode(scl, 3))


# --- properties ---------------------------------------------------------------------------------


class TestProperties:
    @given(
        height=st.integers(1, 120),
        width=st.integers(1, 120),
        tile=st.integers(1, 48),
        data=st.data(),
    )
    @settings(max_examples=60, deadline=None)
    def test_tiles_cover_the_scene(self, height, width, tile, data):
        overlap = data.draw(st.integers(0, tile - 1))
        windows = _core.tile_windows(height, width, tile, overlap)
        assert windows == ref.tile_origins(height, width, tile, overlap)
        hits = np.zeros((height, width), np.int32)
        for r, c in windows:
            assert r < height and c < width
            hits[r : r + tile, c : c + tile] += 1
        assert hits.min() >= 1
        if overlap == 0:
            assert hits.max() == 1

    @given(
        a=arrays(
            np.uint16,
            st.tuples(st.integers(1, 9), st.integers(1, 9)),
            elements=st.integers(1, 65535),
        ),
        k=st.integers(1, 6),
    )
    @settings(max_examples=60, deadline=None)
    def test_upsample_then_downsample_is_identity(self, a, k):
        h, w = a.shape
        assert_same(on_grid(on_grid(a, k, h * k, w * k).copy(), -k, h, w), a)


# --- whole-raster kernel (feature build) -----------------------------------------------------


@whole_raster
class TestReflectanceTiles:
    @pytest.mark.parametrize(("tile", "overlap"), [(8, 0), (7, 3), (40, 0)])
    def test_random(self, rng, tile, overlap):
        bands, factors = random_scene(rng, 25, 31)
        offsets = [-1000.0, 0.0, 3.25, -0.5]
        args = (bands, factors, 25, 31, 10000.0, offsets, tile, overlap)
        assert_same(_core.reflectance_tiles(*args), ref.reflectance_tiles(*args))
        assert_same(_core.reflectance_tiles(*args, threads=1), ref.reflectance_tiles(*args))

    def test_real_mixed_factors(self, real_bands):
        # A 1830 x 1830 grid from a same-grid, a 3x coarser and a 2x finer band.
        bands = [
            real_bands["B01"],
            ref.downsample_mean(real_bands["B02"], 3),
            ref.upsample_nearest(real_bands["B04"], 2),
        ]
        args = (bands, [1, 3, -2], 1830, 1830, 10000.0, [-1000.0, -1000.0, -1000.0], 256, 32)
        assert_same(_core.reflectance_tiles(*args), ref.reflectance_tiles(*args))

    def test_bad_quantification_is_an_invalid_scene(self, rng):
        band = random_dn(rng, (2, 2))
        with pytest.raises(InvalidSceneError, match="quantification"):
            _core.reflectance_tiles([band], [1], 2, 2, 0.0, [0.0], 2, 0)


# --- Zarr tile writer ---------------------------------------------------------------------------


def create_store(path: Path, n: int, bands: int, tile: int, labels: bool) -> None:
    """A store made by io/store/ with ``n`` rows reserved for a scene, as before tiling it."""
    layout = StoreLayout(tuple(f"B{i + 1:02d}" for i in range(bands)), tile, 0, 10.0)
    with TileStore.open(path, layout) as store:
        store.begin_scene("scene", n, with_labels=labels)


class TestTileWriter:
    def test_round_trip_with_zarr_python(self, rng, tmp_path):
        height, width, tile, overlap = 20, 30, 8, 2
        bands, factors = random_scene(rng, height, width)
        bands[0][:, 18:] = 0  # the last tile column holds no valid pixel
        shifts = [0, -1000, 0, 5]
        labels = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(10, 15))
        windows = _core.tile_windows(height, width, tile, overlap)
        path = tmp_path / "tiles.zarr"
        create_store(path, len(windows) + 2, len(bands), tile, labels=True)

        writer = _core.TileWriter(
            str(path), 2, height, width, factors, shifts, tile, overlap, label_factor=2
        )
        records = []
        for y0 in tile_row_origins(height, width, tile, overlap):
            stripes = [read_stripe(b, f, y0, tile) for b, f in zip(bands, factors, strict=True)]
            label_stripe = read_stripe(labels, 2, y0, tile)
            records += writer.write_row(y0, stripes, label_stripe)
            args = (height, width, tile, overlap, shifts, label_stripe, 2)
            expected = _core.cut_stripe(y0, stripes, factors, *args)
            store = zarr.open_group(str(path), mode="r")
            kept = [i for i, fraction in enumerate(expected[3]) if fraction > 0]
            for record, i in zip(records[-len(kept) :], kept, strict=True):
                index, row, col, valid_fraction, cloud_fraction = record
                assert (row, col) == (y0, i * (tile - overlap))
                assert_same(store["images"][index], expected[0][i])
                assert_same(store["valid"][index], expected[1][i])
                assert_same(store["labels"][index], expected[2][i])
                assert valid_fraction == pytest.approx(float(expected[3][i]))
                assert cloud_fraction == pytest.approx(float(expected[4][i]), nan_ok=True)

        indices = [r[0] for r in records]
        assert indices == list(range(2, 2 + len(records)))
        assert writer.next_index == 2 + len(records)
        assert len(records) < len(windows)  # the empty column was skipped
        assert all(col < 18 for _, _, col, _, _ in records)

    def test_store_problems_are_store_errors(self, rng, tmp_path):
        band = random_dn(rng, (8, 8), zeros=0)
        missing = tmp_path / "nothing.zarr"
        with pytest.raises(StoreError, match="images"):
            _core.TileWriter(str(missing), 0, 8, 8, [1], [0], 4, 0)

        path = tmp_path / "small.zarr"
        create_store(path, 1, 1, 4, labels=False)
        with pytest.raises(StoreError, match="expected shape"):
            _core.TileWriter(str(path), 0, 8, 8, [1, 1], [0, 0], 4, 0)
        with pytest.raises(StoreError, match="labels"):
            _core.TileWriter(str(path), 0, 8, 8, [1], [0], 4, 0, label_factor=1)
        writer = _core.TileWriter(path, 0, 8, 8, [1], [0], 4, 0)
        with pytest.raises(StoreError, match="beyond"):
            writer.write_row(0, [band[:4].copy()])  # two tiles, room for one
        assert writer.next_index == 0

        # The writer reads the arrays' shape once: rows reserved later need a new writer.
        create_store(path, 4, 1, 4, labels=False)
        with pytest.raises(StoreError, match="beyond"):
            writer.write_row(0, [band[:4].copy()])
        writer = _core.TileWriter(path, 0, 8, 8, [1], [0], 4, 0)
        assert [r[0] for r in writer.write_row(0, [band[:4].copy()])] == [0, 1]

    def test_stripe_errors_are_tile_shape_errors(self, rng, tmp_path):
        path = tmp_path / "s.zarr"
        create_store(path, 4, 1, 4, labels=False)
        writer = _core.TileWriter(str(path), 0, 8, 8, [1], [0], 4, 0)
        band = random_dn(rng, (8, 8))
        with pytest.raises(TileShapeError, match="tile row origin"):
            writer.write_row(2, [band[2:6].copy()])
        with pytest.raises(TileShapeError, match="stripe"):
            writer.write_row(0, [band[:3].copy()])
        with pytest.raises(TileShapeError, match="label"):
            writer.write_row(0, [band[:4].copy()], np.zeros((4, 8), np.uint8))
