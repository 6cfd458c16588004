//! The training loop: DDPM's L_simple (Algorithm 1) on MNIST with AdamW, warm-up and cosine
//! decay, gradient clipping, an EMA copy of the weights, optional label dropout for
//! classifier-free guidance, periodic sample grids, and exact resume from checkpoints.

pub mod checkpoint;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::tensor::Device;
use emerge_core::UNet;
use emerge_core::training::{Digits, Trainer};

use crate::mnist::{self, Split};
use crate::sample::{self, Stepping};
pub use emerge_core::training::TrainingConfig;

/// Where a run lives and how far this invocation may take it.
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Continue from the run's newest checkpoint.
    pub resume: bool,
    /// Stop after this many steps in total even if the schedule runs longer (for staged runs).
    pub stop_at: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
    /// Where the model trains (the autodiff decorator is added here).
    pub device: Device,
    /// Steps after which the EMA weights are also exported (f16 model files in
    /// `<run>/timeline/`) for the page's training timeline; 0 is the untrained network.
    pub timeline: Vec<usize>,
}

/// What a finished invocation reports.
#[derive(Debug)]
pub struct TrainSummary {
    pub step: usize,
    pub last_loss: f32,
    pub elapsed_seconds: f64,
}

/// MNIST's training split as the trainer's digits; the model must take its image size.
fn load_digits(dir: &Path, expected_size: usize) -> Result<Digits> {
    let digits = mnist::load(dir, Split::Train)?;
    ensure!(
        digits.rows == expected_size && digits.cols == expected_size,
        "the model takes {expected_size}×{expected_size} images but the data set holds {}×{}",
        digits.rows,
        digits.cols
    );
    Ok(Digits::new(&digits.images, digits.labels, expected_size)?)
}

pub fn train(config: &TrainingConfig, options: &TrainOptions) -> Result<TrainSummary> {
    config.validate()?;
    let unet_config = &config.model.unet;
    ensure!(
        unet_config.in_channels == 1,
        "MNIST is greyscale: the model must take 1 channel"
    );
    let data = load_digits(&options.data_dir, unet_config.sample_size)?;
    std::fs::create_dir_all(&options.run_dir)
        .with_context(|| format!("cannot create '{}'", options.run_dir.display()))?;
    let config_path = options.run_dir.join("config.json");

    let mut trainer = if checkpoint::exists(&options.run_dir) {
        if !options.resume {
            bail!(
                "'{}' already holds a training run: pass --resume to continue it, or choose another --out",
                options.run_dir.display()
            );
        }
        let saved: TrainingConfig = serde_json::from_str(&std::fs::read_to_string(&config_path)?)
            .context("the run's config.json is damaged")?;
        ensure!(
            &saved == config,
            "the run in '{}' was started with different settings; resume it with the same ones (see its config.json)",
            options.run_dir.display()
        );
        let ckpt = checkpoint::load_latest(&options.run_dir, &options.device.clone().autodiff())?;
        Trainer::resume(
            config.clone(),
            ckpt.model,
            ckpt.ema,
            ckpt.optimizer,
            ckpt.state,
        )?
    } else {
        let trainer = Trainer::new(config.clone(), &options.device)?;
        emerge_core::atomic_file::write_atomically(
            &config_path,
            serde_json::to_string_pretty(config)?.as_bytes(),
        )?;
        trainer
    };
    let resumed_at = trainer.state().step;
    let mut log = LossLog::open(&options.run_dir.join("log.csv"), resumed_at)?;
    if resumed_at == 0 && options.timeline.contains(&0) {
        save_timeline(&options.run_dir, &config.model, trainer.ema(), 0)?;
    }

    let stop = options.stop_at.unwrap_or(config.steps).min(config.steps);
    let progress = progress_bar(options.progress, config.steps as u64, resumed_at as u64);
    let started = Instant::now();
    let elapsed_before = trainer.state().elapsed_seconds;
    let mut last_loss = f32::NAN;
    while trainer.state().step < stop {
        let step_started = Instant::now();
        last_loss = trainer.step(&data)?.into_scalar::<f32>();
        let step = trainer.state().step;
        ensure!(
            last_loss.is_finite(),
            "the loss diverged at step {} ({last_loss})",
            step - 1
        );
        trainer.set_elapsed_seconds(elapsed_before + started.elapsed().as_secs_f64());
        let images_per_second = config.batch_size as f64 / step_started.elapsed().as_secs_f64();
        log.record(
            step,
            last_loss,
            config.learning_rate_at(step - 1),
            images_per_second,
            trainer.state().elapsed_seconds,
        )?;
        progress.set_position(step as u64);
        progress.set_message(format!("loss {last_loss:.4}  {images_per_second:.0} img/s"));

        if step % config.checkpoint_every == 0 || step == stop {
            checkpoint::save(
                &options.run_dir,
                &config.model,
                &trainer.model().valid(),
                trainer.ema(),
                trainer.optimizer(),
                trainer.state(),
            )?;
        }
        if options.timeline.contains(&step) {
            save_timeline(&options.run_dir, &config.model, trainer.ema(), step)?;
        }
        if config.sample_every > 0 && step % config.sample_every == 0 {
            write_sample_grid(trainer.ema(), config, &options.run_dir, step)?;
        }
    }
    progress.finish_and_clear();
    Ok(TrainSummary {
        step: trainer.state().step,
        last_loss,
        elapsed_seconds: trainer.state().elapsed_seconds,
    })
}

/// Exports the EMA weights at `step` to `<run>/timeline/step-NNNNNNN.bpk` (f16; `export` stores
/// them at its `--precision`).
fn save_timeline(
    run: &Path,
    config: &emerge_core::ModelConfig,
    ema: &UNet,
    step: usize,
) -> Result<()> {
    let dir = run.join("timeline");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    emerge_core::weights::save(
        &dir.join(format!("step-{step:07}.bpk")),
        ema,
        config,
        emerge_core::weights::Precision::F16,
    )?;
    Ok(())
}

/// A grid with one row per digit (or 8 unconditional rows), sampled from the EMA weights.
fn write_sample_grid(ema: &UNet, config: &TrainingConfig, run: &Path, step: usize) -> Result<()> {
    let model = emerge_core::Model::new(config.model.clone(), ema.clone())?;
    let request = sample::class_rows(&model, 8, config.seed);
    let images = sample::generate(
        &model,
        &request,
        0..request.images,
        Stepping::Recorded,
        |_| {},
    )?;
    let dir = run.join("samples");
    std::fs::create_dir_all(&dir)?;
    crate::images::write_png_grid(&dir.join(format!("step-{step:07}.png")), &images, 8)
}

/// `log.csv`: one line per step. On resume, lines past the checkpoint (written after it by the
/// interrupted process) are dropped, so the log matches the weights.
struct LossLog {
    file: std::fs::File,
}

impl LossLog {
    const HEADER: &'static str = "step,loss,learning_rate,images_per_second,elapsed_seconds";

    fn open(path: &Path, resumed_step: usize) -> Result<Self> {
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| {
                    l.split(',')
                        .next()
                        .and_then(|s| s.parse::<usize>().ok())
                        .is_some_and(|s| s <= resumed_step)
                })
                .map(str::to_owned)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut file = std::fs::File::create(path)
            .with_context(|| format!("cannot write '{}'", path.display()))?;
        writeln!(file, "{}", Self::HEADER)?;
        for line in kept {
            writeln!(file, "{line}")?;
        }
        Ok(Self { file })
    }

    fn record(
        &mut self,
        step: usize,
        loss: f32,
        lr: f64,
        images_per_second: f64,
        elapsed: f64,
    ) -> Result<()> {
        writeln!(
            self.file,
            "{step},{loss},{lr:e},{images_per_second:.2},{elapsed:.1}"
        )?;
        Ok(())
    }
}

fn progress_bar(visible: bool, total: u64, position: u64) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total).with_position(position);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
pub(crate) mod tests;
