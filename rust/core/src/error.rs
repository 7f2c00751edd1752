//! The one error type of cloudkit-core.
//!
//! Variants are grouped by what the caller did wrong, because the Python glue maps each group
//! onto one of cloudkit's exception classes (shape problems, metadata problems, store problems).

/// Everything a kernel or the tile store can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A resampling factor of 0 (or one too large to hold in memory).
    #[error(
        "factor {factor} is not a resampling factor: expected k > 1 (band coarser than the \
         grid by k), k < -1 (finer by |k|) or 1 (same grid)"
    )]
    InvalidFactor { factor: i64 },

    /// Tile size and overlap that give no positive stride.
    #[error(
        "tile size {tile} with overlap {overlap} is impossible: expected tile > 0 and \
         0 <= overlap < tile"
    )]
    InvalidTiling { tile: usize, overlap: usize },

    /// An array, list or window whose shape does not fit the others; the text says which.
    #[error("{0}")]
    ShapeMismatch(String),

    /// Product metadata that cannot be used as given (e.g. a quantification value of 0).
    #[error("{0}")]
    InvalidMetadata(String),

    /// The Zarr tile store is missing, malformed, too small or cannot be written.
    #[error("tile store {path}: {reason}")]
    Store { path: String, reason: String },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::ShapeMismatch`] from format arguments.
macro_rules! shape_error {
    ($($arg:tt)*) => {
        $crate::error::Error::ShapeMismatch(format!($($arg)*))
    };
}
pub(crate) use shape_error;

/// Checks that a per-band list has one entry per band.
pub(crate) fn check_per_band(what: &str, got: usize, bands: usize) -> Result<()> {
    if got != bands {
        return Err(shape_error!(
            "expected one {what} per band ({bands}), got {got}"
        ));
    }
    Ok(())
}
