//! The training loop: DDPM's L_simple (Algorithm 1) on MNIST with AdamW, warm-up and cosine
//! decay, gradient clipping, an EMA copy of the weights, optional label dropout for
//! classifier-free guidance, periodic sample grids, and exact resume from checkpoints.

pub mod checkpoint;
pub mod config;
pub mod ema;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge_core::{GaussianNoise, Lesson, NoiseSchedule, UNet};

use crate::mnist::{self, Split};
use crate::sample::{self, Stepping};
use checkpoint::TrainerState;
pub use config::TrainingConfig;

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

/// The training set in model space: x ∈ [−1, 1], `[N, 1, H, W]` row-major, and labels.
struct Dataset {
    pixels: Vec<f32>,
    labels: Vec<u8>,
    image_size: usize,
}

impl Dataset {
    fn load(dir: &Path, expected_size: usize) -> Result<Self> {
        let digits = mnist::load(dir, Split::Train)?;
        ensure!(
            digits.rows == expected_size && digits.cols == expected_size,
            "the model takes {expected_size}×{expected_size} images but the data set holds {}×{}",
            digits.rows,
            digits.cols
        );
        let pixels = digits
            .images
            .iter()
            .map(|&b| emerge_core::image::from_byte(b))
            .collect();
        Ok(Self {
            pixels,
            labels: digits.labels,
            image_size: expected_size,
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// The permutation of epoch `epoch`: a Fisher–Yates shuffle from a stream seeded by the run
    /// seed and the epoch, so any position of any epoch can be recomputed after a resume.
    fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<u32> {
        let mut rng = GaussianNoise::new(seed ^ 0x5eed_0000_0000_0000 ^ epoch as u64);
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next_below(i as u64 + 1) as usize);
        }
        order
    }
}

/// The images of one step and the host draws that go with them.
pub(crate) struct Batch {
    /// x_0, `[B, 1, H, W]` row-major, in [−1, 1].
    pub x0: Vec<f32>,
    pub labels: Vec<i64>,
    pub timesteps: Vec<usize>,
    /// ε, like x_0.
    pub noise: Vec<f32>,
}

pub fn train(config: &TrainingConfig, options: &TrainOptions) -> Result<TrainSummary> {
    config.validate()?;
    let unet_config = &config.model.unet;
    let schedule = config.model.noise_schedule()?;
    let data = Dataset::load(&options.data_dir, unet_config.sample_size)?;
    ensure!(
        unet_config.in_channels == 1,
        "MNIST is greyscale: the model must take 1 channel"
    );
    std::fs::create_dir_all(&options.run_dir)
        .with_context(|| format!("cannot create '{}'", options.run_dir.display()))?;
    let config_path = options.run_dir.join("config.json");

    let device = options.device.clone().autodiff();
    let optimizer_config = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip_norm)));
    let mut optimizer = optimizer_config.init();
    let (mut model, mut ema, mut state) = if checkpoint::exists(&options.run_dir) {
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
        let ckpt = checkpoint::load_latest(&options.run_dir, &device)?;
        optimizer = optimizer
            .from_bytes(ckpt.optimizer)
            .map_err(|e| anyhow::anyhow!("cannot restore the optimizer state: {e:?}"))?;
        (ckpt.model, ckpt.ema, ckpt.state)
    } else {
        device.seed(config.seed);
        let model = UNet::new(unet_config, &device)?;
        let ema = model.valid();
        emerge_core::atomic_file::write_atomically(
            &config_path,
            serde_json::to_string_pretty(config)?.as_bytes(),
        )?;
        let state = TrainerState {
            step: 0,
            rng: GaussianNoise::new(config.seed),
            elapsed_seconds: 0.0,
        };
        (model, ema, state)
    };
    let mut log = LossLog::open(&options.run_dir.join("log.csv"), state.step)?;
    if state.step == 0 && options.timeline.contains(&0) {
        save_timeline(&options.run_dir, &config.model, &ema, 0)?;
    }

    let stop = options.stop_at.unwrap_or(config.steps).min(config.steps);
    let progress = progress_bar(options.progress, config.steps as u64, state.step as u64);
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    let mut order_cache: Option<(usize, Vec<u32>)> = None;
    let mut last_loss = f32::NAN;
    while state.step < stop {
        let step_started = Instant::now();
        let batch = next_batch(config, &data, &schedule, &mut state, &mut order_cache);
        // Dropout draws from the device's generator: reseed per step so resumed runs match.
        device.seed(config.seed.wrapping_add(state.step as u64));
        let loss = training_loss(
            &model,
            config.min_snr_gamma,
            &schedule,
            &batch,
            data.image_size,
            &device,
        )?;
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(config.learning_rate_at(state.step), model, gradients);
        ema = ema::update(
            ema,
            &model.valid(),
            ema::decay_at(state.step, config.ema_decay),
        );
        last_loss = loss.into_scalar::<f32>();
        ensure!(
            last_loss.is_finite(),
            "the loss diverged at step {} ({last_loss})",
            state.step
        );
        state.step += 1;
        state.elapsed_seconds = elapsed_before + started.elapsed().as_secs_f64();
        let images_per_second = config.batch_size as f64 / step_started.elapsed().as_secs_f64();
        log.record(
            state.step,
            last_loss,
            config.learning_rate_at(state.step - 1),
            images_per_second,
            state.elapsed_seconds,
        )?;
        progress.set_position(state.step as u64);
        progress.set_message(format!("loss {last_loss:.4}  {images_per_second:.0} img/s"));

        if state.step % config.checkpoint_every == 0 || state.step == stop {
            checkpoint::save(
                &options.run_dir,
                &config.model,
                &model.valid(),
                &ema,
                &optimizer,
                &state,
            )?;
        }
        if options.timeline.contains(&state.step) {
            save_timeline(&options.run_dir, &config.model, &ema, state.step)?;
        }
        if config.sample_every > 0 && state.step % config.sample_every == 0 {
            write_sample_grid(&ema, config, &options.run_dir, state.step)?;
        }
    }
    progress.finish_and_clear();
    Ok(TrainSummary {
        step: state.step,
        last_loss,
        elapsed_seconds: state.elapsed_seconds,
    })
}

/// Draws one batch: data in epoch order, label dropout, uniform timesteps, Gaussian noise.
fn next_batch(
    config: &TrainingConfig,
    data: &Dataset,
    schedule: &NoiseSchedule,
    state: &mut TrainerState,
    order_cache: &mut Option<(usize, Vec<u32>)>,
) -> Batch {
    let pixels = data.image_size * data.image_size;
    let null_class = config.model.unet.null_class();
    let mut batch = Batch {
        x0: Vec::with_capacity(config.batch_size * pixels),
        labels: Vec::new(),
        timesteps: Vec::new(),
        noise: Vec::new(),
    };
    for i in 0..config.batch_size {
        let global = state.step * config.batch_size + i;
        let epoch = global / data.len();
        if order_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            *order_cache = Some((epoch, data.epoch_order(config.seed, epoch)));
        }
        let index = order_cache.as_ref().expect("just filled").1[global % data.len()] as usize;
        batch
            .x0
            .extend_from_slice(&data.pixels[index * pixels..(index + 1) * pixels]);
        let drop_label = state.rng.next_uniform() < config.label_dropout;
        let label = match null_class {
            Some(null) if drop_label => null,
            _ => data.labels[index] as usize,
        };
        batch.labels.push(label as i64);
        // t ~ Uniform({1, …, T})  (Algorithm 1, line 3; 0-based here)
        batch
            .timesteps
            .push(state.rng.next_below(schedule.num_train_timesteps() as u64) as usize);
    }
    // ε ~ N(0, I)  (Algorithm 1, line 4)
    batch.noise = state.rng.normals(config.batch_size * pixels);
    batch
}

/// Σ_i λ_i ‖ε_i − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² / B  (Algorithm 1, line 5: L_simple with
/// λ = 1, or Min-SNR-γ's λ_t = min(SNR(t), γ)/SNR(t) (Hang et al. 2023, eq. 7 for ε-prediction)).
pub(crate) fn training_loss(
    model: &UNet,
    min_snr_gamma: Option<f64>,
    schedule: &NoiseSchedule,
    batch: &Batch,
    size: usize,
    device: &Device,
) -> Result<Tensor<1>> {
    let b = batch.labels.len();
    let shape = [b, 1, size, size];
    let x0 = Tensor::<4>::from_data(TensorData::new(batch.x0.clone(), shape), device);
    let noise = Tensor::<4>::from_data(TensorData::new(batch.noise.clone(), shape), device);
    let labels = model
        .class_embedding
        .is_some()
        .then(|| Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [b]), device));
    let per_image = Lesson::new(model, schedule, x0, noise, &batch.timesteps, labels)?.noise_loss();
    let Some(gamma) = min_snr_gamma else {
        return Ok(per_image.mean());
    };
    let weights: Vec<f32> = batch
        .timesteps
        .iter()
        .map(|&t| min_snr_weight(schedule.snr(t), gamma) as f32)
        .collect();
    let weights = Tensor::<1>::from_data(TensorData::new(weights, [b]), device);
    Ok((per_image * weights).mean())
}

/// λ_t = min(SNR(t), γ)/SNR(t)  (Hang et al. 2023, eq. 7: Min-SNR-γ for ε-prediction).
fn min_snr_weight(snr: f64, gamma: f64) -> f64 {
    snr.min(gamma) / snr
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
