//! The residual block of DDPM (diffusers' `ResnetBlock2D` with the default time-embedding
//! handling): GroupNorm → SiLU → conv, add the projected time embedding per channel, GroupNorm →
//! SiLU → dropout → conv, plus a 1×1 shortcut when the channel count changes.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use super::config::UNetConfig;
use super::norm::{self, Shift};

/// A 3×3 convolution that keeps the resolution.
pub fn conv3x3(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// The GroupNorm every block uses.
pub fn group_norm(channels: usize, config: &UNetConfig, device: &Device) -> GroupNorm {
    GroupNormConfig::new(config.norm_num_groups, channels)
        .with_epsilon(config.norm_eps)
        .init(device)
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Linear,
    pub norm2: GroupNorm,
    pub dropout: Dropout,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        config: &UNetConfig,
        device: &Device,
    ) -> Self {
        Self {
            norm1: group_norm(channels_in, config, device),
            conv1: conv3x3(channels_in, channels_out, device),
            time_emb_proj: LinearConfig::new(config.time_embed_dim(), channels_out).init(device),
            norm2: group_norm(channels_out, config, device),
            dropout: DropoutConfig::new(config.dropout).init(),
            conv2: conv3x3(channels_out, channels_out, device),
            conv_shortcut: (channels_in != channels_out)
                .then(|| Conv2dConfig::new([channels_in, channels_out], [1, 1]).init(device)),
        }
    }

    /// The block's time projection of the conditioning vector emb: time_emb_proj(SiLU(emb)),
    /// given `silu_emb` = SiLU(emb). Shapes: `[B, E]` → `[B, C_out]`.
    pub fn shift(&self, silu_emb: Tensor<2>) -> Tensor<2> {
        self.time_emb_proj.forward(silu_emb)
    }

    /// Shapes: `x` `[B, C_in, H, W]`, `shift` ([`Self::shift`]) `[B, C_out]` → `[B, C_out, H, W]`.
    pub fn forward(&self, x: Tensor<4>, shift: Shift) -> Tensor<4> {
        let h = self
            .conv1
            .forward(norm::forward_silu(&self.norm1, x.clone())); // [B, C_out, H, W]
        let h = norm::forward_silu_shifted(&self.norm2, h, shift); // SiLU(GroupNorm(h + shift))
        let h = self.conv2.forward(self.dropout.forward(h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}
