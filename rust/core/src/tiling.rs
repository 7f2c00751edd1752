//! Square tile windows over the scene and cutting a band stack into zero-padded tiles.

use ndarray::{Array4, ArrayView3};
use rayon::prelude::*;

use crate::error::{shape_error, Error, Result};
use crate::raster::{check_output_size, GridBand, Raster, Window};
use crate::resample::{Resampling, NODATA_DN};

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

/// Cuts a `(bands, height, width)` stack into zero-padded tiles `(n, bands, tile, tile)` and
/// their validity masks `(n, 1, tile, tile)`, in [`tile_windows`] order.
pub fn cut_tiles(
    stack: ArrayView3<'_, u16>,
    tile: usize,
    overlap: usize,
) -> Result<(Array4<u16>, Array4<u8>)> {
    let (bands, height, width) = stack.dim();
    let grid = TileGrid::new(height, width, tile, overlap)?;
    if bands == 0 {
        return Err(shape_error!(
            "expected a stack with at least one band, got 0"
        ));
    }
    let flat = stack.to_slice().ok_or_else(|| {
        shape_error!("expected a C-contiguous (bands, y, x) stack (use np.ascontiguousarray)")
    })?;
    let plane_len = height * width;
    let planes = (0..bands)
        .map(|b| {
            let raster = Raster::new(&flat[b * plane_len..(b + 1) * plane_len], height, width)?;
            GridBand::new(raster, 0, Resampling::Same, 0..height, width, "stack")
        })
        .collect::<Result<Vec<_>>>()?;

    let pixels = grid.pixels_per_tile();
    check_output_size::<u16>(&[grid.len(), bands, pixels])?;
    let mut images = Array4::<u16>::zeros((grid.len(), bands, tile, tile));
    let mut valid = Array4::<u8>::zeros((grid.len(), 1, tile, tile));
    let images_flat = images
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    let valid_flat = valid
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    images_flat
        .par_chunks_mut(bands * pixels)
        .zip(valid_flat.par_chunks_mut(pixels))
        .enumerate()
        .for_each(|(index, (image, mask))| {
            let (y0, x0) = grid.origin(index);
            let window = grid.window(y0, x0);
            for (plane, band) in image.chunks_exact_mut(pixels).zip(&planes) {
                band.fill_window(window, plane, tile, NODATA_DN, |dn| dn);
            }
            mark_valid(image, mask);
        });
    Ok((images, valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array3};

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

    #[test]
    fn cut_tiles_pads_with_zero_and_marks_validity() {
        let stack = Array3::from_shape_fn((2, 5, 3), |(b, y, x)| (b * 100 + y * 3 + x) as u16);
        let (images, valid) = cut_tiles(stack.view(), 4, 0).unwrap();
        assert_eq!(images.dim(), (2, 2, 4, 4));
        assert_eq!(
            images.slice(s![0, .., ..4, ..3]),
            stack.slice(s![.., 0..4, ..])
        );
        assert_eq!(images.slice(s![1, .., 0, ..3]), stack.slice(s![.., 4, ..]));
        assert!(images.slice(s![1, .., 1.., ..]).iter().all(|&v| v == 0));
        // Pixel (0, 0) of band 0 is DN 0: invalid, like the padding.
        assert_eq!(valid[[0, 0, 0, 0]], 0);
        assert_eq!(valid[[0, 0, 0, 1]], 1);
        assert_eq!(valid[[0, 0, 0, 3]], 0);
        assert_eq!(
            valid.iter().map(|&v| usize::from(v)).sum::<usize>(),
            5 * 3 - 1
        );
    }
}
