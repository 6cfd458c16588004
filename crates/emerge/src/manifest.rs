//! `manifest.json`: the list of models the page can load, with what it shows before loading
//! (name, size, classes) and the defaults it starts with.

use std::path::Path;

use anyhow::{Context, Result};
use emerge_core::weights::Precision;
use emerge_core::{ModelConfig, SamplingRequest};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    /// File name relative to the manifest.
    pub file: String,
    pub bytes: usize,
    /// How the file stores the weights (the page computes in f32 whatever it is).
    #[serde(default = "f16")]
    pub precision: Precision,
    pub parameters: usize,
    pub image_size: usize,
    pub channels: usize,
    /// Class names, empty for an unconditional model.
    pub classes: Vec<String>,
    /// The request the page opens with: the model file's recommendation (the same JSON).
    pub recommended: SamplingRequest,
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

/// What the manifest tells the page about a model beyond its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Where the weights come from, in words.
    pub source: String,
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
        precision: Precision,
        config: &ModelConfig,
        parameters: usize,
        provenance: Provenance,
    ) -> Self {
        let classes = config
            .unet
            .null_class()
            .map_or(Vec::new(), |n| (0..n).map(|c| c.to_string()).collect());
        Self {
            name: name.to_string(),
            file: file.to_string(),
            bytes,
            precision,
            parameters,
            image_size: config.unet.sample_size,
            channels: config.unet.in_channels,
            classes,
            recommended: config
                .recommended
                .clone()
                .unwrap_or_else(|| SamplingRequest::fallback(config)),
            source: provenance.source,
            training_steps: provenance.training_steps,
            checkpoints: provenance.checkpoints,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model the page opens with.
    pub default: String,
    pub models: Vec<ManifestEntry>,
}

/// Manifests written before files could be quantized listed f16 files.
fn f16() -> Precision {
    Precision::F16
}

/// The manifest at `path`, or an empty one when there is no file.
pub fn read(path: &Path) -> Result<Manifest> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("'{}' is not a valid manifest", path.display())),
        Err(_) => Ok(Manifest::default()),
    }
}

/// Applies `change` to the entry listing model file `model` in the manifest beside it, if that
/// directory has a manifest and it lists the file; returns the manifest's path when it did.
pub fn update_entry(
    model: &Path,
    change: impl FnOnce(&mut ManifestEntry) -> Result<()>,
) -> Result<Option<std::path::PathBuf>> {
    let path = model
        .parent()
        .unwrap_or(Path::new("."))
        .join("manifest.json");
    if !path.exists() {
        return Ok(None);
    }
    let mut manifest = read(&path)?;
    let file = model
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(entry) = manifest.models.iter_mut().find(|m| m.file == file) else {
        return Ok(None);
    };
    change(entry)?;
    emerge_core::atomic_file::write_atomically(
        &path,
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(Some(path))
}

/// Adds or replaces `entry` in the manifest at `path` (creating it), keeping other models.
pub fn upsert(path: &Path, entry: ManifestEntry) -> Result<()> {
    let mut manifest = read(path)?;
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
