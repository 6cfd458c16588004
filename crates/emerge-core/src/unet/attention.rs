//! Self-attention over pixels (diffusers' `Attention` in its DDPM form: GroupNorm, q/k/v linear
//! projections, scaled dot-product attention, output projection, residual connection).

use burn::module::Module;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::softmax;
#[cfg(feature = "gpu")]
use burn::tensor::module::linear;
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
        let h = norm::forward(&self.group_norm, x.clone())
            .reshape([batch, channels, height * width])
            .swap_dims(1, 2); // [B, HW, C]
        let out = self.to_out[0]
            .forward(self.attend(h))
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        out + x
    }

    /// softmax(Q Kᵀ/√d) V per head, Q = h W_q + b_q and K, V alike: `[B, HW, C]` → `[B, HW, C]`.
    /// On a GPU outside autodiff everything after the three products is one kernel of this
    /// crate's (`attention_kernel`), which adds the biases as it reads the products.
    fn attend(&self, h: Tensor<3>) -> Tensor<3> {
        let [batch, tokens, channels] = h.dims();
        let head_dim = channels / self.heads;
        let projections = [&self.to_q, &self.to_k, &self.to_v];
        #[cfg(feature = "gpu")]
        if super::attention_kernel::applies(&h, self.heads) {
            let biases = projections.map(|l| l.bias.as_ref().map(|b| b.val()));
            let biases = match biases {
                [Some(q), Some(k), Some(v)] => Some(Some([q, k, v])),
                [None, None, None] => Some(None),
                _ => None, // some biased, some not: burn's path below
            };
            if let Some(biases) = biases {
                let [q, k, v] = projections.map(|l| linear(h.clone(), l.weight.val(), None));
                let out = super::attention_kernel::attention([&q, &k, &v], biases, self.heads);
                if let Some(out) = out {
                    return out;
                }
            }
        }
        let split_heads = |t: Tensor<3>| {
            t.reshape([batch, tokens, self.heads, head_dim])
                .swap_dims(1, 2)
        }; // [B, heads, HW, d]
        let [q, k, v] = projections.map(|l| split_heads(l.forward(h.clone())));
        let weights = softmax(
            q.matmul(k.swap_dims(2, 3))
                .div_scalar((head_dim as f64).sqrt()),
            3,
        ); // [B, heads, HW, HW]
        weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, channels]) // [B, HW, C]
    }
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::{Distribution, Tolerance};

    /// The attention on the GPU (the kernel) equals burn's path on the CPU, with one head and
    /// with several, at the shipped network's sizes (HW = 49 and 196).
    #[test]
    fn kernel_matches_burn_on_the_cpu() {
        let Some(gpu) = crate::cube_op::test_device("attention") else {
            return;
        };
        let cpu = Device::flex();
        for (batch, channels, size, head_dim) in [(2, 64, 7, None), (3, 32, 14, Some(8))] {
            let config = UNetConfig {
                attention_head_dim: head_dim,
                ..UNetConfig::tiny()
            };
            let block_cpu = AttentionBlock::new(channels, &config, &cpu);
            let block_gpu = block_cpu.clone().to_device(&gpu);
            let h = Tensor::<3>::random(
                [batch, size * size, channels],
                Distribution::Normal(0.0, 1.0),
                &cpu,
            );
            let want = block_cpu.attend(h.clone()).into_data();
            block_gpu
                .attend(h.to_device(&gpu))
                .into_data()
                .assert_approx_eq::<f32>(&want, Tolerance::absolute(1e-4));
        }
    }

    /// A launch of more than WebGPU's 65,535 workgroups (one per sample and query here) is
    /// left to burn's path.
    #[test]
    fn a_launch_too_wide_for_webgpu_takes_burns_path() {
        let Some(gpu) = crate::cube_op::test_device("attention") else {
            return;
        };
        let h = Tensor::<3>::zeros([1338, 49, 8], &gpu);
        assert!(!super::super::attention_kernel::applies(&h, 1));
        assert!(super::super::attention_kernel::applies(
            &h.narrow(0, 0, 1337),
            1
        ));
    }
}
