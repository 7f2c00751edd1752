//! DN to reflectance: `(DN + offset) / quantification` in f32, no-data and padding as NaN.

use ndarray::{Array3, Array4, ArrayView2, ArrayView3};
use rayon::prelude::*;

use super::bands::place_bands;
use super::check_output_size;
use crate::error::{check_per_band, shape_error, Error, Result};
use crate::tiling::TileGrid;

/// Reflectance of one DN, in exactly the order numpy computes it in float32.
#[inline]
pub fn to_reflectance(dn: u16, offset: f32, quantification: f32) -> f32 {
    if dn == 0 {
        f32::NAN
    } else {
        (f32::from(dn) + offset) / quantification
    }
}

fn check_scaling(quantification: f32, offsets: &[f32], bands: usize) -> Result<()> {
    if !(quantification.is_finite() && quantification > 0.0) {
        return Err(Error::InvalidMetadata(format!(
            "quantification value must be a positive number (10000 for Sentinel-2), got \
             {quantification}"
        )));
    }
    check_per_band("offset", offsets.len(), bands)
}

/// Scales a `(bands, y, x)` DN stack to reflectance, one offset per band.
pub fn scale_reflectance(
    stack: ArrayView3<'_, u16>,
    quantification: f32,
    offsets: &[f32],
) -> Result<Array3<f32>> {
    let (bands, height, width) = stack.dim();
    check_scaling(quantification, offsets, bands)?;
    let dns = stack.to_slice().ok_or_else(|| {
        shape_error!("expected a C-contiguous (bands, y, x) stack (use np.ascontiguousarray)")
    })?;
    let mut out = Array3::<f32>::zeros((bands, height, width));
    let plane = height * width;
    if plane == 0 {
        return Ok(out);
    }
    let flat = out
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    flat.par_chunks_mut(plane)
        .zip(dns.par_chunks(plane))
        .zip(offsets.par_iter())
        .for_each(|((out, dns), &offset)| {
            out.par_chunks_mut(width)
                .zip(dns.par_chunks(width))
                .for_each(|(out, dns)| {
                    for (o, &dn) in out.iter_mut().zip(dns) {
                        *o = to_reflectance(dn, offset, quantification);
                    }
                });
        });
    Ok(out)
}

/// The fused kernel: resamples native bands onto a `height` x `width` grid, scales them to
/// reflectance and cuts `(n, bands, tile, tile)` tiles in one pass, in parallel over tiles.
/// No full-scene stack is built; each output element is written once. Padding is NaN.
#[allow(clippy::too_many_arguments)] // mirrors the Python signature one to one
pub fn reflectance_tiles(
    bands: &[ArrayView2<'_, u16>],
    factors: &[i64],
    height: usize,
    width: usize,
    quantification: f32,
    offsets: &[f32],
    tile: usize,
    overlap: usize,
) -> Result<Array4<f32>> {
    let grid = TileGrid::new(height, width, tile, overlap)?;
    let placed = place_bands(bands, factors, height, width)?;
    check_scaling(quantification, offsets, bands.len())?;

    let pixels = grid.pixels_per_tile();
    check_output_size::<f32>(&[grid.len(), bands.len(), pixels])?;
    // Zeroed memory comes lazily from the OS, so this is no extra pass over 6 GB.
    let mut tiles = Array4::<f32>::zeros((grid.len(), bands.len(), tile, tile));
    let flat = tiles
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    flat.par_chunks_mut(bands.len() * pixels)
        .enumerate()
        .for_each(|(index, out)| {
            let (y0, x0) = grid.origin(index);
            let window = grid.window(y0, x0);
            for ((plane, band), &offset) in out.chunks_exact_mut(pixels).zip(&placed).zip(offsets) {
                band.fill_window(window, plane, tile, f32::NAN, |dn| {
                    to_reflectance(dn, offset, quantification)
                });
            }
        });
    Ok(tiles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whole_raster::{cut_tiles, stack_bands};
    use ndarray::{array, Array2, Zip};

    fn same_or_both_nan(a: f32, b: f32) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn scale_uses_offset_then_quantification() {
        let stack = array![[[0u16, 1000]], [[1000, 65535]]];
        let out = scale_reflectance(stack.view(), 10000.0, &[-1000.0, 0.0]).unwrap();
        assert!(out[[0, 0, 0]].is_nan());
        assert_eq!(out[[0, 0, 1]], 0.0);
        assert_eq!(out[[1, 0, 0]], 0.1);
        assert_eq!(out[[1, 0, 1]], 6.5535);
        assert!(scale_reflectance(stack.view(), 0.0, &[0.0, 0.0]).is_err());
        assert!(scale_reflectance(stack.view(), 1.0, &[0.0]).is_err());
    }

    #[test]
    fn fused_kernel_equals_stack_cut_scale() {
        let (h, w) = (13, 11);
        let pattern = |rows, cols, seed: usize| {
            Array2::from_shape_fn((rows, cols), |(y, x)| ((y * 7 + x * 13 + seed) % 50) as u16)
        };
        let b10 = pattern(h, w, 1);
        let b20 = pattern(7, 6, 2);
        let b60 = pattern(3, 2, 3);
        let fine = pattern(26, 22, 4);
        let bands = [b10.view(), b20.view(), b60.view(), fine.view()];
        let factors = [1, 2, 6, -2];
        let offsets = [0.0, -1000.0, 3.5, -0.25];
        for (tile, overlap) in [(4, 0), (5, 2), (16, 0)] {
            let fused =
                reflectance_tiles(&bands, &factors, h, w, 1e4, &offsets, tile, overlap).unwrap();
            let stack = stack_bands(&bands, &factors, h, w, None).unwrap();
            let (images, _) = cut_tiles(stack.view(), tile, overlap).unwrap();
            let (n, c, t, _) = images.dim();
            let expected = scale_reflectance(
                images.to_shape((n * c, t, t)).unwrap().view(),
                1e4,
                &offsets.repeat(n),
            )
            .unwrap();
            let expected = expected.to_shape((n, c, t, t)).unwrap();
            assert_eq!(fused.dim(), expected.dim());
            assert!(Zip::from(&fused)
                .and(&expected)
                .all(|&a, &b| same_or_both_nan(a, b)));
        }
    }
}
