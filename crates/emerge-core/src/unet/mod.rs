//! The DDPM UNet (Ho et al. 2020, Appendix B), laid out and named as diffusers' `UNet2DModel` so
//! that published checkpoints map onto it key by key.

mod attention;
#[cfg(feature = "gpu")]
mod attention_kernel;
mod blocks;
mod config;
mod embeddings;
pub mod norm;
#[cfg(feature = "gpu")]
mod norm_kernel;
mod resnet;
mod shifts;

pub use attention::AttentionBlock;
pub use blocks::{DownBlock, Downsample2D, MidBlock, UpBlock, Upsample2D};
pub use config::UNetConfig;
pub use embeddings::{TimestepEmbedding, timestep_embedding};
pub use resnet::ResnetBlock2D;
pub use shifts::{BlockShifts, JointProjection};

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};

use crate::error::EmergeError;
use norm::Shift;
use resnet::{conv3x3, group_norm};

#[derive(Module, Debug)]
pub struct UNet {
    pub time_embedding: TimestepEmbedding,
    pub class_embedding: Option<Embedding>,
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    /// Sinusoidal embedding conventions (not parameters).
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

impl UNet {
    /// Builds the network with fresh random weights; an invalid config is an error, not a panic.
    pub fn new(config: &UNetConfig, device: &Device) -> Result<Self, EmergeError> {
        config.validate()?;
        let channels = &config.block_out_channels;
        let time_embed_dim = config.time_embed_dim();
        // time
        let time_embedding = TimestepEmbedding::new(channels[0], time_embed_dim, device);
        let class_embedding = config
            .num_class_embeds
            .map(|n| EmbeddingConfig::new(n, time_embed_dim).init(device));
        // input
        let conv_in = conv3x3(config.in_channels, channels[0], device);
        // down
        let down_blocks = (0..channels.len())
            .map(|level| {
                DownBlock::new(
                    level,
                    if level == 0 {
                        channels[0]
                    } else {
                        channels[level - 1]
                    },
                    config,
                    device,
                )
            })
            .collect();
        // mid
        let mid_block = MidBlock::new(
            *channels.last().expect("validated: at least one level"),
            config,
            device,
        );
        // up
        let up_blocks = (0..channels.len())
            .map(|index| UpBlock::new(index, config, device))
            .collect();
        // out
        Ok(Self {
            time_embedding,
            class_embedding,
            conv_in,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(channels[0], config, device),
            conv_out: conv3x3(channels[0], config.out_channels, device),
            flip_sin_to_cos: config.flip_sin_to_cos,
            freq_shift: config.freq_shift,
        })
    }

    /// Predicts ε_θ(x_t, t, y): [`embed`](Self::embed) then [`denoise`](Self::denoise).
    ///
    /// Shapes: `sample` `[B, C_in, H, W]`, `timesteps` `[B]` (float, so fractional times work),
    /// `class_labels` `[B]` → `[B, C_out, H, W]`. Labels are required exactly when the model
    /// has a class embedding (checked by the callers that take user input: [`crate::guidance`]).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        class_labels: Option<Tensor<1, Int>>,
    ) -> Tensor<4> {
        self.denoise(sample, self.embed(timesteps, class_labels))
    }

    /// The conditioning vector every ResNet block adds: MLP(sinusoid(t)) + class embedding(y).
    /// It depends only on t and y, so a run can compute it once per step and label.
    ///
    /// Shapes: `timesteps` `[B]`, `class_labels` `[B]` → `[B, 4·C0]`.
    pub fn embed(&self, timesteps: Tensor<1>, class_labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        let [sinusoid_dim, _] = self.time_embedding.linear_1.weight.dims();
        let t_emb = timestep_embedding(
            timesteps,
            sinusoid_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
        ); // [B, C0]
        let emb = self.time_embedding.forward(t_emb); // [B, 4·C0]
        match (&self.class_embedding, class_labels) {
            (Some(embedding), Some(labels)) => {
                emb + embedding
                    .forward(labels.unsqueeze_dim::<2>(1))
                    .squeeze_dim::<2>(1)
            }
            _ => emb,
        }
    }

    /// ε_θ from the image and its conditioning vector ([`embed`](Self::embed)): the UNet proper.
    /// It creates no tensor from host data, so a device can record it once and replay it.
    ///
    /// Shapes: `sample` `[B, C_in, H, W]`, `emb` `[B, 4·C0]` → `[B, C_out, H, W]`.
    pub fn denoise(&self, sample: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        self.denoise_shifted(sample, self.shifts(emb))
    }

    /// Each res block's time projection time_emb_proj(SiLU(emb)) of the conditioning vector
    /// (one matrix product per block; [`JointProjection`] does all blocks in one).
    pub fn shifts(&self, emb: Tensor<2>) -> BlockShifts {
        let silu_emb = silu(emb);
        let shifts = self
            .resnets()
            .map(|r| Shift::whole(r.shift(silu_emb.clone())));
        BlockShifts::new(shifts.collect())
    }

    /// [`denoise`](Self::denoise) given each res block's shift of the conditioning vector
    /// ([`shifts`](Self::shifts) or [`JointProjection::shifts`]).
    pub fn denoise_shifted(&self, sample: Tensor<4>, mut shifts: BlockShifts) -> Tensor<4> {
        // pre-process
        let mut x = self.conv_in.forward(sample); // [B, C0, H, W]
        // down, keeping every intermediate as a skip
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, &mut shifts, &mut skips);
        }
        // mid
        x = self.mid_block.forward(x, &mut shifts);
        // up, consuming the skips in reverse order
        for block in &self.up_blocks {
            x = block.forward(x, &mut shifts, &mut skips);
        }
        // post-process
        self.conv_out
            .forward(norm::forward_silu(&self.conv_norm_out, x))
    }

    /// The res blocks in the order [`denoise_shifted`](Self::denoise_shifted) runs them.
    fn resnets(&self) -> impl Iterator<Item = &ResnetBlock2D> {
        let down = self.down_blocks.iter().flat_map(|b| &b.resnets);
        let up = self.up_blocks.iter().flat_map(|b| &b.resnets);
        down.chain(&self.mid_block.resnets).chain(up)
    }
}

#[cfg(test)]
mod tests;
