//! Self-attention over pixels (diffusers' `Attention` in its DDPM form: GroupNorm, q/k/v linear
//! projections, scaled dot-product attention, output projection, residual connection).

use burn::module::Module;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::config::UNetConfig;
use super::norm;
use super::resnet::group_norm;

#[derive(Module, Debug)]
pub struct AttentionBlock {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// One projection, kept in a list so its key is `to_out.0` as in diffusers.
    pub to_out: Vec<Linear>,
    pub heads: usize,
}

impl AttentionBlock {
    pub fn new(channels: usize, config: &UNetConfig, device: &Device) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: group_norm(channels, config, device),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
            heads: config.attention_head_dim.map_or(1, |d| channels / d),
        }
    }

    /// Shapes: `[B, C, H, W]` → `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let (tokens, head_dim) = (height * width, channels / self.heads);
        let h = norm::forward(&self.group_norm, x.clone())
            .reshape([batch, channels, tokens])
            .swap_dims(1, 2); // [B, HW, C]
        let split_heads = |t: Tensor<3>| {
            t.reshape([batch, tokens, self.heads, head_dim])
                .swap_dims(1, 2)
        }; // [B, heads, HW, d]
        let q = split_heads(self.to_q.forward(h.clone()));
        let k = split_heads(self.to_k.forward(h.clone()));
        let v = split_heads(self.to_v.forward(h));
        // softmax(q kᵀ/√d) v  (Vaswani et al. 2017, eq. 1)
        let weights = softmax(
            q.matmul(k.swap_dims(2, 3))
                .div_scalar((head_dim as f64).sqrt()),
            3,
        ); // [B, heads, HW, HW]
        let out = weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, channels]); // [B, HW, C]
        let out = self.to_out[0]
            .forward(out)
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        out + x
    }
}
