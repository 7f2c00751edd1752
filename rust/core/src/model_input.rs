//! Tile-store values to the network's input in one pass.
//!
//! The conversion is `cloudkit.data.reflectance.store_reflectance` (`value * scale + offset`
//! in f32, two roundings, 0.0 where the value is 0 or the pixel is not valid), fused with the
//! transpose to channels-last and, for bf16 models, the rounding to bf16. In torch the same
//! takes six passes over the float32 windows; here each output element is written once.

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use crate::error::{check_per_band, shape_error, Result};

/// The bf16 bit pattern nearest to `x`, ties to even: what torch's `.to(torch.bfloat16)`
/// gives for every finite value (the inputs here are never NaN).
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// Reflectance of one store value, as `store_reflectance` computes it.
#[inline]
fn reflectance(value: u16, valid: bool, scale: f32, offset: f32) -> f32 {
    if value == 0 || !valid {
        0.0
    } else {
        f32::from(value) * scale + offset
    }
}

/// `(n, bands, h, w)` store values and `(n, 1, h, w)` validity to `(n, h, w, bands)`
/// reflectance, each element passed through `convert` (identity for f32, [`bf16_bits`]).
pub fn window_inputs<T: Copy + Default + Send + Sync>(
    values: ArrayView4<'_, u16>,
    valid: ArrayView4<'_, u8>,
    scale: &[f32],
    offset: &[f32],
    convert: impl Fn(f32) -> T + Sync,
) -> Result<Array4<T>> {
    let (n, bands, h, w) = values.dim();
    check_per_band("scale", scale.len(), bands)?;
    check_per_band("offset", offset.len(), bands)?;
    if valid.dim() != (n, 1, h, w) {
        return Err(shape_error!(
            "valid has shape {:?}; expected ({n}, 1, {h}, {w}) to match the values",
            valid.shape()
        ));
    }
    let (Some(values), Some(valid)) = (values.to_slice(), valid.to_slice()) else {
        return Err(shape_error!("values and valid must be C-contiguous"));
    };
    let mut out = Array4::<T>::default((n, h, w, bands));
    let row = w * bands;
    if row == 0 {
        return Ok(out);
    }
    let flat = out
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    flat.par_chunks_mut(row)
        .enumerate()
        .for_each(|(index, out_row)| {
            let (window, y) = (index / h, index % h);
            let valid_row = &valid[(window * h + y) * w..][..w];
            let plane = |band: usize| &values[((window * bands + band) * h + y) * w..][..w];
            for band in 0..bands {
                let (s, o) = (scale[band], offset[band]);
                for ((x, &value), &ok) in plane(band).iter().enumerate().zip(valid_row) {
                    out_row[x * bands + band] = convert(reflectance(value, ok != 0, s, o));
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(0.0), 0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0)
        assert_eq!(bf16_bits(1.0 + f32::powi(2.0, -8)), 0x3f80);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: up to the even one
        assert_eq!(bf16_bits(1.0 + 3.0 * f32::powi(2.0, -8)), 0x3f82);
        assert_eq!(bf16_bits(-0.1), 0xbdcd);
    }

    #[test]
    fn converts_masks_and_moves_bands_last() {
        let values = Array4::from_shape_vec((1, 2, 1, 3), vec![0, 1000, 2000, 5, 6, 7]).unwrap();
        let valid = Array4::from_shape_vec((1, 1, 1, 3), vec![1, 1, 0]).unwrap();
        let out = window_inputs(
            values.view(),
            valid.view(),
            &[1e-4, 1.0],
            &[-0.1, 0.5],
            |x| x,
        )
        .unwrap();
        assert_eq!(out.dim(), (1, 1, 3, 2));
        let got: Vec<f32> = out.iter().copied().collect();
        let expected = [0.0, 5.5, 1000.0 * 1e-4 - 0.1, 6.5, 0.0, 0.0];
        assert_eq!(got, expected);
    }

    #[test]
    fn refuses_mismatched_shapes() {
        let values = Array4::<u16>::zeros((2, 3, 4, 4));
        let valid = Array4::<u8>::zeros((2, 1, 4, 5));
        let err = window_inputs(values.view(), valid.view(), &[1.0; 3], &[0.0; 3], |x| x);
        assert!(err.unwrap_err().to_string().contains("valid has shape"));
        let valid = Array4::<u8>::zeros((2, 1, 4, 4));
        assert!(window_inputs(values.view(), valid.view(), &[1.0; 2], &[0.0; 3], |x| x).is_err());
    }
}
