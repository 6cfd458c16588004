//! `emerge sample`: images, a trajectory GIF or an IDX file, batch by batch.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use emerge_core::{Classes, StartImage};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::SampleArgs;
use crate::sample::{self, Images, Stepping};

pub fn run(args: SampleArgs) -> Result<()> {
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
    let model = crate::model_file::load(args.model.as_deref(), &device)?;
    let config = &model.config;
    let (classes, count) = if args.digit_rows {
        let classes = config
            .unet
            .null_class()
            .context("--digit-rows needs a class-conditional model")?;
        let labels: Vec<usize> = (0..classes * args.columns)
            .map(|i| i / args.columns)
            .collect();
        let count = labels.len();
        (Classes::Labels(labels), count)
    } else {
        let classes = args.class.map_or(Classes::Unconditional, Classes::Class);
        (classes, args.count)
    };
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let mut request = args.request.request(&model, count, classes, args.seed)?;
    if let (Some(path), Some(timestep)) = (&args.from, args.t) {
        let size = config.unet.sample_size;
        model.schedule.check_timestep(timestep)?;
        let pixels = crate::images::read_png(path, config.unet.in_channels, size)?;
        request.start = Some(StartImage { pixels, timestep });
        request.validate(config)?;
    }
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(
        extension != "gif" || count <= args.batch,
        "a GIF shows the trajectory of one batch: --count ({count}) must be at most --batch ({})",
        args.batch
    );
    let (size, channels) = (config.unet.sample_size, config.unet.in_channels);
    let total = request.sampler(&model.schedule)?.timesteps().len();
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
    let stepping = match args.no_record {
        true => Stepping::Plain,
        false => Stepping::Recorded,
    };
    let mut frames = Vec::new();
    let started = Instant::now();
    let mut first_step = None;
    for part in sample::parts(count, args.batch) {
        let mut step = 0;
        let images = sample::generate(&model, &request, part, stepping, |output| {
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
