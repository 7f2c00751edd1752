//! Whole `(bands, height, width)` stacks cut into tiles.

use ndarray::{Array4, ArrayView3};
use rayon::prelude::*;

use super::check_output_size;
use crate::error::{shape_error, Result};
use crate::raster::{GridBand, Raster};
use crate::resample::{Resampling, NODATA_DN};
use crate::tiling::{mark_valid, TileGrid};

/// Cuts a `(bands, height, width)` stack into zero-padded tiles `(n, bands, tile, tile)` and
/// their validity masks `(n, 1, tile, tile)`, in [`crate::tiling::tile_windows`] order.
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
