//! The timestep embedding: DDPM's sinusoidal position embedding followed by a two-layer MLP
//! (diffusers' `Timesteps` + `TimestepEmbedding`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, TensorData};

/// Sinusoidal embedding of (float) timesteps, as in DDPM and Transformer position encodings:
/// emb_i = sin(t·ω_i) ‖ cos(t·ω_i), ω_i = exp(−ln(10000)·i/(half − freq_shift)), i < half.
///
/// Shapes: `timesteps` `[B]` → `[B, dim]`.
pub fn timestep_embedding(
    timesteps: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Tensor<2> {
    let device = timesteps.device();
    let half = dim / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32)
        .collect();
    let frequencies = Tensor::<2>::from_data(TensorData::new(frequencies, [1, half]), &device);
    let angles = timesteps.unsqueeze_dim::<2>(1) * frequencies; // [B, half]
    let (sin, cos) = (angles.clone().sin(), angles.cos());
    let embedding = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    if dim % 2 == 1 {
        let [batch, _] = embedding.dims();
        Tensor::cat(vec![embedding, Tensor::zeros([batch, 1], &device)], 1) // zero pad odd widths
    } else {
        embedding
    }
}

/// The MLP on top of the sinusoidal embedding: linear → SiLU → linear.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(in_dim: usize, time_embed_dim: usize, device: &burn::tensor::Device) -> Self {
        Self {
            linear_1: LinearConfig::new(in_dim, time_embed_dim).init(device),
            linear_2: LinearConfig::new(time_embed_dim, time_embed_dim).init(device),
        }
    }

    /// Shapes: `[B, in_dim]` → `[B, time_embed_dim]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    #[test]
    fn embedding_matches_the_formula() {
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(vec![0f32, 7.0, 999.0], [3]), &device);
        let dim = 8;
        for (flip, shift) in [(false, 1.0), (true, 0.0)] {
            let e = timestep_embedding(t.clone(), dim, flip, shift)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            for (row, &tv) in [0f64, 7.0, 999.0].iter().enumerate() {
                for i in 0..4 {
                    let w = (-(10000f64.ln()) * i as f64 / (4.0 - shift)).exp();
                    let (s, c) = ((tv * w).sin(), (tv * w).cos());
                    let (first, second) = if flip { (c, s) } else { (s, c) };
                    assert!((e[row * dim + i] as f64 - first).abs() < 1e-3);
                    assert!((e[row * dim + 4 + i] as f64 - second).abs() < 1e-3);
                }
            }
        }
    }
}
