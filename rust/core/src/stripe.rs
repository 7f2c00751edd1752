//! The hot path of `cloudkit tile`: one tile row at a time, from native band stripes (read
//! with `band_window`) to finished tiles: resampled, rebased, zero-padded image, validity mask,
//! labels and the two fractions the store index records.

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::error::{check_per_band, shape_error, Result};
use crate::raster::{GridBand, Raster};
use crate::resample::{rebase, Resampling, NODATA_DN, NODATA_LABEL};
use crate::tiling::{mark_valid, TileGrid};

/// Label codes counted as cloud (thick and thin cloud).
pub const CLOUD_CODES: [u8; 2] = [1, 2];

/// What stays fixed while a scene is cut tile row by tile row.
#[derive(Clone, Debug)]
pub struct StripeLayout {
    grid: TileGrid,
    bands: Vec<Resampling>,
    shifts: Vec<i32>,
    labels: Option<Resampling>,
}

impl StripeLayout {
    pub fn new(
        grid: TileGrid,
        factors: &[i64],
        shifts: &[i32],
        label_factor: Option<i64>,
    ) -> Result<Self> {
        if factors.is_empty() {
            return Err(shape_error!("expected at least one band factor, got none"));
        }
        check_per_band("shift", shifts.len(), factors.len())?;
        Ok(Self {
            grid,
            bands: Resampling::from_factors(factors)?,
            shifts: shifts.to_vec(),
            labels: label_factor.map(Resampling::from_factor).transpose()?,
        })
    }

    pub fn grid(&self) -> &TileGrid {
        &self.grid
    }

    pub fn band_count(&self) -> usize {
        self.bands.len()
    }

    pub fn has_labels(&self) -> bool {
        self.labels.is_some()
    }
}

/// One finished tile of a tile row.
#[derive(Clone, Debug)]
pub struct StripeTile {
    pub row_origin: usize,
    pub col_origin: usize,
    /// `(bands, tile, tile)`, C order.
    pub image: Vec<u16>,
    /// `(tile, tile)`: 1 where every band has data.
    pub valid: Vec<u8>,
    /// `(tile, tile)` label codes, 255 outside the scene; `None` when the layout has no labels.
    pub labels: Option<Vec<u8>>,
    pub valid_fraction: f32,
    /// Cloudy share of the labelled pixels; NaN without labels.
    pub cloud_fraction: f32,
}

/// Cloud pixels over labelled pixels; NaN when nothing is labelled.
fn cloud_fraction(labels: &[u8]) -> f32 {
    let labelled = labels.iter().filter(|&&c| c != NODATA_LABEL).count();
    let cloudy = labels.iter().filter(|c| CLOUD_CODES.contains(c)).count();
    if labelled == 0 {
        f32::NAN
    } else {
        cloudy as f32 / labelled as f32
    }
}

/// Cuts every tile of the tile row whose origin row is `y0`. `bands` are native stripes whose
/// first row is `band_window(y0, ..).0`; `labels` likewise when the layout has labels.
pub fn cut_stripe(
    layout: &StripeLayout,
    y0: usize,
    bands: &[ArrayView2<'_, u16>],
    labels: Option<ArrayView2<'_, u8>>,
) -> Result<Vec<StripeTile>> {
    let grid = &layout.grid;
    grid.tile_row_at(y0)?;
    check_per_band("stripe", bands.len(), layout.bands.len())?;
    let rows = y0..(y0 + grid.tile()).min(grid.height());
    let width = grid.width();

    let placed = bands
        .iter()
        .zip(&layout.bands)
        .enumerate()
        .map(|(i, (stripe, &resampling))| {
            let first_row = resampling.native_span(y0, 0).0;
            let name = format!("band {i} stripe");
            GridBand::new(
                Raster::from_view(stripe)?,
                first_row,
                resampling,
                rows.clone(),
                width,
                &name,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let label_band = match (layout.labels, labels) {
        (Some(resampling), Some(stripe)) => {
            let first_row = resampling.native_span(y0, 0).0;
            let raster = Raster::from_view(&stripe)?;
            Some(GridBand::new(
                raster,
                first_row,
                resampling,
                rows,
                width,
                "label stripe",
            )?)
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(shape_error!(
                "this layout has a label factor: expected a label stripe"
            ))
        }
        (None, Some(_)) => {
            return Err(shape_error!(
                "got a label stripe but no label factor: give label_factor to use labels"
            ))
        }
    };

    let tile = grid.tile();
    let pixels = grid.pixels_per_tile();
    let tiles = (0..grid.tile_cols())
        .into_par_iter()
        .map(|col| {
            let x0 = col * grid.stride();
            let window = grid.window(y0, x0);
            let mut image = vec![NODATA_DN; placed.len() * pixels];
            for ((plane, band), &shift) in image
                .chunks_exact_mut(pixels)
                .zip(&placed)
                .zip(&layout.shifts)
            {
                band.fill_window(window, plane, tile, NODATA_DN, |dn| rebase(dn, shift));
            }
            let mut valid = vec![0u8; pixels];
            let valid_pixels = mark_valid(&image, &mut valid);
            let labels = label_band.as_ref().map(|band| {
                let mut labels = vec![NODATA_LABEL; pixels];
                band.fill_window(window, &mut labels, tile, NODATA_LABEL, |code| code);
                labels
            });
            StripeTile {
                row_origin: y0,
                col_origin: x0,
                cloud_fraction: labels.as_deref().map_or(f32::NAN, cloud_fraction),
                valid_fraction: valid_pixels as f32 / pixels as f32,
                image,
                valid,
                labels,
            }
        })
        .collect();
    Ok(tiles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::band_window;
    use crate::whole_raster::{cut_tiles, stack_bands};
    use ndarray::{s, Array2};

    fn pattern(rows: usize, cols: usize, seed: usize) -> Array2<u16> {
        Array2::from_shape_fn((rows, cols), |(y, x)| ((y * 7 + x * 13 + seed) % 40) as u16)
    }

    #[test]
    fn stripes_equal_stack_then_cut() {
        let (h, w, tile, overlap) = (14, 11, 5, 1);
        let full = [
            pattern(h, w, 1),
            pattern(7, 6, 2),
            pattern(3, 2, 3),
            pattern(28, 22, 4),
        ];
        let factors = [1, 2, 6, -2];
        let shifts = [0, -1000, 5, 3];
        let labels = Array2::from_shape_fn((7, 6), |(y, x)| [0u8, 1, 2, 3, 255][(y + x) % 5]);
        let grid = TileGrid::new(h, w, tile, overlap).unwrap();
        let layout = StripeLayout::new(grid.clone(), &factors, &shifts, Some(2)).unwrap();

        let views: Vec<_> = full.iter().map(|b| b.view()).collect();
        let stack = stack_bands(&views, &factors, h, w, Some(&shifts)).unwrap();
        let (images, valid) = cut_tiles(stack.view(), tile, overlap).unwrap();

        let mut index = 0;
        for row in 0..grid.tile_rows() {
            let y0 = grid.origin(row * grid.tile_cols()).0;
            let stripes: Vec<_> = full
                .iter()
                .zip(factors)
                .map(|(band, f)| {
                    let (r0, n) = band_window(y0, tile, f, band.nrows()).unwrap();
                    band.slice(s![r0..r0 + n, ..])
                })
                .collect();
            let (r0, n) = band_window(y0, tile, 2, labels.nrows()).unwrap();
            let label_stripe = labels.slice(s![r0..r0 + n, ..]);
            let tiles = cut_stripe(&layout, y0, &stripes, Some(label_stripe)).unwrap();
            assert_eq!(tiles.len(), grid.tile_cols());
            for tile_out in tiles {
                assert_eq!(
                    tile_out.image,
                    images
                        .slice(s![index, .., .., ..])
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                );
                assert_eq!(
                    tile_out.valid,
                    valid
                        .slice(s![index, 0, .., ..])
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                );
                let valid_pixels = tile_out.valid.iter().filter(|&&v| v == 1).count();
                assert_eq!(
                    tile_out.valid_fraction,
                    valid_pixels as f32 / (tile * tile) as f32
                );
                let codes = tile_out.labels.unwrap();
                let labelled = codes.iter().filter(|&&c| c != 255).count();
                let cloudy = codes.iter().filter(|&&c| c == 1 || c == 2).count();
                assert_eq!(tile_out.cloud_fraction, cloudy as f32 / labelled as f32);
                index += 1;
            }
        }
        assert_eq!(index, grid.len());
    }

    #[test]
    fn stripe_arguments_are_checked() {
        let grid = TileGrid::new(8, 8, 4, 0).unwrap();
        let layout = StripeLayout::new(grid.clone(), &[1], &[0], None).unwrap();
        let band = pattern(4, 8, 0);
        assert!(cut_stripe(&layout, 4, &[band.view()], None).is_ok());
        // Not a tile row origin, too few rows, wrong band count, unexpected labels.
        assert!(cut_stripe(&layout, 2, &[band.view()], None).is_err());
        assert!(cut_stripe(&layout, 0, &[band.slice(s![..3, ..])], None).is_err());
        assert!(cut_stripe(&layout, 0, &[band.view(), band.view()], None).is_err());
        let labels = Array2::<u8>::zeros((4, 8));
        assert!(cut_stripe(&layout, 0, &[band.view()], Some(labels.view())).is_err());
        assert!(StripeLayout::new(grid, &[1], &[0, 0], None).is_err());
    }

    #[test]
    fn cloud_fraction_without_labelled_pixels_is_nan() {
        assert!(cloud_fraction(&[255, 255]).is_nan());
        assert_eq!(cloud_fraction(&[1, 2, 3, 255]), 2.0 / 3.0);
    }
}
