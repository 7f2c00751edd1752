//! Whole rasters resampled onto their target grid, through the row kernels of
//! [`crate::resample`] that tile rows use.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::{check_output_size, ROWS_PER_TASK};
use crate::error::{shape_error, Result};
use crate::raster::{GridBand, Raster, Window};
use crate::resample::{BlockReduce, Resampling};

/// Resamples a whole raster onto the grid `resampling` gives it, in parallel over row blocks.
fn resample_whole<T: BlockReduce>(
    native: ArrayView2<'_, T>,
    resampling: Resampling,
) -> Result<Array2<T>> {
    let raster = Raster::from_view(&native)?;
    let height = resampling.target_extent(raster.rows())?;
    let width = resampling.target_extent(raster.cols())?;
    check_output_size::<T>(&[height, width])?;
    let band = GridBand::new(raster, 0, resampling, 0..height, width, "array")?;
    // Every element is written below; the default only avoids handing out uninitialised memory.
    let mut out = Array2::from_elem((height, width), T::default());
    if let Some(flat) = out.as_slice_mut().filter(|flat| !flat.is_empty()) {
        flat.par_chunks_mut(ROWS_PER_TASK * width)
            .enumerate()
            .for_each(|(task, block)| {
                let y0 = task * ROWS_PER_TASK;
                let window = Window::new(y0, 0, block.len() / width, width);
                band.fill_window(window, block, width, T::default(), |v| v);
            });
    }
    Ok(out)
}

fn check_factor(name: &str, factor: usize) -> Result<()> {
    if factor == 0 {
        return Err(shape_error!("{name} factor must be >= 1, got 0"));
    }
    Ok(())
}

/// Nearest-neighbour upsampling: each pixel becomes a `k` x `k` block.
pub fn upsample_nearest<T: BlockReduce>(native: ArrayView2<'_, T>, k: usize) -> Result<Array2<T>> {
    check_factor("upsampling", k)?;
    resample_whole(native, Resampling::Up(k))
}

/// Mean of the non-zero DNs of each `d` x `d` block; trailing partial blocks are dropped.
pub fn downsample_mean(native: ArrayView2<'_, u16>, d: usize) -> Result<Array2<u16>> {
    check_factor("downsampling", d)?;
    resample_whole(native, Resampling::Down(d))
}

/// Most frequent label code (255 ignored) of each `d` x `d` block, ties to the smallest code.
pub fn downsample_mode(native: ArrayView2<'_, u8>, d: usize) -> Result<Array2<u8>> {
    check_factor("downsampling", d)?;
    resample_whole(native, Resampling::Down(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn upsample_nearest_repeats_blocks() {
        let a = array![[1u16, 2], [3, 4]];
        let up = upsample_nearest(a.view(), 2).unwrap();
        assert_eq!(
            up,
            array![[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
        );
        assert!(upsample_nearest(a.view(), 0).is_err());
        assert!(upsample_nearest(a.view(), usize::MAX / 4).is_err());
    }

    #[test]
    fn downsample_drops_partial_blocks() {
        let a = array![[1u16, 2, 0, 0, 9], [0, 0, 0, 0, 9], [7, 7, 7, 7, 9]];
        // The last row and column fill no 2 x 2 block.
        assert_eq!(downsample_mean(a.view(), 2).unwrap(), array![[2u16, 0]]);
        let codes = array![
            [3u8, 1, 255, 255],
            [1, 3, 255, 255],
            [2, 2, 0, 255],
            [2, 0, 255, 255]
        ];
        assert_eq!(
            downsample_mode(codes.view(), 2).unwrap(),
            array![[1u8, 255], [2, 0]]
        );
        assert!(downsample_mean(a.view(), 0).is_err());
    }

    #[test]
    fn upsample_then_downsample_is_identity() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j + 1) as u16);
        let round_trip = downsample_mean(upsample_nearest(a.view(), 3).unwrap().view(), 3).unwrap();
        assert_eq!(round_trip, a);
    }
}
