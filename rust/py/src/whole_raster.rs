//! The whole-scene kernel `benches/bench_kernels.py` compares with numpy; built only with the
//! `whole-raster` feature, never part of the product's `_core`:
//!
//! ```sh
//! cargo build --release --manifest-path rust/py/Cargo.toml \
//!     --features pyo3/extension-module,whole-raster
//! ```
//!
//! then put `target/release/lib_core.so` in place of `python/cloudkit/_core.*.so`.

use numpy::{IntoPyArray, PyArray4, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::{c_contiguous_all, detached};

/// Fused resample + stack + scale + tile: float32 tiles (n, bands, tile, tile), NaN padding.
#[pyfunction]
#[pyo3(signature = (bands, factors, height, width, quantification, offsets, tile, overlap, threads = None))]
#[allow(clippy::too_many_arguments)] // mirrors the Python signature
pub fn reflectance_tiles<'py>(
    py: Python<'py>,
    bands: Vec<PyReadonlyArray2<'py, u16>>,
    factors: Vec<i64>,
    height: usize,
    width: usize,
    quantification: f32,
    offsets: Vec<f32>,
    tile: usize,
    overlap: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let views = c_contiguous_all("bands", &bands)?;
    let out = detached(py, threads, || {
        cloudkit_core::whole_raster::reflectance_tiles(
            &views,
            &factors,
            height,
            width,
            quantification,
            &offsets,
            tile,
            overlap,
        )
    })?;
    Ok(out.into_pyarray(py))
}
