//! Bringing a band onto the target grid: nearest-neighbour upsampling, block downsampling
//! (mean of valid DNs for reflectance, mode for label codes) and the window math that says
//! which native rows a run of target rows needs.
//!
//! The row kernels work on plain slices so the inner loops carry no per-pixel bounds checks;
//! [`crate::raster::GridBand`] builds tile rows (and the whole-raster kernels) from them.

use crate::error::{shape_error, Error, Result};

/// DN 0 marks no-data in Sentinel-2 products.
pub const NODATA_DN: u16 = 0;
/// Label code for "no label" in cloudkit's label scheme.
pub const NODATA_LABEL: u8 = 255;

/// How a band relates to the target grid, decoded from its integer factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resampling {
    /// Native grid is the target grid.
    Same,
    /// Native pixels are `k` times coarser: each one becomes a k x k block.
    Up(usize),
    /// Native pixels are `d` times finer: each d x d block becomes one pixel.
    Down(usize),
}

impl Resampling {
    /// Decodes a factor: k > 1 upsample by k, k < -1 downsample by |k|, 1 or -1 unchanged.
    pub fn from_factor(factor: i64) -> Result<Self> {
        let magnitude =
            usize::try_from(factor.unsigned_abs()).map_err(|_| Error::InvalidFactor { factor })?;
        match factor {
            0 => Err(Error::InvalidFactor { factor }),
            1 | -1 => Ok(Self::Same),
            k if k > 0 => Ok(Self::Up(magnitude)),
            _ => Ok(Self::Down(magnitude)),
        }
    }

    /// The factor this resampling was decoded from (1 for [`Resampling::Same`]), for messages.
    pub fn factor(self) -> i64 {
        match self {
            Self::Same => 1,
            Self::Up(k) => k as i64,
            Self::Down(d) => -(d as i64),
        }
    }

    /// Decodes one factor per band.
    pub fn from_factors(factors: &[i64]) -> Result<Vec<Self>> {
        factors.iter().map(|&f| Self::from_factor(f)).collect()
    }

    /// Native rows `[start, end)` that target rows `[y0, y0 + rows)` are made from.
    pub fn native_span(self, y0: usize, rows: usize) -> (usize, usize) {
        let end = y0.saturating_add(rows);
        match self {
            Self::Same => (y0, end),
            Self::Up(k) => (y0 / k, end.div_ceil(k)),
            Self::Down(d) => (y0.saturating_mul(d), end.saturating_mul(d)),
        }
    }

    /// How many target pixels `native` pixels give along one axis (partial blocks dropped).
    pub fn target_extent(self, native: usize) -> Result<usize> {
        match self {
            Self::Same => Ok(native),
            Self::Up(k) => native
                .checked_mul(k)
                .ok_or_else(|| shape_error!("{native} pixels upsampled by {k} overflow")),
            Self::Down(d) => Ok(native / d),
        }
    }
}

/// Which native rows a band must supply so that target rows `[y0, y0 + rows)` can be produced,
/// as `(first native row, number of rows)`, clamped to the band's `native_height`.
///
/// Python reads band windows with exactly this, so it is the single source of truth.
pub fn band_window(
    y0: usize,
    rows: usize,
    factor: i64,
    native_height: usize,
) -> Result<(usize, usize)> {
    let (start, end) = Resampling::from_factor(factor)?.native_span(y0, rows);
    let end = end.min(native_height);
    Ok((start, end.saturating_sub(start)))
}

/// Rebases one DN by a radiometric shift; no-data stays no-data, valid data stays valid.
#[inline]
pub fn rebase(dn: u16, shift: i32) -> u16 {
    if dn == NODATA_DN {
        NODATA_DN
    } else {
        // Clamp to 1 so that a valid pixel never turns into no-data.
        (i32::from(dn) + shift).clamp(1, i32::from(u16::MAX)) as u16
    }
}

/// Writes target columns `[x0, x0 + out.len())` of a row upsampled by `k` from `native`
/// (the whole native row), mapping each native value once.
pub fn upsample_row<T: Copy, O: Copy>(
    native: &[T],
    k: usize,
    x0: usize,
    out: &mut [O],
    map: impl Fn(T) -> O,
) {
    let mut native = &native[x0 / k..];
    let mut out = out;
    let into_block = x0 % k;
    if into_block > 0 && !out.is_empty() {
        // The window starts inside a native pixel's block: finish that block first.
        let head = (k - into_block).min(out.len());
        let (first, rest) = out.split_at_mut(head);
        first.fill(map(native[0]));
        out = rest;
        native = &native[1..];
    }
    for (block, &value) in out.chunks_mut(k).zip(native) {
        block.fill(map(value));
    }
}

/// How a d x d block of native pixels becomes one target pixel; depends on what the values are.
pub trait BlockReduce: Copy + Default + Send + Sync + 'static {
    /// Fills `out[j]` from the block made of columns `[j*d, (j+1)*d)` of every slice in `rows`.
    /// Each row slice must hold at least `out.len() * d` values.
    fn reduce_blocks(rows: &[&[Self]], d: usize, out: &mut [Self]);
}

/// Reflectance DNs: mean of the non-zero values, rounded half up; all zero -> 0.
impl BlockReduce for u16 {
    fn reduce_blocks(rows: &[&[u16]], d: usize, out: &mut [u16]) {
        let mut sums = vec![0u64; out.len()];
        let mut counts = vec![0u64; out.len()];
        for row in rows {
            let blocks = row.chunks_exact(d);
            for ((sum, count), block) in sums.iter_mut().zip(counts.iter_mut()).zip(blocks) {
                for &dn in block {
                    *sum += u64::from(dn);
                    *count += u64::from(dn != NODATA_DN);
                }
            }
        }
        for ((o, &sum), &count) in out.iter_mut().zip(&sums).zip(&counts) {
            // No valid DN (count 0) gives no-data; a mean of u16 values always fits in u16.
            *o = (sum + count / 2)
                .checked_div(count)
                .map_or(NODATA_DN, |mean| mean as u16);
        }
    }
}

/// Label codes: the most frequent code other than 255, ties to the smallest; all 255 -> 255.
impl BlockReduce for u8 {
    fn reduce_blocks(rows: &[&[u8]], d: usize, out: &mut [u8]) {
        let mut counts = [0u32; 256];
        for (j, o) in out.iter_mut().enumerate() {
            let block = || rows.iter().flat_map(|row| &row[j * d..(j + 1) * d]);
            let mut best = NODATA_LABEL;
            let mut best_count = 0;
            for &code in block().filter(|&&c| c != NODATA_LABEL) {
                let count = &mut counts[usize::from(code)];
                *count += 1;
                if *count > best_count || (*count == best_count && code < best) {
                    best = code;
                    best_count = *count;
                }
            }
            // Reset only what this block touched, cheaper than clearing 256 counters.
            for &code in block() {
                counts[usize::from(code)] = 0;
            }
            *o = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_decode() {
        assert_eq!(Resampling::from_factor(1).unwrap(), Resampling::Same);
        assert_eq!(Resampling::from_factor(-1).unwrap(), Resampling::Same);
        assert_eq!(Resampling::from_factor(6).unwrap(), Resampling::Up(6));
        assert_eq!(Resampling::from_factor(-2).unwrap(), Resampling::Down(2));
        assert!(matches!(
            Resampling::from_factor(0),
            Err(Error::InvalidFactor { factor: 0 })
        ));
    }

    #[test]
    fn band_window_up_down_and_clamp() {
        // Target rows 384..768 of a 60 m band (k = 6): rows 64..128.
        assert_eq!(band_window(384, 384, 6, 1830).unwrap(), (64, 64));
        // Rows not on a block edge round outwards.
        assert_eq!(band_window(5, 4, 2, 100).unwrap(), (2, 3));
        assert_eq!(band_window(10, 5, -3, 1000).unwrap(), (30, 15));
        // Past the band's end the window is clamped.
        assert_eq!(band_window(10800, 384, 6, 1830).unwrap(), (1800, 30));
        assert_eq!(band_window(10, 5, 1, 12).unwrap(), (10, 2));
        assert!(band_window(0, 1, 0, 1).is_err());
    }

    #[test]
    fn rebase_keeps_nodata_and_clamps() {
        assert_eq!(rebase(0, -1000), 0);
        assert_eq!(rebase(500, -1000), 1);
        assert_eq!(rebase(65000, 1000), 65535);
        assert_eq!(rebase(1500, -1000), 500);
    }

    #[test]
    fn upsample_row_from_inside_a_block() {
        let native = [1u16, 2, 3];
        let mut out = [0u16; 5];
        upsample_row(&native, 3, 2, &mut out, |v| v);
        assert_eq!(out, [1, 2, 2, 2, 3]);
    }

    /// One row of `BlockReduce` output from `rows` in blocks of `d`.
    fn reduce<T: BlockReduce>(rows: &[&[T]], d: usize) -> Vec<T> {
        let mut out = vec![T::default(); rows[0].len() / d];
        T::reduce_blocks(rows, d, &mut out);
        out
    }

    #[test]
    fn block_mean_ignores_nodata_and_rounds_half_up() {
        // (1 + 2) / 2 = 1.5 -> 2; the all-zero block stays 0; the trailing column drops.
        assert_eq!(
            reduce::<u16>(&[&[1, 2, 0, 0, 9], &[0, 0, 0, 0, 9]], 2),
            [2, 0]
        );
    }

    #[test]
    fn block_mean_of_large_values_does_not_overflow() {
        let row: &[u16] = &[u16::MAX; 16];
        assert_eq!(reduce(&[row; 16], 16), [u16::MAX]);
    }

    #[test]
    fn block_mode_prefers_smallest_code_on_ties() {
        let top: [&[u8]; 2] = [&[3, 1, 255, 255], &[1, 3, 255, 255]];
        let bottom: [&[u8]; 2] = [&[2, 2, 0, 255], &[2, 0, 255, 255]];
        assert_eq!(reduce::<u8>(&top, 2), [1, 255]);
        assert_eq!(reduce::<u8>(&bottom, 2), [2, 0]);
    }
}
