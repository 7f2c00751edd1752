//! `cloudkit._core`: PyO3 glue over cloudkit-core, exposing what the product calls.
//!
//! Every function borrows numpy arrays (C-contiguous only), releases the GIL, runs the kernel
//! on a dedicated rayon pool and hands back new numpy arrays that own the Rust buffers.
//! Stubs: `python/cloudkit/_core.pyi`. Feature `whole-raster` adds `reflectance_tiles` for
//! `benches/bench_kernels.py` (module `whole_raster`).

mod errors;
mod threads;
#[cfg(feature = "whole-raster")]
mod whole_raster;

use std::path::PathBuf;
use std::sync::Arc;

use ndarray::{Array1, Array4, ArrayView, Dimension};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray4, PyReadonlyArray, PyReadonlyArray2, PyReadonlyArray4,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::ThreadPool;

use crate::errors::CoreError;
use crate::threads::thread_pool;

/// Borrows a numpy array as an ndarray view, refusing layouts the kernels cannot slice.
fn c_contiguous<'a, T: Element, D: Dimension>(
    name: &str,
    array: &'a PyReadonlyArray<'_, T, D>,
) -> PyResult<ArrayView<'a, T, D>> {
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous; pass np.ascontiguousarray({name})"
        )));
    }
    Ok(array.as_array())
}

fn c_contiguous_all<'a, T: Element, D: Dimension>(
    name: &str,
    arrays: &'a [PyReadonlyArray<'_, T, D>],
) -> PyResult<Vec<ArrayView<'a, T, D>>> {
    arrays
        .iter()
        .enumerate()
        .map(|(i, array)| c_contiguous(&format!("{name}[{i}]"), array))
        .collect()
}

/// Runs `work` on the pool for `threads` with the GIL released.
fn detached<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    work: impl FnOnce() -> Result<T, cloudkit_core::Error> + Send,
) -> PyResult<T> {
    let pool = thread_pool(threads)?;
    Ok(py.detach(|| pool.install(work)).map_err(CoreError)?)
}

/// Native rows (first, count) a band must supply for target rows [y0, y0 + rows).
#[pyfunction]
fn band_window(
    y0: usize,
    rows: usize,
    factor: i64,
    native_height: usize,
) -> PyResult<(usize, usize)> {
    Ok(cloudkit_core::band_window(y0, rows, factor, native_height).map_err(CoreError)?)
}

/// Tile origins (row, col) over a height x width scene, row-major.
#[pyfunction]
fn tile_windows(
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> PyResult<Vec<(usize, usize)>> {
    Ok(cloudkit_core::tile_windows(height, width, tile, overlap).map_err(CoreError)?)
}

/// What `cut_stripe` returns: images, valid, labels (None without labels), valid and cloud
/// fractions.
type StripeArrays<'py> = (
    Bound<'py, PyArray4<u16>>,
    Bound<'py, PyArray4<u8>>,
    Option<Bound<'py, PyArray4<u8>>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
);

/// Stacks per-tile buffers into one `(n, planes, tile, tile)` array.
fn stack_tiles<T: Clone>(buffers: Vec<&Vec<T>>, planes: usize, tile: usize) -> Array4<T> {
    let n = buffers.len();
    let flat: Vec<T> = buffers.into_iter().flatten().cloned().collect();
    Array4::from_shape_vec((n, planes, tile, tile), flat).expect("every tile has the same size")
}

/// Every tile of the tile row at y0 from native stripes read with band_window.
#[pyfunction]
#[pyo3(signature = (
    y0, bands, factors, height, width, tile, overlap,
    shifts = None, labels = None, label_factor = None, *, threads = None
))]
#[allow(clippy::too_many_arguments)] // mirrors the Python signature
fn cut_stripe<'py>(
    py: Python<'py>,
    y0: usize,
    bands: Vec<PyReadonlyArray2<'py, u16>>,
    factors: Vec<i64>,
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
    shifts: Option<Vec<i32>>,
    labels: Option<PyReadonlyArray2<'py, u8>>,
    label_factor: Option<i64>,
    threads: Option<usize>,
) -> PyResult<StripeArrays<'py>> {
    let views = c_contiguous_all("bands", &bands)?;
    let label_view = labels
        .as_ref()
        .map(|l| c_contiguous("labels", l))
        .transpose()?;
    let shifts = shifts.unwrap_or_else(|| vec![0; factors.len()]);
    let tiles = detached(py, threads, || {
        let grid = cloudkit_core::TileGrid::new(height, width, tile, overlap)?;
        let layout = cloudkit_core::StripeLayout::new(grid, &factors, &shifts, label_factor)?;
        cloudkit_core::cut_stripe(&layout, y0, &views, label_view)
    })?;
    let images = stack_tiles(tiles.iter().map(|t| &t.image).collect(), views.len(), tile);
    let valid = stack_tiles(tiles.iter().map(|t| &t.valid).collect(), 1, tile);
    let codes: Option<Vec<&Vec<u8>>> = tiles.iter().map(|t| t.labels.as_ref()).collect();
    let codes = codes
        .filter(|_| label_factor.is_some())
        .map(|c| stack_tiles(c, 1, tile));
    let valid_fraction: Array1<f32> = tiles.iter().map(|t| t.valid_fraction).collect();
    let cloud_fraction: Array1<f32> = tiles.iter().map(|t| t.cloud_fraction).collect();
    Ok((
        images.into_pyarray(py),
        valid.into_pyarray(py),
        codes.map(|c| c.into_pyarray(py)),
        valid_fraction.into_pyarray(py),
        cloud_fraction.into_pyarray(py),
    ))
}

/// Store-value windows to the network's channels-last input: float32, or bf16 as its bits.
#[pyfunction]
#[pyo3(signature = (values, valid, scale, offset, *, bf16 = false, threads = None))]
fn window_inputs<'py>(
    py: Python<'py>,
    values: PyReadonlyArray4<'py, u16>,
    valid: PyReadonlyArray4<'py, u8>,
    scale: Vec<f32>,
    offset: Vec<f32>,
    bf16: bool,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let values = c_contiguous("values", &values)?;
    let valid = c_contiguous("valid", &valid)?;
    Ok(if bf16 {
        let out = detached(py, threads, || {
            cloudkit_core::window_inputs(values, valid, &scale, &offset, cloudkit_core::bf16_bits)
        })?;
        out.into_pyarray(py).into_any()
    } else {
        let out = detached(py, threads, || {
            cloudkit_core::window_inputs(values, valid, &scale, &offset, |x| x)
        })?;
        out.into_pyarray(py).into_any()
    })
}

/// (tile index, row origin, col origin, valid fraction, cloud fraction) of a written tile.
type WrittenRecord = (u64, usize, usize, f32, f32);

/// Cuts a scene tile row by tile row and writes the tiles as chunks of a Zarr tile store.
#[pyclass(module = "cloudkit._core")]
struct TileWriter {
    writer: cloudkit_core::TileWriter,
    pool: Arc<ThreadPool>,
}

#[pymethods]
impl TileWriter {
    #[new]
    #[pyo3(signature = (
        store_path, start_index, height, width, factors, shifts, tile_size, overlap,
        label_factor = None, skip_empty = true, threads = None
    ))]
    #[allow(clippy::too_many_arguments)] // mirrors the Python signature
    fn new(
        py: Python<'_>,
        store_path: PathBuf,
        start_index: u64,
        height: usize,
        width: usize,
        factors: Vec<i64>,
        shifts: Vec<i32>,
        tile_size: usize,
        overlap: usize,
        label_factor: Option<i64>,
        skip_empty: bool,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let pool = thread_pool(threads)?;
        let writer = py
            .detach(|| {
                let grid = cloudkit_core::TileGrid::new(height, width, tile_size, overlap)?;
                let layout =
                    cloudkit_core::StripeLayout::new(grid, &factors, &shifts, label_factor)?;
                cloudkit_core::TileWriter::new(&store_path, start_index, layout, skip_empty)
            })
            .map_err(CoreError)?;
        Ok(Self { writer, pool })
    }

    /// Writes the tiles of the tile row at y0; returns (index, row, col, valid_fraction,
    /// cloud_fraction) for each tile written.
    #[pyo3(signature = (y0, bands, labels = None))]
    fn write_row<'py>(
        &mut self,
        py: Python<'py>,
        y0: usize,
        bands: Vec<PyReadonlyArray2<'py, u16>>,
        labels: Option<PyReadonlyArray2<'py, u8>>,
    ) -> PyResult<Vec<WrittenRecord>> {
        let views = c_contiguous_all("bands", &bands)?;
        let label_view = labels
            .as_ref()
            .map(|l| c_contiguous("labels", l))
            .transpose()?;
        let (writer, pool) = (&mut self.writer, &self.pool);
        let written = py
            .detach(|| pool.install(|| writer.write_row(y0, &views, label_view)))
            .map_err(CoreError)?;
        Ok(written
            .into_iter()
            .map(|t| {
                (
                    t.index,
                    t.row_origin,
                    t.col_origin,
                    t.valid_fraction,
                    t.cloud_fraction,
                )
            })
            .collect())
    }

    /// Index the next written tile gets.
    #[getter]
    fn next_index(&self) -> u64 {
        self.writer.next_index()
    }

    /// Seconds spent so far (cutting, storing): see the core writer's `seconds`.
    #[getter]
    fn seconds(&self) -> (f64, f64) {
        self.writer.seconds()
    }
}

/// Rust kernels of cloudkit: tile-row cutting, Zarr tile writing and model input.
#[pymodule]
mod _core {
    #[cfg(feature = "whole-raster")]
    #[pymodule_export]
    use super::whole_raster::reflectance_tiles;
    #[pymodule_export]
    use super::{band_window, cut_stripe, tile_windows, window_inputs, TileWriter};
}
