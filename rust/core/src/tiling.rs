//! Square tile windows over the scene, and which pixels of a tile are valid.

use crate::error::{shape_error, Error, Result};
use crate::raster::Window;
use crate::resample::NODATA_DN;

/// Tiles of `tile` x `tile` pixels laid over a `height` x `width` scene, `overlap` pixels apart
/// from their neighbours; tiles reaching past the scene edge are padded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileGrid {
    height: usize,
    width: usize,
    tile: usize,
    stride: usize,
    tile_rows: usize,
    tile_cols: usize,
}

impl TileGrid {
    pub fn new(height: usize, width: usize, tile: usize, overlap: usize) -> Result<Self> {
        // The tile-area check keeps `tile * tile` from overflowing later on.
        if tile == 0 || overlap >= tile || tile.checked_mul(tile).is_none() {
            return Err(Error::InvalidTiling { tile, overlap });
        }
        let stride = tile - overlap;
        let count_along = |extent: usize| {
            if extent <= tile {
                1
            } else {
                1 + (extent - tile).div_ceil(stride)
            }
        };
        Ok(Self {
            height,
            width,
            tile,
            stride,
            tile_rows: count_along(height),
            tile_cols: count_along(width),
        })
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn tile(&self) -> usize {
        self.tile
    }

    /// Distance between the origins of neighbouring tiles.
    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn tile_rows(&self) -> usize {
        self.tile_rows
    }

    pub fn tile_cols(&self) -> usize {
        self.tile_cols
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.tile_rows * self.tile_cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pixels_per_tile(&self) -> usize {
        self.tile * self.tile
    }

    /// Origin (row, col) of tile `index`, counting row-major.
    pub fn origin(&self, index: usize) -> (usize, usize) {
        let (r, c) = (index / self.tile_cols, index % self.tile_cols);
        (r * self.stride, c * self.stride)
    }

    /// Origins of every tile, row-major.
    pub fn origins(&self) -> Vec<(usize, usize)> {
        (0..self.len()).map(|i| self.origin(i)).collect()
    }

    /// The in-scene part of the tile with origin `(y0, x0)`.
    pub fn window(&self, y0: usize, x0: usize) -> Window {
        Window::new(
            y0,
            x0,
            self.tile.min(self.height - y0),
            self.tile.min(self.width - x0),
        )
    }

    /// Checks that `y0` is the origin row of a tile row and returns that tile row's number.
    pub fn tile_row_at(&self, y0: usize) -> Result<usize> {
        let row = y0 / self.stride;
        if !y0.is_multiple_of(self.stride) || row >= self.tile_rows {
            return Err(shape_error!(
                "row {y0} is not a tile row origin: expected a multiple of the stride {} below {}",
                self.stride,
                self.tile_rows * self.stride
            ));
        }
        Ok(row)
    }
}

/// Tile origins `(row, col)` over a `height` x `width` scene, row-major.
pub fn tile_windows(
    height: usize,
    width: usize,
    tile: usize,
    overlap: usize,
) -> Result<Vec<(usize, usize)>> {
    Ok(TileGrid::new(height, width, tile, overlap)?.origins())
}

/// Sets `valid` (one tile plane) to 1 where every band plane of `image` is non-zero, else 0,
/// and returns how many pixels are valid.
pub fn mark_valid(image: &[u16], valid: &mut [u8]) -> usize {
    valid.fill(1);
    for plane in image.chunks_exact(valid.len()) {
        for (v, &dn) in valid.iter_mut().zip(plane) {
            *v &= u8::from(dn != NODATA_DN);
        }
    }
    valid.iter().map(|&v| usize::from(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_counts_and_origins() {
        let grid = TileGrid::new(10980, 10980, 384, 0).unwrap();
        assert_eq!((grid.tile_rows(), grid.tile_cols()), (29, 29));
        assert_eq!(
            tile_windows(5, 8, 4, 1).unwrap(),
            [(0, 0), (0, 3), (0, 6), (3, 0), (3, 3), (3, 6)]
        );
        assert_eq!(tile_windows(3, 3, 4, 0).unwrap(), [(0, 0)]);
        assert!(matches!(
            TileGrid::new(5, 5, 4, 4),
            Err(Error::InvalidTiling { .. })
        ));
        assert!(TileGrid::new(5, 5, 0, 0).is_err());
    }

    #[test]
    fn overlap_zero_covers_each_pixel_once() {
        let (h, w, t) = (11, 9, 4);
        let mut hits = vec![0; h * w];
        for (y0, x0) in tile_windows(h, w, t, 0).unwrap() {
            for y in y0..(y0 + t).min(h) {
                for x in x0..(x0 + t).min(w) {
                    hits[y * w + x] += 1;
                }
            }
        }
        assert!(hits.iter().all(|&n| n == 1));
    }

    #[test]
    fn tile_row_origin_is_checked() {
        let grid = TileGrid::new(100, 100, 40, 10).unwrap();
        assert_eq!(grid.tile_row_at(60).unwrap(), 2);
        assert!(grid.tile_row_at(50).is_err());
        assert!(grid.tile_row_at(90).is_err());
    }
}
