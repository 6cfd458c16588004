//! Training checkpoints: the model, its EMA copy, the optimizer state and the trainer state
//! (step, random stream), written atomically. Each checkpoint is built in a `.tmp` directory,
//! renamed into place, and only then named in `latest` (itself replaced by a rename), so a kill
//! at any moment leaves the previous checkpoint intact and loadable.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use emerge_core::training::TrainerState;
use emerge_core::weights::{self, Precision};
use emerge_core::{ModelConfig, UNet};

pub struct Checkpoint {
    pub state: TrainerState,
    pub model: UNet,
    pub ema: UNet,
    pub optimizer: Bytes,
}

fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Writes a checkpoint for `state.step` and prunes all but the two newest.
pub fn save(
    run: &Path,
    config: &ModelConfig,
    model: &UNet,
    ema: &UNet,
    optimizer: &ModuleOptimizer,
    state: &TrainerState,
) -> Result<()> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    let name = format!("step-{:07}", state.step);
    let tmp = dir.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    weights::save(&tmp.join("model.bpk"), model, config, Precision::F32)?;
    weights::save(&tmp.join("ema.bpk"), ema, config, Precision::F32)?;
    let optimizer_bytes = optimizer
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer: {e:?}"))?;
    emerge_core::atomic_file::write_atomically(&tmp.join("optimizer.bpk"), &optimizer_bytes)?;
    emerge_core::atomic_file::write_atomically(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)?;
    emerge_core::atomic_file::write_atomically(&dir.join("latest"), name.as_bytes())?;
    prune(&dir, &name)?;
    Ok(())
}

/// Removes checkpoints older than the newest two, and leftovers of interrupted saves.
fn prune(dir: &Path, latest: &str) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    names.sort();
    let keep_from = names
        .iter()
        .position(|n| n == latest)
        .unwrap_or(names.len())
        .saturating_sub(1);
    for (i, name) in names.iter().enumerate() {
        if i < keep_from || name.ends_with(".tmp") {
            std::fs::remove_dir_all(dir.join(name))?;
        }
    }
    Ok(())
}

/// Whether the run directory holds a checkpoint.
pub fn exists(run: &Path) -> bool {
    checkpoints_dir(run).join("latest").is_file()
}

/// Loads the newest checkpoint; the models are built on `device` (an autodiff device for
/// training).
pub fn load_latest(run: &Path, device: &Device) -> Result<Checkpoint> {
    let dir = checkpoints_dir(run);
    let name = std::fs::read_to_string(dir.join("latest"))
        .with_context(|| format!("no checkpoint in '{}'", dir.display()))?;
    let path = dir.join(name.trim());
    let (_, model) = weights::load(&path.join("model.bpk"), device)?;
    let (_, ema) = weights::load(&path.join("ema.bpk"), &device.clone().inner())?;
    let optimizer =
        std::fs::read(path.join("optimizer.bpk")).context("cannot read the optimizer state")?;
    let state_json = std::fs::read_to_string(path.join("state.json"))
        .context("cannot read the trainer state")?;
    let state = serde_json::from_str(&state_json).context("the trainer state is damaged")?;
    Ok(Checkpoint {
        state,
        model,
        ema,
        optimizer: Bytes::from_bytes_vec(optimizer),
    })
}
