//! `emerge import`: a diffusers checkpoint, converted and listed for the page.

use anyhow::{Context, Result};
use burn::tensor::Device;

use super::args::ImportArgs;
use crate::manifest::Provenance;
use crate::publish::publish;

pub fn run(args: ImportArgs) -> Result<()> {
    let imported = crate::import::import(&args.checkpoint, &Device::flex())
        .with_context(|| format!("cannot import '{}'", args.checkpoint.display()))?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .checkpoint
            .canonicalize()?
            .file_name()
            .context("the checkpoint path has no directory name: pass --name")?
            .to_string_lossy()
            .into_owned(),
    };
    for note in &imported.notes {
        println!("note: {note}");
    }
    let source = args
        .source
        .unwrap_or_else(|| format!("diffusers checkpoint {name}"));
    // No recommendation: the page and the CLI use `SamplingRequest::fallback` until one is
    // measured and set with `emerge recommend`.
    let provenance = Provenance {
        source,
        training_steps: None,
        checkpoints: Vec::new(),
    };
    publish(
        &imported.unet,
        &imported.config,
        &args.out,
        &name,
        provenance,
        args.precision,
    )?;
    println!(
        "imported {} ({} parameters)",
        imported.weights_file.display(),
        burn::module::Module::num_params(&imported.unet)
    );
    Ok(())
}
