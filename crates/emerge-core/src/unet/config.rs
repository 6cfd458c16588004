//! The UNet's configuration: a few lists fully determine the architecture, as in diffusers'
//! `UNet2DModel` (whose configs map onto this one field by field).

use serde::{Deserialize, Serialize};

use crate::error::EmergeError;

/// Everything that determines the UNet's structure and parameter shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Channels of the input image (1 for MNIST, 3 for RGB).
    pub in_channels: usize,
    /// Channels of the predicted noise (equal to `in_channels` for ε-prediction).
    pub out_channels: usize,
    /// Height and width of the (square) images.
    pub sample_size: usize,
    /// Output channels of each resolution level, from the highest resolution down; each level
    /// but the last halves the resolution. The time embedding is 4 × the first entry wide.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per down level (the up levels have one more, as in diffusers).
    pub layers_per_block: usize,
    /// Resolutions (in pixels) whose levels add self-attention after each residual block,
    /// for example `[16]` for the DDPM CIFAR-10 network. The middle block always has attention.
    pub attention_resolutions: Vec<usize>,
    /// Groups of every GroupNorm; must divide every channel count.
    pub norm_num_groups: usize,
    /// ε of every GroupNorm.
    pub norm_eps: f64,
    /// Dropout probability inside the residual blocks (training only).
    pub dropout: f64,
    /// Channels per attention head; `None` means one head over all channels (the DDPM paper).
    pub attention_head_dim: Option<usize>,
    /// Order of the sinusoidal embedding halves: `false` is [sin, cos] (DDPM), `true` [cos, sin].
    pub flip_sin_to_cos: bool,
    /// Frequency denominator shift: frequencies are exp(−ln(10000)·i/(half − shift)); DDPM uses 1.
    pub freq_shift: f64,
    /// Padding of the stride-2 downsampling conv: 1 (symmetric) or 0 (pad right and bottom by
    /// one, the DDPM/TensorFlow convention).
    pub downsample_padding: usize,
    /// Number of class embeddings, counting the "null" class used for classifier-free guidance
    /// (11 for MNIST's 10 digits); `None` for an unconditional model.
    pub num_class_embeds: Option<usize>,
}

impl UNetConfig {
    /// A tiny network for fast tests: 8×8 grey images, two levels, conditional.
    pub fn tiny() -> Self {
        Self {
            in_channels: 1,
            out_channels: 1,
            sample_size: 8,
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            attention_resolutions: vec![4],
            norm_num_groups: 8,
            norm_eps: 1e-5,
            dropout: 0.0,
            attention_head_dim: Some(16),
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            downsample_padding: 1,
            num_class_embeds: Some(11),
        }
    }

    /// The model the page ships: 28×28 MNIST digits, class-conditional with a null class,
    /// sized so that 6000 steps of batch 64 draw clean digits (about 5.5 hours on a 2-core CPU).
    pub fn mnist() -> Self {
        Self {
            in_channels: 1,
            out_channels: 1,
            sample_size: 28,
            block_out_channels: vec![32, 64, 128],
            layers_per_block: 1,
            attention_resolutions: vec![7],
            norm_num_groups: 8,
            norm_eps: 1e-5,
            dropout: 0.1,
            attention_head_dim: Some(32),
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            downsample_padding: 1,
            num_class_embeds: Some(11),
        }
    }

    /// The DDPM paper's CIFAR-10 network, equal to diffusers' google/ddpm-cifar10-32 config
    /// (35,746,307 parameters).
    pub fn ddpm_cifar10() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            sample_size: 32,
            block_out_channels: vec![128, 256, 256, 256],
            layers_per_block: 2,
            attention_resolutions: vec![16],
            norm_num_groups: 32,
            norm_eps: 1e-6,
            dropout: 0.1,
            attention_head_dim: None,
            flip_sin_to_cos: false,
            freq_shift: 1.0,
            downsample_padding: 0,
            num_class_embeds: None,
        }
    }

    /// A preset by name: `tiny`, `mnist` or `ddpm-cifar10`.
    pub fn preset(name: &str) -> Result<Self, EmergeError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "mnist" => Ok(Self::mnist()),
            "ddpm-cifar10" => Ok(Self::ddpm_cifar10()),
            other => Err(EmergeError::InvalidConfig(format!(
                "unknown preset '{other}' (known: {})",
                Self::PRESETS.join(", ")
            ))),
        }
    }

    /// The names `preset` accepts.
    pub const PRESETS: [&'static str; 3] = ["tiny", "mnist", "ddpm-cifar10"];

    /// Width of the time embedding: 4 × the first level's channels (as in DDPM and diffusers).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// Image resolution at level `level` (the sample size halved once per level above it).
    pub fn resolution(&self, level: usize) -> usize {
        self.sample_size >> level
    }

    /// Whether level `level` has self-attention.
    pub fn has_attention(&self, level: usize) -> bool {
        self.attention_resolutions.contains(&self.resolution(level))
    }

    /// Whether the model takes class labels.
    pub fn is_conditional(&self) -> bool {
        self.num_class_embeds.is_some()
    }

    /// The index of the "null" class (the last embedding), used for unconditional predictions.
    pub fn null_class(&self) -> Option<usize> {
        self.num_class_embeds.map(|n| n - 1)
    }

    /// Checks that the configuration describes a buildable network; the error names the field.
    pub fn validate(&self) -> Result<(), EmergeError> {
        let fail = |msg: String| Err(EmergeError::InvalidConfig(msg));
        if self.in_channels == 0 || self.out_channels == 0 {
            return fail("in_channels and out_channels must be at least 1".into());
        }
        if self.block_out_channels.is_empty() {
            return fail("block_out_channels must list at least one level".into());
        }
        if self.layers_per_block == 0 {
            return fail("layers_per_block must be at least 1".into());
        }
        if self.norm_num_groups == 0 {
            return fail("norm_num_groups must be at least 1".into());
        }
        if let Some(&c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || c % self.norm_num_groups != 0)
        {
            return fail(format!(
                "every entry of block_out_channels must be a positive multiple of norm_num_groups ({}), got {c}",
                self.norm_num_groups
            ));
        }
        let downsamples = self.block_out_channels.len() - 1;
        if self.sample_size == 0 || !self.sample_size.is_multiple_of(1 << downsamples) {
            return fail(format!(
                "sample_size {} must be divisible by 2^{downsamples} for {} levels",
                self.sample_size,
                self.block_out_channels.len()
            ));
        }
        let resolutions: Vec<usize> = (0..self.block_out_channels.len())
            .map(|l| self.resolution(l))
            .collect();
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !resolutions.contains(r))
        {
            return fail(format!(
                "attention resolution {r} is not one of the levels' resolutions {resolutions:?}"
            ));
        }
        if let Some(head_dim) = self.attention_head_dim {
            let attention_channels = (0..self.block_out_channels.len())
                .filter(|&l| self.has_attention(l))
                .map(|l| self.block_out_channels[l])
                .chain(self.block_out_channels.last().copied());
            for c in attention_channels {
                if head_dim == 0 || c % head_dim != 0 {
                    return fail(format!(
                        "attention_head_dim {head_dim} must divide the attention channels ({c})"
                    ));
                }
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout must lie in [0, 1), got {}", self.dropout));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return fail(format!("norm_eps must be positive, got {}", self.norm_eps));
        }
        if self.downsample_padding > 1 {
            return fail(format!(
                "downsample_padding must be 0 or 1, got {}",
                self.downsample_padding
            ));
        }
        let half = self.block_out_channels[0] / 2;
        if self.freq_shift >= half as f64 || !self.freq_shift.is_finite() {
            return fail(format!(
                "freq_shift {} must be below half the embedding width ({half})",
                self.freq_shift
            ));
        }
        if let Some(n) = self.num_class_embeds
            && n < 2
        {
            return fail(format!(
                "num_class_embeds must count at least one class plus the null class, got {n}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in UNetConfig::PRESETS {
            UNetConfig::preset(name).unwrap().validate().unwrap();
        }
        assert!(
            UNetConfig::preset("huge")
                .unwrap_err()
                .to_string()
                .contains("unknown preset 'huge'")
        );
    }

    #[test]
    fn invalid_configs_name_the_problem() {
        let mut c = UNetConfig::tiny();
        c.block_out_channels = vec![16, 30];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("block_out_channels")
        );
        let mut c = UNetConfig::tiny();
        c.attention_resolutions = vec![5];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("attention resolution 5")
        );
        let mut c = UNetConfig::tiny();
        c.sample_size = 9;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("sample_size 9")
        );
        let mut c = UNetConfig::tiny();
        c.dropout = 1.0;
        assert!(c.validate().unwrap_err().to_string().contains("dropout"));
        let mut c = UNetConfig::tiny();
        c.attention_head_dim = Some(5);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("attention_head_dim")
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = UNetConfig::ddpm_cifar10();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<UNetConfig>(&json).unwrap(), c);
    }
}
