//! `manifest.json`: the list of models the page can load, with what it shows before loading
//! (name, size, classes) and the defaults it starts with.

use std::path::Path;

use anyhow::{Context, Result};
use emerge_core::{Guidance, ModelConfig};
use serde::{Deserialize, Serialize};

/// The guidance a conditional model is sampled with unless told otherwise (the page through the
/// manifest, `sample`, `eval`, `export`): the shipped model's best measured trade-off (see
/// www/models/MODEL.md). The interval is in the shipped model's timesteps.
pub const DEFAULT_GUIDANCE: Guidance = Guidance {
    scale: 1.25,
    interval: None,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    /// File name relative to the manifest.
    pub file: String,
    pub bytes: usize,
    pub parameters: usize,
    pub image_size: usize,
    pub channels: usize,
    /// Class names, empty for an unconditional model.
    pub classes: Vec<String>,
    pub default_sampler: String,
    pub default_steps: usize,
    pub default_guidance: f64,
    /// Inclusive timesteps `[low, high]` where the default guidance applies; absent: every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_guidance_interval: Option<[usize; 2]>,
    /// Where the weights come from, in words the page shows.
    pub source: String,
    /// Training steps behind these weights (absent for imported ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_steps: Option<usize>,
    /// Earlier EMA weights of the same training run, for the page's training timeline,
    /// downloaded only when a visitor asks (empty: none were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<TimelineCheckpoint>,
}

/// One earlier state of a model's training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineCheckpoint {
    pub step: usize,
    /// File name relative to the manifest.
    pub file: String,
    pub bytes: usize,
}

/// What the manifest tells the page about a model beyond its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommended {
    /// Where the weights come from, in words.
    pub source: String,
    /// The guidance the page opens with (an unconditional model gets w = 0).
    pub guidance: Guidance,
    /// Training steps behind the weights, when this project trained them.
    pub training_steps: Option<usize>,
    /// The training timeline's checkpoints, already written next to the manifest.
    pub checkpoints: Vec<TimelineCheckpoint>,
}

impl ManifestEntry {
    pub fn new(
        name: &str,
        file: &str,
        bytes: usize,
        config: &ModelConfig,
        parameters: usize,
        recommended: Recommended,
    ) -> Self {
        let classes = config
            .unet
            .null_class()
            .map_or(Vec::new(), |n| (0..n).map(|c| c.to_string()).collect());
        Self {
            name: name.to_string(),
            file: file.to_string(),
            bytes,
            parameters,
            image_size: config.unet.sample_size,
            channels: config.unet.in_channels,
            classes,
            default_sampler: "ddim".into(),
            default_steps: 50,
            default_guidance: if config.unet.is_conditional() {
                recommended.guidance.scale
            } else {
                0.0
            },
            default_guidance_interval: recommended
                .guidance
                .interval
                .filter(|_| config.unet.is_conditional())
                .map(|(low, high)| [low, high]),
            source: recommended.source,
            training_steps: recommended.training_steps,
            checkpoints: recommended.checkpoints,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model the page opens with.
    pub default: String,
    pub models: Vec<ManifestEntry>,
}

/// Adds or replaces `entry` in the manifest at `path` (creating it), keeping other models.
pub fn upsert(path: &Path, entry: ManifestEntry) -> Result<()> {
    let mut manifest: Manifest = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("'{}' is not a valid manifest", path.display()))?,
        Err(_) => Manifest::default(),
    };
    if manifest.default.is_empty() {
        manifest.default = entry.name.clone();
    }
    match manifest.models.iter_mut().find(|m| m.name == entry.name) {
        Some(existing) => *existing = entry,
        None => manifest.models.push(entry),
    }
    emerge_core::atomic_file::write_atomically(
        path,
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(())
}
