//! The UNet's levels: down blocks (residual blocks, optional attention, a stride-2 conv), the
//! middle block, and up blocks that consume the down path's skips (diffusers' `DownBlock2D` /
//! `AttnDownBlock2D`, `UNetMidBlock2D`, `UpBlock2D` / `AttnUpBlock2D`).

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use super::attention::AttentionBlock;
use super::config::UNetConfig;
use super::resnet::{ResnetBlock2D, conv3x3};
use super::shifts::BlockShifts;

/// Halves the resolution with a stride-2 3×3 conv.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, config: &UNetConfig, device: &Device) -> Self {
        // padding 0 pads one row/column at the bottom/right only (DDPM's TensorFlow "SAME").
        let p = config.downsample_padding;
        let padding = PaddingConfig2d::Explicit(p, p, 1, 1);
        let conv = Conv2dConfig::new([channels, channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(padding)
            .init(device);
        Self { conv }
    }

    /// Shapes: `[B, C, H, W]` → `[B, C, H/2, W/2]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Doubles the resolution (nearest neighbour), then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(channels, channels, device),
        }
    }

    /// Shapes: `[B, C, H, W]` → `[B, C, 2H, 2W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let doubled = x
            .reshape([batch, channels, height, 1, width, 1])
            .expand([batch, channels, height, 2, width, 2]) // each pixel copied into a 2×2 patch
            .reshape([batch, channels, height * 2, width * 2]);
        self.conv.forward(doubled)
    }
}

/// One level of the down path.
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<AttentionBlock>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn new(level: usize, channels_in: usize, config: &UNetConfig, device: &Device) -> Self {
        let channels = config.block_out_channels[level];
        let is_final = level + 1 == config.block_out_channels.len();
        let layers = config.layers_per_block;
        Self {
            resnets: (0..layers)
                .map(|j| {
                    ResnetBlock2D::new(
                        if j == 0 { channels_in } else { channels },
                        channels,
                        config,
                        device,
                    )
                })
                .collect(),
            attentions: if config.has_attention(level) {
                (0..layers)
                    .map(|_| AttentionBlock::new(channels, config, device))
                    .collect()
            } else {
                Vec::new()
            },
            downsamplers: if is_final {
                Vec::new()
            } else {
                vec![Downsample2D::new(channels, config, device)]
            },
        }
    }

    /// Returns the block's output and pushes every intermediate onto `skips` (one per resnet,
    /// plus one after the downsample).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        shifts: &mut BlockShifts,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, shifts.next_block());
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x);
            }
            skips.push(x.clone());
        }
        for downsampler in &self.downsamplers {
            x = downsampler.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// The bottleneck: resnet → attention → resnet at the lowest resolution.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<AttentionBlock>,
}

impl MidBlock {
    pub fn new(channels: usize, config: &UNetConfig, device: &Device) -> Self {
        Self {
            resnets: vec![
                ResnetBlock2D::new(channels, channels, config, device),
                ResnetBlock2D::new(channels, channels, config, device),
            ],
            attentions: vec![AttentionBlock::new(channels, config, device)],
        }
    }

    pub fn forward(&self, x: Tensor<4>, shifts: &mut BlockShifts) -> Tensor<4> {
        let x = self.resnets[0].forward(x, shifts.next_block());
        let x = self.attentions[0].forward(x);
        self.resnets[1].forward(x, shifts.next_block())
    }
}

/// One level of the up path: `layers_per_block + 1` resnets, each fed the previous output
/// concatenated with one skip from the down path.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<AttentionBlock>,
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    /// `index` counts up blocks from the lowest resolution (0) to the highest.
    pub fn new(index: usize, config: &UNetConfig, device: &Device) -> Self {
        let levels = config.block_out_channels.len();
        let level = levels - 1 - index;
        let channels = config.block_out_channels[level];
        let prev_output_channels = config.block_out_channels[(level + 1).min(levels - 1)];
        // the last resnet's skip comes from the level above (the input of this level's down block)
        let skip_in_channels = config.block_out_channels[level.saturating_sub(1)];
        let layers = config.layers_per_block + 1;
        Self {
            resnets: (0..layers)
                .map(|j| {
                    let skip = if j + 1 == layers {
                        skip_in_channels
                    } else {
                        channels
                    };
                    let input = if j == 0 {
                        prev_output_channels
                    } else {
                        channels
                    };
                    ResnetBlock2D::new(input + skip, channels, config, device)
                })
                .collect(),
            attentions: if config.has_attention(level) {
                (0..layers)
                    .map(|_| AttentionBlock::new(channels, config, device))
                    .collect()
            } else {
                Vec::new()
            },
            upsamplers: if level == 0 {
                Vec::new()
            } else {
                vec![Upsample2D::new(channels, device)]
            },
        }
    }

    /// Pops one skip per resnet from the end of `skips`.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        shifts: &mut BlockShifts,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("the down path pushes one skip per up-path resnet");
            x = resnet.forward(cat_channels(x, skip), shifts.next_block()); // [B, C + C_skip, H, W] → [B, C, H, W]
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x);
            }
        }
        for upsampler in &self.upsamplers {
            x = upsampler.forward(x);
        }
        x
    }
}

/// [a; b] along the channels. On a GPU outside autodiff it is laid out channels-last, as the
/// convolutions that read it take it (a channels-first one is repacked before each of them).
fn cat_channels(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "gpu")]
    if crate::cube_op::on_cube_device(&a) {
        let [n, ca, h, w] = a.dims();
        let cb = b.dims()[1];
        // [N, H, W, C] in memory, [N, C, H, W] as a tensor; each part written in place
        let out = Tensor::<4>::empty([n, h, w, ca + cb], &a.device()).permute([0, 3, 1, 2]);
        return out
            .slice_assign([0..n, 0..ca, 0..h, 0..w], a)
            .slice_assign([0..n, ca..ca + cb, 0..h, 0..w], b);
    }
    Tensor::cat(vec![a, b], 1)
}
