//! `emerge train`: a training run on MNIST, from the command line's settings.

use anyhow::Result;
use emerge_core::ModelConfig;

use super::args::{ScheduleChoice, TrainArgs};
use crate::train::{self, TrainOptions, TrainingConfig};

pub fn run(args: TrainArgs) -> Result<()> {
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
