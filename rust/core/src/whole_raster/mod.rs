//! Whole-raster kernels: entire bands resampled, stacked, cut into tiles and scaled to
//! reflectance as full-scene arrays.
//!
//! The product never holds a full scene: `cloudkit tile` and `cloudkit predict` stream it tile
//! row by tile row through [`crate::stripe`]. These kernels are kept, behind the
//! `whole-raster` feature, for the benchmarks (criterion's `benches/kernels.rs`, and
//! `benches/bench_kernels.py` through a `cloudkit._core` built with the feature) and as the
//! references the streaming path is tested against. They fill their outputs through the same
//! [`crate::raster::GridBand`] as the streaming path.

mod bands;
mod reflectance;
mod resample;
mod tiles;

pub use bands::stack_bands;
pub use reflectance::{reflectance_tiles, scale_reflectance};
pub use resample::{downsample_mean, downsample_mode, upsample_nearest};
pub use tiles::cut_tiles;

use crate::error::{shape_error, Result};

/// Rows of output handed to one rayon task.
const ROWS_PER_TASK: usize = 64;

/// Checks that an output of shape `dims` can be allocated at all (its byte size fits `isize`),
/// so absurd factors or tile sizes fail with a message instead of a panic.
fn check_output_size<T>(dims: &[usize]) -> Result<()> {
    let bytes = dims
        .iter()
        .try_fold(std::mem::size_of::<T>(), |acc, &d| acc.checked_mul(d))
        .filter(|&bytes| isize::try_from(bytes).is_ok());
    match bytes {
        Some(_) => Ok(()),
        None => Err(shape_error!(
            "an output of shape {dims:?} is too large to allocate"
        )),
    }
}
