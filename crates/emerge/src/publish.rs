//! Publishing a model for the page: its weights as a model file (f16 or quantized) and its
//! entry in the manifest the page reads.

use std::path::Path;

use anyhow::{Context, Result};
use emerge_core::weights::{self, Precision};
use emerge_core::{ModelConfig, UNet};

use crate::manifest::Provenance;

/// Writes `<out>/<name>.bpk` (at `precision`, `config` with its recommended request) and its
/// manifest entry: what the page loads.
pub fn publish(
    unet: &UNet,
    config: &ModelConfig,
    out: &Path,
    name: &str,
    provenance: Provenance,
    precision: Precision,
) -> Result<()> {
    config
        .validate()
        .context("the model's recommended request is not one it can run")?;
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "model name '{name}' must use only letters, digits, '-', '_' and '.'"
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create '{}'", out.display()))?;
    let file = format!("{name}.{}", weights::EXTENSION);
    let bytes = weights::to_bytes(unet, config, precision)?;
    emerge_core::atomic_file::write_atomically(&out.join(&file), &bytes)?;
    let parameters = burn::module::Module::num_params(unet);
    let entry = crate::manifest::ManifestEntry::new(
        name,
        &file,
        bytes.len(),
        precision,
        config,
        parameters,
        provenance,
    );
    crate::manifest::upsert(&out.join("manifest.json"), entry)?;
    println!(
        "wrote {file} ({} bytes, {precision}) and its manifest entry to {}",
        bytes.len(),
        out.display()
    );
    Ok(())
}
