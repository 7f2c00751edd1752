//! Borrowed rasters and bands placed on the target grid.
//!
//! A [`GridBand`] is a native raster (a whole band or a stripe of rows read with
//! `band_window`) plus the resampling that puts it on the target grid. Every kernel fills its
//! output through [`GridBand::fill_window`], so resampling lives in one place.

use std::ops::Range;

use ndarray::ArrayView2;

use crate::error::{shape_error, Result};
use crate::resample::{upsample_row, BlockReduce, Resampling};

/// A C-ordered 2-D raster held as one slice, so that rows are plain slices.
#[derive(Debug)]
pub struct Raster<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
}

// Derives would demand `T: Clone`; a borrowed raster is always cheap to copy.
impl<T> Clone for Raster<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Raster<'_, T> {}

impl<'a, T> Raster<'a, T> {
    /// Wraps `data` as `rows` x `cols`; the slice must hold exactly that many values.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(shape_error!(
                "a {rows} x {cols} raster needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            ));
        }
        Ok(Self { data, rows, cols })
    }

    /// Borrows a C-contiguous view; other layouts are refused rather than silently copied.
    pub fn from_view(view: &ArrayView2<'a, T>) -> Result<Self> {
        let data = view.to_slice().ok_or_else(|| {
            shape_error!("expected a C-contiguous 2-D array (use np.ascontiguousarray)")
        })?;
        Ok(Self {
            data,
            rows: view.nrows(),
            cols: view.ncols(),
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline]
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// The part of an output buffer that lies inside the scene: target rows `y0..y0 + rows`,
/// columns `x0..x0 + cols`. The rest of the buffer is padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub y0: usize,
    pub x0: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Window {
    pub fn new(y0: usize, x0: usize, rows: usize, cols: usize) -> Self {
        Self { y0, x0, rows, cols }
    }
}

/// A native raster placed on the target grid.
#[derive(Debug)]
pub struct GridBand<'a, T> {
    raster: Raster<'a, T>,
    /// Native row index of the raster's first row (non-zero for stripes).
    first_row: usize,
    resampling: Resampling,
}

impl<'a, T: BlockReduce> GridBand<'a, T> {
    /// Places `raster`, whose first row is native row `first_row`, on the target grid, after
    /// checking that it holds every native pixel needed for target `rows` and columns
    /// `0..width`. Extra native rows or columns are ignored.
    pub fn new(
        raster: Raster<'a, T>,
        first_row: usize,
        resampling: Resampling,
        rows: Range<usize>,
        width: usize,
        name: &str,
    ) -> Result<Self> {
        let (_, needed_cols) = resampling.native_span(0, width);
        let (start, end) = if rows.is_empty() {
            (first_row, first_row)
        } else {
            resampling.native_span(rows.start, rows.len())
        };
        let held_end = first_row + raster.rows();
        if raster.cols() < needed_cols || start < first_row || end > held_end {
            return Err(shape_error!(
                "{name} holds native rows {first_row}..{held_end} x {} columns; at factor {} \
                 target rows {}..{} x {width} columns need native rows {start}..{end} x \
                 {needed_cols} columns (read bands with band_window)",
                raster.cols(),
                resampling.factor(),
                rows.start,
                rows.end,
            ));
        }
        Ok(Self {
            raster,
            first_row,
            resampling,
        })
    }

    #[inline]
    fn native_row(&self, y: usize) -> &'a [T] {
        self.raster.row(y - self.first_row)
    }

    /// Target rows with equal keys are made from the same native rows, hence identical.
    #[inline]
    fn row_key(&self, y: usize) -> usize {
        match self.resampling {
            Resampling::Up(k) => y / k,
            Resampling::Same | Resampling::Down(_) => y,
        }
    }

    /// Writes target row `y`, columns `x0..x0 + out.len()`, through `map`.
    pub fn fill_row<O: Copy>(&self, y: usize, x0: usize, out: &mut [O], map: impl Fn(T) -> O) {
        match self.resampling {
            Resampling::Same => {
                let native = &self.native_row(y)[x0..x0 + out.len()];
                for (o, &value) in out.iter_mut().zip(native) {
                    *o = map(value);
                }
            }
            Resampling::Up(k) => upsample_row(self.native_row(y / k), k, x0, out, map),
            Resampling::Down(d) => {
                let cols = x0 * d..(x0 + out.len()) * d;
                let rows: Vec<&[T]> = (y * d..(y + 1) * d)
                    .map(|native_y| &self.native_row(native_y)[cols.clone()])
                    .collect();
                let mut reduced = vec![T::default(); out.len()];
                T::reduce_blocks(&rows, d, &mut reduced);
                for (o, &value) in out.iter_mut().zip(&reduced) {
                    *o = map(value);
                }
            }
        }
    }

    /// Fills `out` (rows of `out_cols` values) with `window` at its top-left and `pad`
    /// everywhere else, writing each element once.
    pub fn fill_window<O: Copy>(
        &self,
        window: Window,
        out: &mut [O],
        out_cols: usize,
        pad: O,
        map: impl Fn(T) -> O,
    ) {
        let out_rows = out.len() / out_cols;
        let mut previous_key = None;
        for i in 0..out_rows {
            let (done, rest) = out.split_at_mut(i * out_cols);
            let row = &mut rest[..out_cols];
            if i >= window.rows {
                row.fill(pad);
                continue;
            }
            let y = window.y0 + i;
            let key = self.row_key(y);
            if previous_key == Some(key) {
                // Upsampled rows repeat: copying beats resampling again.
                row.copy_from_slice(&done[(i - 1) * out_cols..]);
                continue;
            }
            let (inside, outside) = row.split_at_mut(window.cols);
            self.fill_row(y, window.x0, inside, &map);
            outside.fill(pad);
            previous_key = Some(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_refuses_wrong_length_and_layout() {
        assert!(Raster::new(&[1u16, 2, 3], 2, 2).is_err());
        let a = ndarray::Array2::<u16>::zeros((3, 4));
        let transposed = a.t();
        assert!(Raster::from_view(&transposed).is_err());
        assert!(Raster::from_view(&a.view()).is_ok());
    }

    #[test]
    fn grid_band_checks_coverage() {
        let data = [1u16; 6];
        let raster = Raster::new(&data, 2, 3).unwrap();
        // 2 x 3 native at factor 2 covers 4 x 6 target pixels, not 5 rows.
        assert!(GridBand::new(raster, 0, Resampling::Up(2), 0..4, 6, "band 0").is_ok());
        let err = GridBand::new(raster, 0, Resampling::Up(2), 0..5, 6, "band 0").unwrap_err();
        assert!(err.to_string().contains("band 0 holds native rows 0..2"));
        // A stripe starting at native row 1 cannot give target row 0.
        assert!(GridBand::new(raster, 1, Resampling::Same, 0..2, 3, "s").is_err());
        assert!(GridBand::new(raster, 1, Resampling::Same, 1..3, 3, "s").is_ok());
    }

    #[test]
    fn fill_window_pads_and_maps() {
        let data = [1u16, 2, 3, 4];
        let raster = Raster::new(&data, 2, 2).unwrap();
        let band = GridBand::new(raster, 0, Resampling::Up(2), 0..4, 4, "b").unwrap();
        let mut out = [0f32; 9];
        band.fill_window(Window::new(1, 1, 2, 2), &mut out, 3, f32::NAN, |v| {
            f32::from(v)
        });
        let expected = [
            1.0,
            2.0,
            f32::NAN,
            3.0,
            4.0,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        for (got, want) in out.iter().zip(expected) {
            assert!(got == &want || (got.is_nan() && want.is_nan()));
        }
    }
}
