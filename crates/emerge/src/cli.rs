//! The command-line interface: one subcommand per job, each a function.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::{Args, Parser, Subcommand, ValueEnum};
use emerge_core::{Guidance, ModelConfig, SamplerKind, UNet, weights};
use indicatif::{ProgressBar, ProgressStyle};

use crate::devices::DeviceChoice;
use crate::manifest::{DEFAULT_GUIDANCE, Recommended};
use crate::sample::{self, Images, SampleRequest};
use crate::train::{self, TrainOptions, TrainingConfig};

/// emerge: a DDPM you can watch think. Train it, sample from it, measure it, export it for the page.
#[derive(Debug, Parser)]
#[command(name = "emerge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on MNIST (L_simple, AdamW, EMA), with checkpoints and exact resume.
    Train(TrainArgs),
    /// Sample images: a PNG grid (.png), the denoising trajectory (.gif) or MNIST IDX (.idx).
    Sample(SampleArgs),
    /// Write the files the page loads (f16 weights + manifest) from a run's EMA weights.
    Export(ExportArgs),
    /// Convert a diffusers UNet2DModel checkpoint (config.json, diffusion_pytorch_model.safetensors
    /// or .bin, scheduler_config.json) into the files the page loads.
    Import(ImportArgs),
    /// Time one denoising step (one UNet forward pass) per batch size, median of several runs.
    Bench(BenchArgs),
    /// Train the small MNIST classifier whose features the evaluation uses.
    TrainClassifier(TrainClassifierArgs),
    /// Measure a model: Fréchet distance to the test set (with the train-vs-test floor),
    /// accuracy of conditional samples, class histogram of unconditional ones.
    Eval(EvalArgs),
    /// Hold every device this binary can open to Flex: each layer type of the UNet, whole
    /// forward passes and a guided DDIM run, from the same inputs. Exits non-zero if any row is
    /// over its tolerance, naming the first.
    CheckDevices(CheckArgs),
}

/// The classifier-free guidance of the commands that sample (sample, eval, export's defaults).
#[derive(Debug, Args)]
pub struct GuidanceArgs {
    /// Classifier-free guidance scale w (0 = unconditional, 1 = conditional, >1 sharper).
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    pub guidance: f64,
    /// Apply w only for timesteps LOW ≤ t ≤ HIGH (the plain conditional prediction elsewhere;
    /// Kynkäänniemi et al. 2024), e.g. `--guidance-interval 0:600`. Default: every step.
    #[arg(long, value_name = "LOW:HIGH", value_parser = parse_interval)]
    pub guidance_interval: Option<(usize, usize)>,
}

impl GuidanceArgs {
    pub fn guidance(&self) -> Guidance {
        Guidance {
            scale: self.guidance,
            interval: self.guidance_interval,
        }
    }
}

/// `LOW:HIGH` (inclusive timesteps, LOW ≤ HIGH).
fn parse_interval(text: &str) -> Result<(usize, usize), String> {
    let (low, high) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not LOW:HIGH (for example 0:600)"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{s}' in '{text}' is not a timestep (a whole number ≥ 0)"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(format!("'{text}' is empty: LOW must not exceed HIGH"));
    }
    Ok((low, high))
}

/// The `--device` of the commands that compute (train, sample, eval).
#[derive(Debug, Args)]
pub struct DeviceArg {
    /// Where to compute: cpu (Flex) or gpu (wgpu; an error when no GPU adapter exists).
    #[arg(long = "device", value_name = "DEVICE", value_enum, default_value_t = DeviceChoice::Cpu)]
    pub choice: DeviceChoice,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The model whose layers and sampling run are checked (default: the shipped MNIST model,
    /// built into this binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Presets whose whole forward pass is also checked, with fresh seeded weights.
    #[arg(long, value_delimiter = ',', default_value = "ddpm-cifar10")]
    pub presets: Vec<String>,
    /// Batch sizes of the layer and forward-pass rows.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batches: Vec<usize>,
    /// Steps of the guided DDIM run (η = 1).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Images in the DDIM run (digits 0, 1, … in turn).
    #[arg(long, default_value_t = 16)]
    pub images: usize,
    #[arg(long, default_value_t = DEFAULT_GUIDANCE)]
    pub guidance: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fail when no GPU adapter is found (instead of checking nothing).
    #[arg(long)]
    pub require_gpu: bool,
}

/// Where the committed evaluation classifier lives (relative to the repository root).
pub const CLASSIFIER_PATH: &str = "crates/emerge/assets/mnist-classifier.bpk";

#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    /// Directory holding the MNIST IDX files.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = CLASSIFIER_PATH)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file (.bpk) written by `export` or `import` (default: the shipped MNIST model, built
    /// into this binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Directory holding the MNIST IDX files.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = CLASSIFIER_PATH)]
    pub classifier: PathBuf,
    /// Samples per measurement (and training images for the floor).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    #[arg(long, value_enum, default_value_t = SamplerChoice::Ddim)]
    pub sampler: SamplerChoice,
    /// Denoising steps (default: T for DDPM, 50 for DDIM).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η.
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images sampled at once (batch k draws its noise from seed + k: keep it to reproduce a
    /// report).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Directory holding the MNIST IDX files (train-images-idx3-ubyte.gz, …).
    #[arg(long)]
    pub data: PathBuf,
    /// Network preset.
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    /// Channels per level, overriding the preset's (e.g. 32,64,128).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// Res blocks per level on the way down, overriding the preset's.
    #[arg(long)]
    pub layers_per_block: Option<usize>,
    /// Noise schedule: the paper's linear β (1e-4 to 0.02) or Improved DDPM's cosine.
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Linear)]
    pub schedule: ScheduleChoice,
    /// Run directory: config.json, log.csv, checkpoints/, samples/.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Optimisation steps in all (the learning rate schedule spans them).
    #[arg(long, default_value_t = 6000)]
    pub steps: usize,
    /// Stop this invocation after this many steps in total (resume later with --resume).
    #[arg(long)]
    pub stop_at: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 200)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.999)]
    pub ema_decay: f64,
    /// Probability of dropping a label to the null class (classifier-free guidance); 0 for an
    /// unconditional preset.
    #[arg(long, default_value_t = 0.1)]
    pub label_dropout: f64,
    /// Weight each image's loss by min(SNR(t), γ)/SNR(t) (Min-SNR-γ, Hang et al. 2023; 5 is
    /// theirs); without it the paper's unweighted L_simple.
    #[arg(long, value_name = "GAMMA")]
    pub min_snr_gamma: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: usize,
    /// Write a sample grid every this many steps (0: never).
    #[arg(long, default_value_t = 1000)]
    pub sample_every: usize,
    /// Also export the EMA weights after these steps (0: the untrained network) to
    /// <out>/timeline/ (f16), for the page's training timeline.
    #[arg(long, value_delimiter = ',')]
    pub timeline: Vec<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleChoice {
    Linear,
    Cosine,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SamplerChoice {
    /// Ancestral sampling (DDPM Algorithm 2), all T steps unless --steps respaces it.
    Ddpm,
    /// DDIM (Song et al. 2021), deterministic with --eta 0.
    Ddim,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model file (.bpk) written by `export` or `import` (default: the shipped MNIST model, built
    /// into this binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = SamplerChoice::Ddim)]
    pub sampler: SamplerChoice,
    /// Denoising steps (default: 1000 for DDPM, 50 for DDIM).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η: 1 adds DDPM-like fresh noise each step, 0 is deterministic.
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    /// Digit to draw (conditional models); all samples unconditional when absent.
    #[arg(long, conflicts_with = "digit_rows")]
    pub class: Option<usize>,
    /// One row per class, `--columns` samples each (overrides --count).
    #[arg(long)]
    pub digit_rows: bool,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
    /// Images per row in grids and GIFs.
    #[arg(long, default_value_t = 8)]
    pub columns: usize,
    /// Output: .png (grid), .gif (trajectory of x_t) or .idx (MNIST IDX3, u8, written batch by
    /// batch).
    #[arg(long)]
    pub out: PathBuf,
    /// Images sampled at once: memory grows with it, not with --count (batch k draws its noise
    /// from seed + k).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Training run directory (its newest checkpoint's EMA weights are exported).
    #[arg(long)]
    pub run: PathBuf,
    /// Directory the page serves models from.
    #[arg(long, default_value = "www/models")]
    pub out: PathBuf,
    /// Model name: the file is <name>.bpk and the manifest entry is keyed by it.
    #[arg(long, default_value = "mnist")]
    pub name: String,
    /// Also write the page's bundled real digits (two of each class from the MNIST test set
    /// in this directory) to <out>/../data.
    #[arg(long)]
    pub digits: Option<PathBuf>,
    /// The guidance the page opens with (conditional models): the one `eval` measured best.
    #[command(flatten)]
    pub guidance: GuidanceArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The diffusers checkpoint directory (for example a download of google/ddpm-cifar10-32).
    pub checkpoint: PathBuf,
    /// Directory the page serves models from (the manifest there gets an entry).
    #[arg(long, default_value = "www/models")]
    pub out: PathBuf,
    /// Model name (file <name>.bpk, manifest key); default: the checkpoint directory's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the weights come from, as the page shows it (default: "diffusers checkpoint <name>").
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Presets to time.
    #[arg(long, value_delimiter = ',', default_value = "mnist")]
    pub presets: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batches: Vec<usize>,
    /// Timed runs per case (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => run_train(args),
        Command::Sample(args) => run_sample(args),
        Command::Export(args) => run_export(args),
        Command::Import(args) => run_import(args),
        Command::Bench(args) => run_bench(args),
        Command::TrainClassifier(args) => run_train_classifier(args),
        Command::Eval(args) => run_eval(args),
        Command::CheckDevices(args) => run_check_devices(args),
    }
}

fn run_train(args: TrainArgs) -> Result<()> {
    let mut model = ModelConfig::preset(&args.preset)?;
    if let Some(channels) = args.channels {
        model.unet.block_out_channels = channels;
    }
    if let Some(layers) = args.layers_per_block {
        model.unet.layers_per_block = layers;
    }
    if let ScheduleChoice::Cosine = args.schedule {
        model.schedule.beta_schedule = emerge_core::BetaSchedule::COSINE;
    }
    let label_dropout = if model.unet.is_conditional() {
        args.label_dropout
    } else {
        0.0
    };
    let config = TrainingConfig {
        model,
        batch_size: args.batch_size,
        steps: args.steps,
        learning_rate: args.lr,
        min_learning_rate: args.lr / 100.0,
        warmup_steps: args.warmup_steps,
        weight_decay: 0.0,
        grad_clip_norm: 1.0,
        ema_decay: args.ema_decay,
        label_dropout,
        min_snr_gamma: args.min_snr_gamma,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        sample_every: args.sample_every,
    };
    let options = TrainOptions {
        data_dir: args.data,
        run_dir: args.out.clone(),
        resume: args.resume,
        stop_at: args.stop_at,
        progress: !args.quiet,
        device: crate::devices::open(args.device.choice)?.device,
        timeline: args.timeline,
    };
    let summary = train::train(&config, &options)?;
    println!(
        "step {}/{}  loss {:.4}  {:.1} min of training in all  → {}",
        summary.step,
        config.steps,
        summary.last_loss,
        summary.elapsed_seconds / 60.0,
        args.out.display()
    );
    Ok(())
}

fn run_sample(args: SampleArgs) -> Result<()> {
    let extension = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(extension.as_str(), "png" | "gif" | "idx") {
        bail!(
            "--out must end in .png, .gif or .idx, got '{}'",
            args.out.display()
        );
    }
    let device = crate::devices::open(args.device.choice)?.device;
    let (config, unet) = crate::model_file::load(args.model.as_deref(), &device)?;
    let (sampler, default_steps) = match args.sampler {
        SamplerChoice::Ddpm => (SamplerKind::Ddpm, config.schedule.num_train_timesteps),
        SamplerChoice::Ddim => (SamplerKind::Ddim { eta: args.eta }, 50),
    };
    let labels = if args.digit_rows {
        let classes = config
            .unet
            .null_class()
            .context("--digit-rows needs a class-conditional model")?;
        Some(
            (0..classes * args.columns)
                .map(|i| i / args.columns)
                .collect::<Vec<_>>(),
        )
    } else {
        args.class.map(|c| vec![c; args.count])
    };
    let count = labels.as_ref().map_or(args.count, Vec::len);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let request = SampleRequest {
        count,
        seed: args.seed,
        sampler,
        steps: args.steps.unwrap_or(default_steps),
        labels,
        guidance: args.guidance.guidance(),
    };
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(
        extension != "gif" || count <= args.batch,
        "a GIF shows the trajectory of one batch: --count ({count}) must be at most --batch ({})",
        args.batch
    );
    let (size, channels) = (config.unet.sample_size, config.unet.in_channels);
    let total = request.steps;
    let batches = count.div_ceil(args.batch);
    let progress = if batches > 1 {
        ProgressBar::new((batches * total) as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {eta} left")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut idx = match extension.as_str() {
        "idx" => Some(crate::images::IdxWriter::create(
            &args.out,
            count,
            [channels, size, size],
        )?),
        _ => None,
    };
    let mut grid = Images {
        values: Vec::new(),
        shape: [0, channels, size, size],
    };
    let mut frames = Vec::new();
    let started = Instant::now();
    let mut first_step = None;
    for part in request.batches(args.batch) {
        let mut step = 0;
        let images = sample::generate(&unet, &config, &part, |output| {
            step += 1;
            progress.inc(1);
            if first_step.is_none() {
                // Wait for the first step (kernel compilation included) so the later ones time alone.
                let _ = output.prev_sample.clone().into_data();
                first_step = Some(started.elapsed().as_secs_f64());
            }
            if extension == "gif"
                && crate::images::keeps_frame(step, total, crate::images::GIF_FRAMES)
                && let Ok(frame) = Images::from_tensor(output.prev_sample.clone())
            {
                frames.push(frame);
            }
        })?;
        match idx.as_mut() {
            Some(writer) => writer.append(&images)?, // streamed: memory stays flat in --count
            None if extension == "png" => {
                grid.values.extend_from_slice(&images.values);
                grid.shape[0] += images.shape[0];
            }
            None => {}
        }
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let first = first_step.unwrap_or(seconds);
    match (extension.as_str(), idx) {
        (_, Some(writer)) => writer.finish()?,
        ("png", None) => crate::images::write_png_grid(&args.out, &grid, args.columns)?,
        _ => crate::images::write_gif(&args.out, &frames, args.columns, 60)?,
    }
    let steps_run = batches * total;
    println!(
        "wrote {count} samples to {}: {batches} × {total} steps in {seconds:.2} s (first step \
         {:.0} ms, then {:.2} ms per step)",
        args.out.display(),
        first * 1000.0,
        (seconds - first) * 1000.0 / (steps_run.max(2) - 1) as f64
    );
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<()> {
    let checkpoint = train::checkpoint::load_latest(&args.run, &Device::flex())?;
    let config: TrainingConfig =
        serde_json::from_str(&std::fs::read_to_string(args.run.join("config.json"))?)?;
    let source = format!("trained by emerge for {} steps", checkpoint.state.step);
    publish(
        &checkpoint.ema,
        &config.model,
        &args.out,
        &args.name,
        Recommended {
            source,
            guidance: args.guidance.guidance(),
        },
    )?;
    if let Some(mnist_dir) = args.digits {
        let data_dir = args.out.parent().unwrap_or(Path::new(".")).join("data");
        write_bundled_digits(&mnist_dir, &data_dir, 2)?;
        println!("wrote the bundled digits to {}", data_dir.display());
    }
    Ok(())
}

fn run_import(args: ImportArgs) -> Result<()> {
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
    let recommended = Recommended {
        source,
        guidance: Guidance::everywhere(DEFAULT_GUIDANCE),
    };
    publish(
        &imported.unet,
        &imported.config,
        &args.out,
        &name,
        recommended,
    )?;
    println!(
        "imported {} ({} parameters)",
        imported.weights_file.display(),
        burn::module::Module::num_params(&imported.unet)
    );
    Ok(())
}

/// Writes `<out>/<name>.bpk` (f16) and its manifest entry: what the page loads.
fn publish(
    unet: &UNet,
    config: &ModelConfig,
    out: &Path,
    name: &str,
    recommended: Recommended,
) -> Result<()> {
    let scale = recommended.guidance.scale;
    anyhow::ensure!(
        scale.is_finite() && (0.0..=10.0).contains(&scale),
        "--guidance must be between 0 and 10 (the page's range), got {scale}"
    );
    if let Some((_, high)) = recommended.guidance.interval {
        anyhow::ensure!(
            high < config.schedule.num_train_timesteps,
            "--guidance-interval ends at {high}, past the model's last timestep {}",
            config.schedule.num_train_timesteps - 1
        );
    }
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "model name '{name}' must use only letters, digits, '-', '_' and '.'"
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create '{}'", out.display()))?;
    let file = format!("{name}.{}", weights::EXTENSION);
    let bytes = weights::to_bytes(unet, config, weights::Precision::Half)?;
    weights::write_atomically(&out.join(&file), &bytes)?;
    let parameters = burn::module::Module::num_params(unet);
    let entry = crate::manifest::ManifestEntry::new(
        name,
        &file,
        bytes.len(),
        config,
        parameters,
        recommended,
    );
    crate::manifest::upsert(&out.join("manifest.json"), entry)?;
    println!(
        "wrote {file} ({} bytes) and its manifest entry to {}",
        bytes.len(),
        out.display()
    );
    Ok(())
}

/// `per_class` test images of each digit, in IDX format, for the forward-process view.
pub fn write_bundled_digits(mnist_dir: &Path, out: &Path, per_class: usize) -> Result<()> {
    let test = crate::mnist::load(mnist_dir, crate::mnist::Split::Test)?;
    let mut chosen = Vec::new();
    for digit in 0..10u8 {
        chosen.extend(
            (0..test.len())
                .filter(|&i| test.labels[i] == digit)
                .take(per_class),
        );
    }
    let images: Vec<u8> = chosen
        .iter()
        .flat_map(|&i| test.image(i).iter().copied())
        .collect();
    let labels: Vec<u8> = chosen.iter().map(|&i| test.labels[i]).collect();
    std::fs::create_dir_all(out)?;
    weights::write_atomically(
        &out.join("digits-images.idx"),
        &crate::mnist::encode_idx_images(&images, chosen.len(), test.rows, test.cols),
    )?;
    weights::write_atomically(
        &out.join("digits-labels.idx"),
        &crate::mnist::encode_idx_labels(&labels),
    )?;
    Ok(())
}

fn run_train_classifier(args: TrainClassifierArgs) -> Result<()> {
    let (model, accuracy) = crate::classifier::train(&args.data, args.epochs, args.seed)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    model.save(&args.out)?;
    println!(
        "classifier test accuracy {:.2} % → {}",
        100.0 * accuracy,
        args.out.display()
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    anyhow::ensure!(
        args.count >= 2 && args.count <= 60_000,
        "--count must be 2 to 60000"
    );
    let sampler = match args.sampler {
        SamplerChoice::Ddpm => SamplerKind::Ddpm,
        SamplerChoice::Ddim => SamplerKind::Ddim { eta: args.eta },
    };
    let settings = crate::eval::EvalSettings {
        count: args.count,
        sampler,
        steps: args.steps,
        guidance: args.guidance.guidance,
        guidance_interval: args.guidance.guidance_interval,
        seed: args.seed,
        batch: args.batch,
    };
    let report = crate::eval::evaluate(
        args.model.as_deref(),
        &args.data,
        &args.classifier,
        settings,
        &crate::devices::open(args.device.choice)?.device,
    )?;
    print!("{}", crate::eval::table(&report));
    if let Some(path) = args.json {
        weights::write_atomically(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}

fn run_check_devices(args: CheckArgs) -> Result<()> {
    anyhow::ensure!(args.steps >= 1, "--steps must be at least 1");
    anyhow::ensure!(args.images >= 1, "--images must be at least 1");
    anyhow::ensure!(
        !args.batches.is_empty() && !args.batches.contains(&0),
        "--batches must list sizes of at least 1"
    );
    let (config, unet) = crate::model_file::load(args.model.as_deref(), &Device::flex())?;
    let (devices, missing) = crate::devices::available();
    for reason in &missing {
        println!("not checked: {reason}");
    }
    let others = &devices[1..];
    if others.is_empty() {
        anyhow::ensure!(!args.require_gpu, "--require-gpu: {}", missing.join("; "));
        println!("no device besides Flex (the reference) to check");
        return Ok(());
    }
    let plan = crate::check::CheckPlan {
        presets: args.presets,
        batches: args.batches,
        steps: args.steps,
        images: args.images,
        guidance: args.guidance,
        seed: args.seed,
    };
    println!("{}", crate::check::TABLE_HEADER);
    let rows = crate::check::run(&plan, (&config, &unet), others, |row| {
        println!("{}", crate::check::table_line(row));
    })?;
    let failed: Vec<_> = rows.iter().filter(|r| !r.measure.passes()).collect();
    match failed.first() {
        None => {
            println!("all {} rows within tolerance", rows.len());
            Ok(())
        }
        Some(first) => bail!(
            "{} of {} rows over tolerance; the first: {} · {}",
            failed.len(),
            rows.len(),
            first.device,
            first.what
        ),
    }
}

fn run_bench(args: BenchArgs) -> Result<()> {
    let (devices, missing) = crate::devices::available();
    for reason in &missing {
        println!("not timed: {reason}");
    }
    println!(
        "| preset | parameters | batch | device | ms per step (median of {}) | ms per image |",
        args.runs
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for preset in &args.presets {
        let config = ModelConfig::preset(preset)?;
        for opened in &devices {
            let unet = UNet::new(&config.unet, &opened.device)?;
            for &batch in &args.batches {
                let ms = time_forward(&unet, &config, batch, args.runs, &opened.device)?;
                println!(
                    "| {preset} | {} | {batch} | {} | {ms:.1} | {:.2} |",
                    burn::module::Module::num_params(&unet),
                    opened.label,
                    ms / batch as f64
                );
            }
        }
    }
    Ok(())
}

/// Median wall time of one forward pass (one denoising step without guidance), in ms.
pub fn time_forward(
    unet: &UNet,
    config: &ModelConfig,
    batch: usize,
    runs: usize,
    device: &Device,
) -> Result<f64> {
    let size = config.unet.sample_size;
    let x = Tensor::<4>::zeros([batch, config.unet.in_channels, size, size], device);
    let t = Tensor::<1>::full([batch], 500.0, device);
    let labels = config.unet.null_class().map(|null| {
        Tensor::<1, Int>::from_data(TensorData::new(vec![null as i64; batch], [batch]), device)
    });
    let mut times = Vec::new();
    for run in 0..=runs.max(1) {
        let started = Instant::now();
        let out = unet.forward(x.clone(), t.clone(), labels.clone());
        let _ = out.into_data(); // wait for the result
        if run > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn export_writes_the_model_and_the_guidance_the_page_opens_with() {
        let _rng = crate::train::tests::device_rng_lock();
        let root = std::env::temp_dir().join(format!("emerge-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        crate::train::tests::write_tiny_mnist(&root.join("data"), 10);
        let config = crate::train::tests::tiny_config();
        let run = root.join("run");
        let options = TrainOptions {
            data_dir: root.join("data"),
            run_dir: run.clone(),
            resume: false,
            stop_at: None,
            progress: false,
            device: Device::flex(),
            timeline: Vec::new(),
        };
        train::train(&config, &options).unwrap();
        let export = |guidance: f64, guidance_interval: Option<(usize, usize)>| {
            run_export(ExportArgs {
                run: run.clone(),
                out: root.join("models"),
                name: "tiny".into(),
                digits: None,
                guidance: GuidanceArgs {
                    guidance,
                    guidance_interval,
                },
            })
        };

        export(1.5, Some((0, 6))).unwrap();
        let manifest: crate::manifest::Manifest = serde_json::from_str(
            &std::fs::read_to_string(root.join("models/manifest.json")).unwrap(),
        )
        .unwrap();
        let entry = &manifest.models[0];
        assert_eq!(entry.default_guidance, 1.5);
        assert_eq!(entry.default_guidance_interval, Some([0, 6]));
        assert_eq!(
            entry.source,
            format!("trained by emerge for {} steps", config.steps)
        );
        let bytes = std::fs::read(root.join("models/tiny.bpk")).unwrap();
        assert_eq!(entry.bytes, bytes.len());
        let (_, unet) = weights::from_bytes(bytes, &Device::flex()).unwrap();
        assert_eq!(entry.parameters, burn::module::Module::num_params(&unet));

        let err = export(11.0, None).unwrap_err().to_string();
        assert!(err.contains("--guidance must be between 0 and 10"), "{err}");
        let last = config.model.schedule.num_train_timesteps - 1;
        let err = export(1.5, Some((0, last + 1))).unwrap_err().to_string();
        assert!(
            err.contains(&format!("past the model's last timestep {last}")),
            "{err}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
