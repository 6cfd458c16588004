//! How far a device's output may be from Flex's: the tolerances of `check-devices` and the
//! comparisons that apply them.

use emerge_core::image::to_byte;

/// Forward passes (ε̂ and every layer): max |Δ| ≤ 1e-3 × max(1, RMS of the reference), so 1e-3
/// for ε̂ (unit variance by construction) and relative for layers whose outputs are larger.
pub const FORWARD_TOLERANCE: f64 = 1e-3;
/// Final images, per pixel in 0–255 units: mean |Δ| ≤ 2, max |Δ| ≤ 16.
pub const IMAGE_MEAN_TOLERANCE: f64 = 2.0;
pub const IMAGE_MAX_TOLERANCE: f64 = 16.0;

/// How far a device's output is from Flex's, and the bound it had to stay within.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    /// Tensor outputs: max |Δ| against `limit` (absolute, scaled by the reference's size).
    Values { max_abs: f64, limit: f64 },
    /// Final images in 0–255 units: mean and max |Δ| per pixel.
    Pixels { mean_abs: f64, max_abs: f64 },
}

impl Measure {
    pub fn passes(&self) -> bool {
        match *self {
            Measure::Values { max_abs, limit } => max_abs <= limit,
            Measure::Pixels { mean_abs, max_abs } => {
                mean_abs <= IMAGE_MEAN_TOLERANCE && max_abs <= IMAGE_MAX_TOLERANCE
            }
        }
    }

    pub fn difference(&self) -> String {
        match *self {
            Measure::Values { max_abs, .. } => format!("{max_abs:.2e}"),
            Measure::Pixels { mean_abs, max_abs } => {
                format!("{max_abs:.0}/255 (mean {mean_abs:.3}/255)")
            }
        }
    }

    pub fn tolerance(&self) -> String {
        match *self {
            Measure::Values { limit, .. } => format!("{limit:.2e}"),
            Measure::Pixels { .. } => {
                format!("{IMAGE_MAX_TOLERANCE:.0}/255 (mean {IMAGE_MEAN_TOLERANCE:.0}/255)")
            }
        }
    }
}

/// Max |a − b| of two equally long value lists, and the tolerance scaled to the reference.
pub(super) fn compare_values(reference: &[f32], other: &[f32]) -> Measure {
    let mean_square = reference.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()
        / reference.len().max(1) as f64;
    let scale = mean_square.sqrt().max(1.0);
    let max_abs = if reference.len() == other.len() {
        reference
            .iter()
            .zip(other)
            .map(|(&a, &b)| f64::from(a - b).abs())
            .fold(0.0f64, |m, d| {
                if d.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.max(d)
                }
            })
    } else {
        f64::INFINITY
    };
    Measure::Values {
        // A NaN anywhere is a failure, never a pass: report it as infinitely far.
        max_abs: if max_abs.is_nan() {
            f64::INFINITY
        } else {
            max_abs
        },
        limit: FORWARD_TOLERANCE * scale,
    }
}

/// Mean and max per-pixel |Δ| of two image sets in model space, as 0–255 bytes.
pub(super) fn compare_pixels(reference: &[f32], other: &[f32]) -> Measure {
    if reference.len() != other.len() || reference.is_empty() {
        return Measure::Pixels {
            mean_abs: f64::INFINITY,
            max_abs: f64::INFINITY,
        };
    }
    let (mut sum, mut max) = (0.0f64, 0.0f64);
    for (&a, &b) in reference.iter().zip(other) {
        let d = if a.is_finite() && b.is_finite() {
            f64::from((i16::from(to_byte(a)) - i16::from(to_byte(b))).abs())
        } else {
            f64::INFINITY
        };
        sum += d;
        max = max.max(d);
    }
    Measure::Pixels {
        mean_abs: sum / reference.len() as f64,
        max_abs: max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_pass_within_a_tolerance_scaled_to_the_reference() {
        assert!(compare_values(&[0.5, -0.25], &[0.5005, -0.25]).passes());
        assert!(!compare_values(&[0.5, -0.25], &[0.502, -0.25]).passes());
        // Outputs of RMS 10 may differ by 10 × 1e-3.
        assert!(compare_values(&[10.0, -10.0], &[10.009, -10.0]).passes());
        assert!(!compare_values(&[10.0, -10.0], &[10.011, -10.0]).passes());
    }

    #[test]
    fn a_nan_or_a_missing_value_never_passes() {
        assert!(!compare_values(&[0.0, 1.0], &[0.0, f32::NAN]).passes());
        assert!(!compare_values(&[0.0, 1.0], &[0.0]).passes());
        assert!(!compare_pixels(&[0.0, 1.0], &[0.0, f32::NAN]).passes());
        assert!(!compare_pixels(&[0.0, 1.0], &[]).passes());
    }

    #[test]
    fn pixels_fail_on_one_far_pixel_or_on_a_small_shift_everywhere() {
        let reference = vec![0.0f32; 100];
        // One pixel 20/255 off: the mean is fine, the max is not.
        let mut one_far = reference.clone();
        one_far[3] = 40.0 / 255.0;
        assert!(!compare_pixels(&reference, &one_far).passes());
        // Every pixel 3/255 off: each is small, the mean is not.
        let shifted = vec![6.0f32 / 255.0; 100];
        assert!(!compare_pixels(&reference, &shifted).passes());
        let close = vec![2.0f32 / 255.0; 100];
        assert!(compare_pixels(&reference, &close).passes());
    }
}
