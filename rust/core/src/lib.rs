//! cloudkit-core: the Sentinel-2 preprocessing kernels behind `cloudkit._core`.
//!
//! Pure Rust on ndarray views, no Python. A scene is streamed one tile row at a time: bands are
//! resampled onto one target grid ([`resample`], [`raster`]), cut into tiles ([`tiling`],
//! [`stripe`]) and written as Zarr chunks ([`store`]); windows of store values become the
//! network's input in [`model_input`]. Kernels run on whichever rayon pool the caller installs.
//!
//! Feature `whole-raster`: the same work on whole scenes (module `whole_raster`), for the
//! benchmarks and as test references; the product does not use it.

pub mod error;
pub mod model_input;
pub mod raster;
pub mod resample;
pub mod store;
pub mod stripe;
pub mod tiling;
#[cfg(feature = "whole-raster")]
pub mod whole_raster;

pub use error::{Error, Result};
pub use model_input::{bf16_bits, window_inputs};
pub use resample::band_window;
pub use store::{TileArrays, TileWriter, WrittenTile};
pub use stripe::{cut_stripe, StripeLayout, StripeTile};
pub use tiling::{tile_windows, TileGrid};
