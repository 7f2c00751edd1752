//! cloudkit-core: the Sentinel-2 preprocessing kernels behind `cloudkit._core`.
//!
//! Pure Rust on ndarray views, no Python: bands are resampled onto one target grid
//! ([`resample`], [`raster`], [`bands`]), scaled to reflectance ([`reflectance`]), cut into
//! tiles ([`tiling`], [`stripe`]) and written as Zarr chunks ([`store`]); windows of store
//! values become the network's input in [`model_input`]. Kernels run on
//! whichever rayon pool the caller installs.

pub mod bands;
pub mod error;
pub mod model_input;
pub mod raster;
pub mod reflectance;
pub mod resample;
pub mod store;
pub mod stripe;
pub mod tiling;

pub use bands::stack_bands;
pub use error::{Error, Result};
pub use model_input::{bf16_bits, window_inputs};
pub use reflectance::{reflectance_tiles, scale_reflectance};
pub use resample::{band_window, downsample_mean, downsample_mode, upsample_nearest};
pub use store::{TileStore, TileWriter, WrittenTile};
pub use stripe::{cut_stripe, StripeLayout, StripeTile};
pub use tiling::{cut_tiles, tile_windows, TileGrid};
