//! The command line as clap reads it: the subcommands and their arguments.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use emerge_core::weights::Precision;
use emerge_core::{Classes, Guidance, Model, SamplerKind, SamplingRequest};

use crate::devices::DeviceChoice;
use crate::eval::Measured;

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
    /// Write the files the page loads (weights + manifest) from a run's EMA weights.
    Export(ExportArgs),
    /// Store a model file's weights at another precision, in place, and the timeline
    /// checkpoints its manifest entry lists (the entry is updated).
    Repack(RepackArgs),
    /// Set the request a published model recommends (in its file and its manifest entry), the
    /// weights untouched: what the page, `sample` and `eval` use unless told otherwise.
    Recommend(RecommendArgs),
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

/// The sampling request of the commands that sample (sample, eval, check-devices, export,
/// recommend): every option left out is the model's recommended request's (`emerge recommend`).
#[derive(Debug, Args, Default)]
pub struct RequestArgs {
    /// Reverse process [default: the model's recommended one]
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerChoice>,
    /// Denoising steps [default: the model's recommended steps; all T for --sampler ddpm]
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η: 1 adds DDPM-like fresh noise each step, 0 is deterministic [default: the
    /// model's recommended η, else 1]
    #[arg(long)]
    pub eta: Option<f64>,
    /// Classifier-free guidance scale w (0 = unconditional, 1 = conditional, >1 sharper)
    /// [default: the model's recommended w]
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Apply w only for timesteps LOW ≤ t ≤ HIGH (the plain conditional prediction elsewhere;
    /// Kynkäänniemi et al. 2024), e.g. `--guidance-interval 0-300`, or `all` for every step
    /// [default: the model's recommended interval]
    #[arg(long, value_name = "LOW-HIGH|all", value_parser = parse_interval)]
    pub guidance_interval: Option<GuidanceInterval>,
}

impl RequestArgs {
    /// `recommended` with every option given put in its place.
    pub fn over(&self, recommended: &SamplingRequest, timesteps: usize) -> Result<SamplingRequest> {
        let recommended_eta = match recommended.sampler {
            SamplerKind::Ddim { eta } => Some(eta),
            _ => None,
        };
        let sampler = match self.sampler {
            None => recommended.sampler,
            Some(SamplerChoice::Ddpm) => SamplerKind::Ddpm,
            Some(SamplerChoice::Ddim) => SamplerKind::Ddim {
                eta: self.eta.or(recommended_eta).unwrap_or(1.0),
            },
            Some(SamplerChoice::DpmSolver2M) => SamplerKind::DpmSolver2M,
            Some(SamplerChoice::SdeDpmSolver2M) => SamplerKind::SdeDpmSolver2M,
        };
        let sampler = match (sampler, self.eta) {
            (SamplerKind::Ddim { .. }, Some(eta)) => SamplerKind::Ddim { eta },
            (_, Some(_)) => anyhow::bail!("--eta is DDIM's η; this request's sampler is {sampler}"),
            (sampler, None) => sampler,
        };
        let default_steps = match (sampler, recommended.sampler) {
            (SamplerKind::Ddpm, SamplerKind::Ddpm) => recommended.steps,
            (SamplerKind::Ddpm, _) => timesteps,
            _ => recommended.steps,
        };
        Ok(SamplingRequest {
            sampler,
            steps: self.steps.unwrap_or(default_steps),
            guidance: Guidance {
                scale: self.guidance.unwrap_or(recommended.guidance.scale),
                interval: self
                    .guidance_interval
                    .map_or(recommended.guidance.interval, |i| i.0),
            },
            start: None,
            ..recommended.clone()
        })
    }

    /// The request for `model`: its recommendation with the options given, `images` images
    /// conditioned on `classes`, noise from `seed`.
    pub fn request(
        &self,
        model: &Model,
        images: usize,
        classes: Classes,
        seed: u64,
    ) -> Result<SamplingRequest> {
        let request = SamplingRequest {
            images,
            classes,
            seed,
            ..self.over(
                &model.recommended(),
                model.config.schedule.num_train_timesteps,
            )?
        };
        request.validate(&model.config)?;
        Ok(request)
    }
}

/// Where guidance applies: inclusive timesteps `(LOW, HIGH)`, or `None` for every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceInterval(pub Option<(usize, usize)>);

impl std::fmt::Display for GuidanceInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((low, high)) => write!(f, "{low}-{high}"),
            None => f.write_str("all"),
        }
    }
}

/// `LOW-HIGH` (inclusive timesteps, LOW ≤ HIGH, as the page's URL spells it), or `all`: the
/// command line's one conversion to the request's `[low, high]`.
fn parse_interval(text: &str) -> Result<GuidanceInterval, String> {
    if text.trim() == "all" {
        return Ok(GuidanceInterval(None));
    }
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("'{text}' is not LOW-HIGH (for example 0-600) or all"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{s}' in '{text}' is not a timestep (a whole number ≥ 0)"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(format!("'{text}' is empty: LOW must not exceed HIGH"));
    }
    Ok(GuidanceInterval(Some((low, high))))
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
    /// The sampling run checked last (the model's recommended request unless told otherwise).
    #[command(flatten)]
    pub request: RequestArgs,
    /// Images in that run (digits 0, 1, … in turn).
    #[arg(long, default_value_t = 16)]
    pub images: usize,
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
    /// Classifier file (default: the project's, built into this binary).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Samples per measurement (and training images for the floor).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Which samples to draw and measure (the unconditional ones do not depend on --guidance).
    #[arg(long, value_enum, default_value_t = Measured::Both)]
    pub measure: Measured,
    #[command(flatten)]
    pub request: RequestArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images sampled at once: memory and speed, not the images (each has its own noise).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// `emerge train`'s options. Their defaults are the recipe of the shipped model (its card):
/// `emerge train --data DIR --out DIR` trains it again; every setting is written to the run's
/// `config.json`.
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
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Cosine)]
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
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Learning rate at the end of the cosine decay (default: the peak / 100).
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Steps of linear warm-up to the peak learning rate.
    #[arg(long, default_value_t = 200)]
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Gradients are rescaled so that their global L2 norm is at most this.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f32,
    /// The EMA's largest decay (it warms up as (1 + step)/(10 + step)).
    #[arg(long, default_value_t = 0.999)]
    pub ema_decay: f64,
    /// Probability of dropping a label to the null class (classifier-free guidance); 0 for an
    /// unconditional preset.
    #[arg(long, default_value_t = 0.2)]
    pub label_dropout: f64,
    /// Weight each image's loss by min(SNR(t), γ)/SNR(t) (Min-SNR-γ, Hang et al. 2023; 5 is
    /// theirs); 0: the paper's unweighted L_simple.
    #[arg(long, value_name = "GAMMA", default_value_t = 5.0)]
    pub min_snr_gamma: f64,
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
    /// DPM-Solver++(2M) (Lu et al. 2022), deterministic, second order.
    #[value(name = "dpmpp_2m")]
    DpmSolver2M,
    /// SDE-DPM-Solver++(2M): the same solver, adding fresh noise every step.
    #[value(name = "sde_dpmpp_2m")]
    SdeDpmSolver2M,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model file (.bpk) written by `export` or `import` (default: the shipped MNIST model, built
    /// into this binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Image i's noise comes from (seed, i): the same image whatever --count and --batch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub request: RequestArgs,
    /// Digit to draw (conditional models); all samples unconditional when absent.
    #[arg(long, conflicts_with = "digit_rows")]
    pub class: Option<usize>,
    /// One row per class, `--columns` samples each (overrides --count).
    #[arg(long)]
    pub digit_rows: bool,
    /// Images per row in grids and GIFs.
    #[arg(long, default_value_t = 8)]
    pub columns: usize,
    /// Start from this image (a PNG of the model's size, e.g. a sketch) noised to --t instead of
    /// from pure noise (SDEdit, Meng et al. 2021): the page's "clean it" and "denoise from here".
    #[arg(long, requires = "t", conflicts_with = "digit_rows")]
    pub from: Option<PathBuf>,
    /// The timestep --from's image is noised to: low keeps it, high lets the model redraw it.
    #[arg(long, requires = "from")]
    pub t: Option<usize>,
    /// Output: .png (grid), .gif (trajectory of x_t) or .idx (MNIST IDX3, u8, written batch by
    /// batch).
    #[arg(long)]
    pub out: PathBuf,
    /// Images sampled at once: memory grows with it, not with --count (the images do not
    /// depend on it).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// On a GPU, launch every kernel afresh each step instead of replaying the step recorded on
    /// the first one (for timing the difference; the images are the same).
    #[arg(long)]
    pub no_record: bool,
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
    /// The request the model recommends (the page opens with it): the one `eval` measured best.
    #[command(flatten)]
    pub request: RequestArgs,
    /// How the file stores the weights: f16, or matrices and kernels as 8-bit codes with a scale
    /// per output channel (int8) or 4-bit codes with an f16 scale per block of 32 (q4). Loading
    /// decodes them to f32 either way.
    #[arg(long, default_value = "f16", value_parser = precision_parser())]
    pub precision: Precision,
    /// How the timeline checkpoints store theirs (default: as `--precision`): the page fetches
    /// them only when a visitor opens the training timeline.
    #[arg(long, value_parser = precision_parser())]
    pub timeline_precision: Option<Precision>,
}

#[derive(Debug, Args)]
pub struct RepackArgs {
    /// A published model file (its manifest entry, if any, is the one in the same directory).
    pub model: PathBuf,
    /// How the file stores the weights: f16, or matrices and kernels as 8-bit codes with a scale
    /// per output channel (int8) or 4-bit codes with an f16 scale per block of 32 (q4). Loading
    /// decodes them to f32 either way.
    #[arg(long, value_parser = precision_parser())]
    pub precision: Precision,
    /// How the timeline checkpoints store theirs (default: as `--precision`): the page fetches
    /// them only when a visitor opens the training timeline.
    #[arg(long, value_parser = precision_parser())]
    pub timeline_precision: Option<Precision>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A published model file (its manifest entry, if any, is the one in the same directory).
    pub model: PathBuf,
    /// The recommendation: the options given replace the model's current one.
    #[command(flatten)]
    pub request: RequestArgs,
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
    /// How the file stores the weights: f16, or matrices and kernels as 8-bit codes with a scale
    /// per output channel (int8) or 4-bit codes with an f16 scale per block of 32 (q4). Loading
    /// decodes them to f32 either way.
    #[arg(long, default_value = "f16", value_parser = precision_parser())]
    pub precision: Precision,
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

/// Parses `--precision` from [`Precision::NAMES`] (listed in `--help`).
fn precision_parser() -> impl clap::builder::TypedValueParser<Value = Precision> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Precision::NAMES)
        .try_map(|name: String| name.parse::<Precision>())
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
    fn guidance_intervals_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_interval("80-580"),
            Ok(GuidanceInterval(Some((80, 580))))
        );
        assert_eq!(
            parse_interval(" 0 - 0 "),
            Ok(GuidanceInterval(Some((0, 0))))
        );
        assert_eq!(parse_interval("all"), Ok(GuidanceInterval(None)));
        for interval in [GuidanceInterval(Some((0, 300))), GuidanceInterval(None)] {
            assert_eq!(parse_interval(&interval.to_string()), Ok(interval));
        }
        assert!(
            parse_interval("580-80")
                .unwrap_err()
                .contains("LOW must not exceed HIGH")
        );
        assert!(
            parse_interval("80:580")
                .unwrap_err()
                .contains("is not LOW-HIGH")
        );
        assert!(
            parse_interval("a-5")
                .unwrap_err()
                .contains("'a' in 'a-5' is not a timestep")
        );
    }

    #[test]
    fn options_given_replace_the_recommendation_and_the_rest_is_kept() {
        let recommended = SamplingRequest {
            sampler: SamplerKind::DpmSolver2M,
            steps: 20,
            seed: 0,
            images: 16,
            classes: Classes::EachInTurn,
            guidance: Guidance {
                scale: 1.5,
                interval: Some((0, 500)),
            },
            start: None,
        };
        let none = RequestArgs::default();
        assert_eq!(none.over(&recommended, 1000).unwrap(), recommended);
        let ddpm = RequestArgs {
            sampler: Some(SamplerChoice::Ddpm),
            ..Default::default()
        };
        let request = ddpm.over(&recommended, 1000).unwrap();
        assert_eq!((request.sampler, request.steps), (SamplerKind::Ddpm, 1000));
        assert_eq!(request.guidance, recommended.guidance);
        let ddim = RequestArgs {
            sampler: Some(SamplerChoice::Ddim),
            eta: Some(0.0),
            guidance_interval: Some(GuidanceInterval(None)),
            ..Default::default()
        };
        let request = ddim.over(&recommended, 1000).unwrap();
        assert_eq!(request.sampler, SamplerKind::Ddim { eta: 0.0 });
        assert_eq!(request.guidance, Guidance::everywhere(1.5));
        let eta_alone = RequestArgs {
            eta: Some(0.5),
            ..Default::default()
        };
        let err = eta_alone.over(&recommended, 1000).unwrap_err().to_string();
        assert!(err.contains("--eta is DDIM's η"), "{err}");
    }
}
