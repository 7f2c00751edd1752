//! cloudkit-core errors raised as cloudkit's own Python exception classes.
//!
//! The classes live in `cloudkit/errors.py` so that Python code can catch them without
//! importing the extension; each also subclasses a builtin (ValueError, OSError).

use pyo3::{import_exception, PyErr};

import_exception!(cloudkit.errors, TileShapeError);
import_exception!(cloudkit.errors, InvalidSceneError);
import_exception!(cloudkit.errors, StoreError);

/// A cloudkit-core error on its way to Python. The wrapper exists only because the orphan
/// rule forbids `From<cloudkit_core::Error> for PyErr` outside both crates.
#[derive(Debug)]
pub struct CoreError(pub cloudkit_core::Error);

impl From<cloudkit_core::Error> for CoreError {
    fn from(error: cloudkit_core::Error) -> Self {
        Self(error)
    }
}

impl From<CoreError> for PyErr {
    fn from(CoreError(error): CoreError) -> Self {
        use cloudkit_core::Error;
        let message = error.to_string();
        match error {
            Error::InvalidFactor { .. } | Error::InvalidTiling { .. } | Error::ShapeMismatch(_) => {
                TileShapeError::new_err(message)
            }
            Error::InvalidMetadata(_) => InvalidSceneError::new_err(message),
            Error::Store { .. } => StoreError::new_err(message),
        }
    }
}
