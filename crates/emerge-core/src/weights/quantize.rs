//! Storage-only quantization: a model file may hold a weight tensor as small integer codes and
//! their scales, and loading turns them back into the f32 tensor the engine computes with, so
//! no kernel ever sees a quantized value.
//!
//! - [`Scheme::Int8`]: one f32 scale per output channel, symmetric (absmax):
//!   d_c = max_i |w_ci| / 127, q = round(w / d_c) ∈ [-127, 127], ŵ = q · d_c.
//! - [`Scheme::Q4`]: GGUF's Q4_0 layout: blocks of [`Q4_BLOCK`] consecutive values, one f16 scale
//!   each, q = round(w / d) ∈ [-8, 7] stored as q + 8, two codes a byte (low nibble first),
//!   ŵ = q · d. The scale is the candidate d = m / k (m the block's value of largest magnitude,
//!   k near ±8) with the least squared error over the block, as llama.cpp's quantizers choose it.
//!
//! Only matrices and convolution kernels are quantized ([`Scheme::applies_to`]); vectors
//! (biases, normalisation scales) are few and stay in f16. Under q4 so do the tensors of fewer
//! than [`Q4_MIN_VALUES`] values (in the `mnist` network: the first and last convolutions and the
//! class embedding), as GGUF's quantizers keep the token embedding and the output layer at a
//! higher precision: they cost little and 4-bit codes there moved the conditional samples (the
//! model card's precision table).

use burn::tensor::f16;
use serde::{Deserialize, Serialize};

/// Values per q4 block (as in GGUF's Q4_0).
pub const Q4_BLOCK: usize = 32;
/// The smallest tensor q4 quantizes.
pub const Q4_MIN_VALUES: usize = 4096;

/// A quantization scheme of stored weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// 8-bit codes, one scale per output channel.
    Int8,
    /// 4-bit codes, one f16 scale per block of [`Q4_BLOCK`] values.
    Q4,
}

/// A tensor as a scheme stores it: its codes and one scale per group of values.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
}

/// The output channel of the value at each flat index of a tensor of `shape`: axis 0 of a
/// convolution kernel `[out, in, kh, kw]`, the last axis of a matrix (burn stores a linear
/// layer's weight as `[in, out]`). Returns the channel count and the map.
fn output_channels(shape: &[usize]) -> (usize, impl Fn(usize) -> usize) {
    let numel: usize = shape.iter().product();
    let matrix = shape.len() == 2;
    let count = if matrix {
        shape[1]
    } else {
        shape.first().copied().unwrap_or(1)
    };
    let per_channel = numel / count.max(1);
    let channel = move |i: usize| {
        if matrix {
            i % count
        } else {
            i / per_channel.max(1)
        }
    };
    (count, channel)
}

/// q = clamp(round(w / d), lo, hi); 0 where the scale is 0 (an all-zero group).
fn code(w: f32, d: f32, lo: f32, hi: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        (w / d).round().clamp(lo, hi)
    }
}

/// The f16 scale of one q4 block with the least squared error Σ (w - q·d)².
fn q4_scale(block: &[f32]) -> f32 {
    let m = block
        .iter()
        .copied()
        .fold(0f32, |m, w| if w.abs() > m.abs() { w } else { m });
    if m == 0.0 {
        return 0.0;
    }
    // m maps to -k (k ≤ 8) or to +k (k ≤ 7): every candidate keeps m inside [-8, 7].
    let candidates = (0..=8)
        .map(|i| -8.0 + 0.25 * i as f32)
        .chain((0..=4).map(|i| 7.0 - 0.25 * i as f32));
    let error = |d: f32| -> f32 {
        block
            .iter()
            .map(|&w| (w - code(w, d, -8.0, 7.0) * d).powi(2))
            .sum()
    };
    candidates
        .map(|k| f16::from_f32(m / k).to_f32())
        .filter(|d| d.is_finite() && *d != 0.0)
        .map(|d| (error(d), d))
        .fold(
            (f32::INFINITY, 0.0),
            |best, c| if c.0 < best.0 { c } else { best },
        )
        .1
}

impl Scheme {
    /// Whether this scheme quantizes a tensor of `shape`: matrices and convolution kernels
    /// (q4: of at least [`Q4_MIN_VALUES`] values).
    pub fn applies_to(self, shape: &[usize]) -> bool {
        let large = shape.iter().product::<usize>() >= Q4_MIN_VALUES;
        matches!(shape.len(), 2 | 4) && (self == Self::Int8 || large)
    }

    /// How many scales a tensor of `shape` has.
    pub fn scale_count(self, shape: &[usize]) -> usize {
        match self {
            Self::Int8 => output_channels(shape).0,
            Self::Q4 => shape.iter().product::<usize>().div_ceil(Q4_BLOCK),
        }
    }

    /// How many bytes of codes a tensor of `shape` has.
    pub fn code_bytes(self, shape: &[usize]) -> usize {
        let numel: usize = shape.iter().product();
        match self {
            Self::Int8 => numel,
            Self::Q4 => numel.div_ceil(2),
        }
    }

    /// Whether the scales are stored in f16 (q4, as in GGUF) rather than f32 (int8: one per
    /// channel, too few to matter).
    pub fn half_scales(self) -> bool {
        self == Self::Q4
    }

    /// The codes and scales of `values`, a tensor of `shape` in row-major order.
    pub fn encode(self, values: &[f32], shape: &[usize]) -> Codes {
        match self {
            Self::Int8 => {
                let (count, channel) = output_channels(shape);
                let mut max = vec![0f32; count];
                for (i, w) in values.iter().enumerate() {
                    let c = channel(i);
                    max[c] = max[c].max(w.abs());
                }
                let scales: Vec<f32> = max.iter().map(|m| m / 127.0).collect();
                let codes = values
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| code(w, scales[channel(i)], -127.0, 127.0) as i8 as u8)
                    .collect();
                Codes { codes, scales }
            }
            Self::Q4 => {
                let mut codes = vec![0u8; self.code_bytes(shape)];
                let mut scales = Vec::with_capacity(self.scale_count(shape));
                for (b, block) in values.chunks(Q4_BLOCK).enumerate() {
                    let d = q4_scale(block);
                    scales.push(d);
                    for (j, &w) in block.iter().enumerate() {
                        let i = b * Q4_BLOCK + j;
                        let nibble = (code(w, d, -8.0, 7.0) + 8.0) as u8;
                        codes[i / 2] |= nibble << (4 * (i % 2));
                    }
                }
                Codes { codes, scales }
            }
        }
    }

    /// The values ŵ = q · d of a tensor of `shape`; an error says what does not fit.
    pub fn decode(self, stored: &Codes, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (bytes, scales) = (self.code_bytes(shape), self.scale_count(shape));
        if stored.codes.len() != bytes || stored.scales.len() != scales {
            return Err(format!(
                "holds {} bytes of codes and {} scales where its shape {shape:?} needs {bytes} and {scales}",
                stored.codes.len(),
                stored.scales.len()
            ));
        }
        if let Some(at) = stored.scales.iter().position(|d| !d.is_finite()) {
            return Err(format!("its scale {at} is {}", stored.scales[at]));
        }
        let numel: usize = shape.iter().product();
        Ok(match self {
            Self::Int8 => {
                let (_, channel) = output_channels(shape);
                (0..numel)
                    .map(|i| stored.codes[i] as i8 as f32 * stored.scales[channel(i)])
                    .collect()
            }
            Self::Q4 => (0..numel)
                .map(|i| {
                    let nibble = (stored.codes[i / 2] >> (4 * (i % 2))) & 0x0f;
                    (nibble as f32 - 8.0) * stored.scales[i / Q4_BLOCK]
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::GaussianNoise;

    fn weights(shape: &[usize], seed: u64) -> Vec<f32> {
        let numel = shape.iter().product();
        let mut noise = GaussianNoise::new(seed);
        // channels of very different magnitudes, as trained kernels have
        (0..numel)
            .map(|i| noise.next_normal() as f32 * 0.05 * (1 + i % 7) as f32)
            .collect()
    }

    #[test]
    fn int8_error_is_at_most_half_a_step_of_each_channel() {
        for shape in [vec![8, 3, 3, 3], vec![24, 16]] {
            let w = weights(&shape, 1);
            let stored = Scheme::Int8.encode(&w, &shape);
            assert_eq!(stored.codes.len(), w.len());
            let back = Scheme::Int8.decode(&stored, &shape).unwrap();
            let (_, channel) = output_channels(&shape);
            for (i, (a, b)) in w.iter().zip(&back).enumerate() {
                let d = stored.scales[channel(i)];
                assert!(
                    (a - b).abs() <= d / 2.0 + 1e-7,
                    "{shape:?} at {i}: {a} → {b}"
                );
            }
            // the largest value of each channel comes back exactly (up to f32 rounding)
            let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let max_back = back.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((max - max_back).abs() < 1e-6 * max);
            // and encoding what was decoded changes nothing
            assert_eq!(Scheme::Int8.encode(&back, &shape), stored);
        }
    }

    #[test]
    fn q4_packs_two_codes_a_byte_and_beats_the_plain_absmax_scale() {
        let shape = [16, 8, 3, 3];
        let w = weights(&shape, 2);
        let stored = Scheme::Q4.encode(&w, &shape);
        assert_eq!(stored.codes.len(), w.len() / 2);
        assert_eq!(stored.scales.len(), w.len() / Q4_BLOCK);
        let back = Scheme::Q4.decode(&stored, &shape).unwrap();
        let error: f32 = w.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
        // Q4_0's plain scale d = m / -8 for every block, for comparison
        let plain: f32 = w
            .chunks(Q4_BLOCK)
            .map(|block| {
                let m = block
                    .iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = f16::from_f32(m / -8.0).to_f32();
                block
                    .iter()
                    .map(|&v| (v - code(v, d, -8.0, 7.0) * d).powi(2))
                    .sum::<f32>()
            })
            .sum();
        assert!(error < plain, "searched {error} vs plain {plain}");
        let energy: f32 = w.iter().map(|v| v * v).sum();
        assert!(
            error / energy < 0.02,
            "relative squared error {}",
            error / energy
        );
    }

    #[test]
    fn q4_keeps_a_partial_last_block_and_zero_blocks() {
        let shape = [5, 9];
        let mut w = weights(&shape, 3);
        w[..Q4_BLOCK].fill(0.0);
        let stored = Scheme::Q4.encode(&w, &shape);
        assert_eq!(stored.codes.len(), 23);
        assert_eq!(stored.scales, {
            let mut s = stored.scales.clone();
            s[0] = 0.0;
            s
        });
        let back = Scheme::Q4.decode(&stored, &shape).unwrap();
        assert!(back[..Q4_BLOCK].iter().all(|&v| v == 0.0));
        let last = w.len() - 1;
        assert!((back[last] - w[last]).abs() <= stored.scales[1].abs() / 2.0 + 1e-7);
    }

    #[test]
    fn matrices_and_kernels_are_quantized_and_q4_leaves_small_ones() {
        assert!(Scheme::Int8.applies_to(&[16, 16, 3, 3]));
        assert!(!Scheme::Q4.applies_to(&[16, 16, 3, 3]));
        assert!(Scheme::Q4.applies_to(&[32, 32, 3, 3]));
        assert!(Scheme::Q4.applies_to(&[128, 128]));
        assert!(!Scheme::Int8.applies_to(&[4096]), "vectors stay f16");
    }

    #[test]
    fn codes_that_do_not_fit_the_shape_are_refused_with_the_reason() {
        let shape = [4, 8];
        let w = weights(&shape, 4);
        for scheme in [Scheme::Int8, Scheme::Q4] {
            let mut short = scheme.encode(&w, &shape);
            short.codes.pop();
            let msg = scheme.decode(&short, &shape).unwrap_err();
            assert!(msg.contains("needs"), "{msg}");
            let mut broken = scheme.encode(&w, &shape);
            broken.scales[0] = f32::NAN;
            let msg = scheme.decode(&broken, &shape).unwrap_err();
            assert!(msg.contains("scale 0 is NaN"), "{msg}");
        }
    }
}
