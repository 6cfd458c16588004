//! `emerge train`: a training run on MNIST, from the command line's settings.

use anyhow::Result;
use emerge_core::ModelConfig;

use super::args::{ScheduleChoice, TrainArgs};
use crate::train::{self, TrainOptions, TrainingConfig};

/// The run `args` describe (their defaults: the shipped model's recipe).
fn training_config(args: &TrainArgs) -> Result<TrainingConfig> {
    let mut model = ModelConfig::preset(&args.preset)?;
    if let Some(channels) = &args.channels {
        model.unet.block_out_channels = channels.clone();
    }
    if let Some(layers) = args.layers_per_block {
        model.unet.layers_per_block = layers;
    }
    // The presets come with the paper's linear β.
    if let ScheduleChoice::Cosine = args.schedule {
        model.schedule.beta_schedule = emerge_core::BetaSchedule::COSINE;
    }
    let label_dropout = if model.unet.is_conditional() {
        args.label_dropout
    } else {
        0.0
    };
    Ok(TrainingConfig {
        model,
        batch_size: args.batch_size,
        steps: args.steps,
        learning_rate: args.lr,
        min_learning_rate: args.min_lr.unwrap_or(args.lr / 100.0),
        warmup_steps: args.warmup_steps,
        weight_decay: args.weight_decay,
        grad_clip_norm: args.clip_norm,
        ema_decay: args.ema_decay,
        label_dropout,
        min_snr_gamma: (args.min_snr_gamma > 0.0).then_some(args.min_snr_gamma),
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        sample_every: args.sample_every,
    })
}

pub fn run(args: TrainArgs) -> Result<()> {
    let config = training_config(&args)?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn parsed(extra: &[&str]) -> TrainingConfig {
        let line = [&["emerge", "train", "--data", "d", "--out", "o"], extra].concat();
        let Command::Train(args) = Cli::parse_from(line).command else {
            unreachable!("parsed as train")
        };
        training_config(&args).unwrap()
    }

    #[test]
    fn the_defaults_are_the_shipped_models_recipe() {
        let config = parsed(&[]);
        assert_eq!(config.model.unet.block_out_channels, vec![32, 64, 128]);
        assert_eq!(
            config.model.schedule.beta_schedule,
            emerge_core::BetaSchedule::COSINE
        );
        assert_eq!((config.steps, config.batch_size), (6000, 64));
        assert_eq!(
            (config.learning_rate, config.min_learning_rate),
            (2e-3, 2e-5)
        );
        assert_eq!(
            (config.label_dropout, config.min_snr_gamma),
            (0.2, Some(5.0))
        );
        assert_eq!((config.weight_decay, config.grad_clip_norm), (0.0, 1.0));
        // the paper's objective and schedule are one option each away
        let paper = parsed(&["--min-snr-gamma", "0", "--schedule", "linear"]);
        assert_eq!(paper.min_snr_gamma, None);
        assert_eq!(
            paper.model.schedule,
            ModelConfig::preset("mnist").unwrap().schedule
        );
    }
}
