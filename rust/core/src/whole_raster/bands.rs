//! Stacking whole native-resolution bands onto one target grid.

use ndarray::{Array3, ArrayView2};
use rayon::prelude::*;

use super::{check_output_size, ROWS_PER_TASK};
use crate::error::{check_per_band, shape_error, Result};
use crate::raster::{GridBand, Raster, Window};
use crate::resample::{rebase, Resampling, NODATA_DN};

/// Places whole native bands on a `height` x `width` grid, one factor each.
pub(super) fn place_bands<'a>(
    bands: &[ArrayView2<'a, u16>],
    factors: &[i64],
    height: usize,
    width: usize,
) -> Result<Vec<GridBand<'a, u16>>> {
    check_per_band("factor", factors.len(), bands.len())?;
    if bands.is_empty() {
        return Err(shape_error!("expected at least one band, got none"));
    }
    bands
        .iter()
        .zip(factors)
        .enumerate()
        .map(|(i, (band, &factor))| {
            let raster = Raster::from_view(band)?;
            let resampling = Resampling::from_factor(factor)?;
            GridBand::new(
                raster,
                0,
                resampling,
                0..height,
                width,
                &format!("band {i}"),
            )
        })
        .collect()
}

/// Resamples native bands to a `height` x `width` grid, rebases them by `shifts` (none: 0)
/// and stacks them as `(bands, height, width)`.
pub fn stack_bands(
    bands: &[ArrayView2<'_, u16>],
    factors: &[i64],
    height: usize,
    width: usize,
    shifts: Option<&[i32]>,
) -> Result<Array3<u16>> {
    let placed = place_bands(bands, factors, height, width)?;
    let shifts = match shifts {
        Some(shifts) => {
            check_per_band("shift", shifts.len(), bands.len())?;
            shifts.to_vec()
        }
        None => vec![0; bands.len()],
    };
    check_output_size::<u16>(&[bands.len(), height, width])?;
    let mut stack = Array3::<u16>::zeros((bands.len(), height, width));
    let flat = stack
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    if flat.is_empty() {
        return Ok(stack);
    }
    flat.par_chunks_mut(height * width)
        .zip(placed.par_iter().zip(shifts.par_iter()))
        .for_each(|(plane, (band, &shift))| {
            plane
                .par_chunks_mut(ROWS_PER_TASK * width)
                .enumerate()
                .for_each(|(task, rows)| {
                    let window = Window::new(task * ROWS_PER_TASK, 0, rows.len() / width, width);
                    band.fill_window(window, rows, width, NODATA_DN, |dn| rebase(dn, shift));
                });
        });
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, s};

    #[test]
    fn stack_mixes_factors_and_crops_extra() {
        let fine = array![
            [1u16, 2, 3, 4],
            [5, 6, 7, 8],
            [9, 10, 11, 12],
            [13, 14, 15, 16]
        ];
        let same = array![[1u16, 0, 3], [4, 5, 6]];
        let coarse = array![[7u16, 8]];
        let stack = stack_bands(
            &[fine.view(), same.view(), coarse.view()],
            &[-2, 1, 2],
            2,
            3,
            Some(&[0, 10, -7]),
        );
        // The fine band gives only 2 columns at factor -2: it cannot cover 3.
        assert!(stack.unwrap_err().to_string().contains("band 0"));

        let stack = stack_bands(
            &[same.view(), coarse.view()],
            &[1, 2],
            2,
            3,
            Some(&[10, -7]),
        )
        .unwrap();
        assert_eq!(
            stack.slice(s![0, .., ..]),
            array![[11u16, 0, 13], [14, 15, 16]]
        );
        // 7 - 7 clamps to 1, not 0: rebasing never creates no-data.
        assert_eq!(stack.slice(s![1, .., ..]), array![[1u16, 1, 1], [1, 1, 1]]);
    }

    #[test]
    fn stack_checks_list_lengths() {
        let a = array![[1u16]];
        assert!(stack_bands(&[a.view()], &[1, 1], 1, 1, None).is_err());
        assert!(stack_bands(&[a.view()], &[1], 1, 1, Some(&[1, 2])).is_err());
        assert!(stack_bands(&[], &[], 1, 1, None).is_err());
    }
}
