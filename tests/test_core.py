"""cloudkit._core against plain numpy references, on random arrays and a real L2A product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from zarr.codecs import ZstdCodec

import numpy_reference as ref
from cloudkit import _core
from cloudkit.errors import InvalidSceneError, StoreError, TileShapeError

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
        with pytest.raises(ValueError, match="C-contiguous"):
            _core.upsample_nearest(a.T, 2)
        with pytest.raises(ValueError, match=r"bands\[1\] must be C-contiguous"):
            _core.stack_bands([a, a[:, ::2]], [1, 1], 8, 3)
        with pytest.raises(ValueError, match="C-contiguous"):
            _core.cut_tiles(np.zeros((2, 4, 4), np.uint16)[:, ::2], 2, 0)

    def test_wrong_dtype_is_a_type_error(self):
        with pytest.raises(TypeError):
            _core.downsample_mean(np.zeros((4, 4), np.int32), 2)
        with pytest.raises(TypeError):
            _core.upsample_nearest(np.zeros((4, 4), np.float32), 2)
        with pytest.raises(TypeError):
            _core.downsample_mode(np.zeros((4, 4), np.uint16), 2)

    def test_results_are_new_arrays_of_the_input_dtype(self, rng):
        a16 = random_dn(rng, (3, 5))
        out16 = _core.upsample_nearest(a16, 1)
        assert out16.dtype == np.uint16 and not np.shares_memory(out16, a16)
        assert _core.upsample_nearest(a16.astype(np.uint8), 3).dtype == np.uint8
        out16[:] = 7  # owned and writeable
        assert a16[0, 0] != 7 or a16.size == 0

    def test_shape_and_factor_errors_are_tile_shape_errors(self, rng):
        a = random_dn(rng, (6, 6))
        for call in (
            lambda: _core.upsample_nearest(a, 0),
            lambda: _core.band_window(0, 4, 0, 10),
            lambda: _core.tile_windows(10, 10, 4, 4),
            lambda: _core.tile_windows(10, 10, 0, 0),
            lambda: _core.stack_bands([a], [1, 2], 6, 6),
            lambda: _core.stack_bands([a], [2], 13, 12),  # 6 * 2 rows cannot cover 13
            lambda: _core.scale_reflectance(a[None], 1e4, [0.0, 0.0]),
        ):
            with pytest.raises(TileShapeError):
                call()

    def test_bad_quantification_is_an_invalid_scene(self, rng):
        with pytest.raises(InvalidSceneError, match="quantification"):
            _core.scale_reflectance(random_dn(rng, (1, 2, 2)), 0.0, [0.0])

    def test_threads(self, rng, monkeypatch):
        a = random_dn(rng, (5, 5))
        expected = ref.upsample_nearest(a, 2)
        assert_same(_core.upsample_nearest(a, 2, threads=1), expected)
        monkeypatch.setenv("CLOUDKIT_NUM_THREADS", "2")
        assert_same(_core.upsample_nearest(a, 2), expected)
        with pytest.raises(ValueError, match="threads"):
            _core.upsample_nearest(a, 2, threads=0)
        monkeypatch.setenv("CLOUDKIT_NUM_THREADS", "many")
        with pytest.raises(ValueError, match="CLOUDKIT_NUM_THREADS"):
            _core.upsample_nearest(a, 2)


# --- kernels on random arrays -----------------------------------------------------------------


class TestKernels:
    @pytest.mark.parametrize("k", [1, 2, 3, 6])
    def test_upsample(self, rng, k):
        a = random_dn(rng, (7, 9))
        assert_same(_core.upsample_nearest(a, k), ref.upsample_nearest(a, k))
        codes = rng.integers(0, 256, (4, 3), dtype=np.uint8)
        assert_same(_core.upsample_nearest(codes, k), ref.upsample_nearest(codes, k))

    @pytest.mark.parametrize("d", [1, 2, 3, 5])
    def test_downsample_mean(self, rng, d):
        a = random_dn(rng, (17, 23), zeros=0.5)
        a[:d, :d] = 0  # one all-no-data block
        assert_same(_core.downsample_mean(a, d), ref.downsample_mean(a, d))

    def test_downsample_mean_rounds_half_up(self):
        a = np.array([[1, 2, 0, 0], [0, 0, 0, 0]], np.uint16)
        assert_same(_core.downsample_mean(a, 2), np.array([[2, 0]], np.uint16))

    @pytest.mark.parametrize("d", [2, 3, 4])
    def test_downsample_mode(self, rng, d):
        codes = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(13, 14))
        codes[:d, :d] = 255
        assert_same(_core.downsample_mode(codes, d), ref.downsample_mode(codes, d))

    def test_downsample_mode_ties_go_to_the_smallest_code(self):
        codes = np.array([[3, 1], [1, 3]], np.uint8)
        assert_same(_core.downsample_mode(codes, 2), np.array([[1]], np.uint8))

    def test_band_window(self):
        assert _core.band_window(384, 384, 6, 1830) == (64, 64)
        assert _core.band_window(5, 4, 2, 100) == (2, 3)
        assert _core.band_window(10, 5, -3, 1000) == (30, 15)
        assert _core.band_window(10800, 384, 6, 1830) == (1800, 30)

    @pytest.mark.parametrize("shifts", [None, [0, -1000, 100, 65535]])
    def test_stack_bands(self, rng, shifts):
        bands, factors = random_scene(rng, 25, 31)
        assert_same(
            _core.stack_bands(bands, factors, 25, 31, shifts),
            ref.stack_bands(bands, factors, 25, 31, shifts),
        )

    def test_scale_reflectance(self, rng):
        stack = random_dn(rng, (3, 10, 12))
        offsets = [0.0, -1000.0, 12.5]
        assert_same(
            _core.scale_reflectance(stack, 10000.0, offsets),
            ref.scale_reflectance(stack, 1e4, offsets),
        )

    @pytest.mark.parametrize(("tile", "overlap"), [(4, 0), (5, 2), (8, 7), (64, 0)])
    def test_cut_tiles(self, rng, tile, overlap):
        stack = random_dn(rng, (3, 19, 13))
        images, valid = _core.cut_tiles(stack, tile, overlap)
        ref_images, ref_valid = ref.cut_tiles_with_valid(stack, tile, overlap)
        assert_same(images, ref_images)
        assert_same(valid, ref_valid)

    @pytest.mark.parametrize(("tile", "overlap"), [(8, 0), (7, 3), (40, 0)])
    def test_reflectance_tiles(self, rng, tile, overlap):
        bands, factors = random_scene(rng, 25, 31)
        offsets = [-1000.0, 0.0, 3.25, -0.5]
        args = (bands, factors, 25, 31, 10000.0, offsets, tile, overlap)
        assert_same(_core.reflectance_tiles(*args), ref.reflectance_tiles(*args))
        assert_same(_core.reflectance_tiles(*args, threads=1), ref.reflectance_tiles(*args))

    @pytest.mark.parametrize("label_factor", [2, -2])
    @pytest.mark.parametrize("clip_rows", [False, True])
    def test_cut_stripe_matches_stack_then_cut(self, rng, label_factor, clip_rows):
        height, width, tile, overlap = 26, 31, 8, 2
        bands, factors = random_scene(rng, height, width)
        shifts = [0, -1000, 7, 3]
        label_shape = (13, 16) if label_factor == 2 else (53, 63)
        labels = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=label_shape)
        stack = ref.stack_bands(bands, factors, height, width, shifts)
        images, valid = ref.cut_tiles_with_valid(stack, tile, overlap)
        on_grid = (
            ref.upsample_nearest(labels, 2) if label_factor == 2 else ref.downsample_mode(labels, 2)
        )
        # Labels pad with 255: shift codes by one so that the zero padding marks the padding.
        shifted = on_grid[None, :height, :width].astype(np.int32) + 1
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
        assert_same(_core.downsample_mean(b01, d), ref.downsample_mean(b01, d))

    def test_upsample(self, real_bands):
        b02 = real_bands["B02"]
        assert_same(_core.upsample_nearest(b02, 2), ref.upsample_nearest(b02, 2))

    def test_downsample_mode_of_scene_classification(self, real_bands):
        scl = real_bands["SCL"]
        scl = np.where(scl == 0, 255, scl).astype(np.uint8)  # SCL 0 is no data
        assert_same(_core.downsample_mode(scl, 3), ref.downsample_mode(scl, 3))

    def test_reflectance_tiles_mixed_factors(self, real_bands):
        # A 1830 x 1830 grid from a same-grid, a 3x coarser and a 2x finer band.
        bands = [
            real_bands["B01"],
            ref.downsample_mean(real_bands["B02"], 3),
            ref.upsample_nearest(real_bands["B04"], 2),
        ]
        args = (bands, [1, 3, -2], 1830, 1830, 10000.0, [-1000.0, -1000.0, -1000.0], 256, 32)
        assert_same(_core.reflectance_tiles(*args), ref.reflectance_tiles(*args))


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
        assert_same(_core.downsample_mean(_core.upsample_nearest(a, k), k), a)

    @given(
        dns=arrays(np.uint16, st.integers(1, 50), elements=st.integers(1, 65535)),
        offset=st.floats(-2000, 2000, width=32),
        quantification=st.floats(1, 1e5, width=32),
    )
    @settings(max_examples=60, deadline=None)
    def test_scale_is_monotone(self, dns, offset, quantification):
        dns = np.sort(dns)
        out = _core.scale_reflectance(dns[None, None], quantification, [offset])[0, 0]
        assert np.all(np.diff(out) >= 0)


# --- Zarr tile writer ---------------------------------------------------------------------------


def create_store(path: Path, n: int, bands: int, tile: int, labels: bool) -> zarr.Group:
    """The arrays io/store.py creates: one chunk per tile, bytes + zstd."""
    root = zarr.create_group(store=str(path), zarr_format=3)
    specs = [("images", "uint16", bands, 0), ("valid", "uint8", 1, 0)]
    if labels:
        specs.append(("labels", "uint8", 1, 255))
    for name, dtype, first, fill in specs:
        root.create_array(
            name,
            shape=(0, first, tile, tile),
            chunks=(1, first, tile, tile),
            dtype=dtype,
            compressors=ZstdCodec(level=3),
            fill_value=fill,
        )
        root[name].resize((n, first, tile, tile))
    return root


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

        # Resizing between rows is picked up.
        zarr.open_group(str(path))["images"].resize((4, 1, 4, 4))
        zarr.open_group(str(path))["valid"].resize((4, 1, 4, 4))
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
