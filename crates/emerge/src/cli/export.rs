//! `emerge export`: a training run's EMA weights, as the page loads them.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;

use emerge_core::SamplingRequest;
use emerge_core::weights::{self, Precision};

use super::args::ExportArgs;
use crate::manifest::{Provenance, TimelineCheckpoint};
use crate::publish::publish;
use crate::train::{self, TrainingConfig};

pub fn run(args: ExportArgs) -> Result<()> {
    let checkpoint = train::checkpoint::load_latest(&args.run, &Device::flex())?;
    let config: TrainingConfig =
        serde_json::from_str(&std::fs::read_to_string(args.run.join("config.json"))?)?;
    let step = checkpoint.state.step;
    let mut model = config.model;
    let fallback = SamplingRequest::fallback(&model);
    let timesteps = model.schedule.num_train_timesteps;
    model.recommended = Some(args.request.over(&fallback, timesteps)?);
    let timeline_precision = args.timeline_precision.unwrap_or(args.precision);
    let checkpoints = publish_timeline(&args.run, &args.out, &args.name, step, timeline_precision)?;
    publish(
        &checkpoint.ema,
        &model,
        &args.out,
        &args.name,
        Provenance {
            source: format!("trained by emerge for {step} steps"),
            training_steps: Some(step),
            checkpoints,
        },
        args.precision,
    )?;
    if let Some(mnist_dir) = args.digits {
        let data_dir = args.out.parent().unwrap_or(Path::new(".")).join("data");
        crate::mnist::write_bundled_digits(&mnist_dir, &data_dir, 2)?;
        println!("wrote the bundled digits to {}", data_dir.display());
    }
    Ok(())
}

/// Writes the run's timeline exports from before `step` (`<run>/timeline/step-N.bpk`, written by
/// `train --timeline`) at `precision` to `<out>/<name>-timeline/`, replacing what was there;
/// returns them in step order for the manifest.
fn publish_timeline(
    run: &Path,
    out: &Path,
    name: &str,
    step: usize,
    precision: Precision,
) -> Result<Vec<TimelineCheckpoint>> {
    let folder = format!("{name}-timeline");
    let target = out.join(&folder);
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot replace '{}'", target.display()))?;
    }
    let Ok(entries) = std::fs::read_dir(run.join("timeline")) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(usize, std::path::PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let stem = path
                .file_stem()?
                .to_str()?
                .strip_prefix("step-")?
                .to_owned();
            Some((stem.parse().ok()?, path))
        })
        .filter(|(s, _)| *s < step)
        .collect();
    found.sort();
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create '{}'", target.display()))?;
    found
        .into_iter()
        .map(|(s, path)| {
            let file = format!("step-{s:07}.{}", emerge_core::weights::EXTENSION);
            let stored = std::fs::read(&path)
                .with_context(|| format!("cannot read '{}'", path.display()))?;
            let bytes = weights::repack(stored, precision)
                .with_context(|| format!("cannot repack '{}'", path.display()))?;
            emerge_core::atomic_file::write_atomically(&target.join(&file), &bytes)?;
            Ok(TimelineCheckpoint {
                step: s,
                file: format!("{folder}/{file}"),
                bytes: bytes.len(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use emerge_core::weights;

    use super::*;
    use crate::cli::args::{GuidanceInterval, RequestArgs, SamplerChoice};
    use crate::train::TrainOptions;

    #[test]
    fn export_writes_the_model_and_the_request_the_page_opens_with() {
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
            timeline: vec![0, config.steps],
        };
        train::train(&config, &options).unwrap();
        let export = |guidance: f64, guidance_interval: Option<(usize, usize)>| {
            super::run(ExportArgs {
                run: run.clone(),
                out: root.join("models"),
                name: "tiny".into(),
                digits: None,
                request: RequestArgs {
                    sampler: Some(SamplerChoice::DpmSolver2M),
                    steps: Some(8),
                    guidance: Some(guidance),
                    guidance_interval: Some(GuidanceInterval(guidance_interval)),
                    ..Default::default()
                },
                precision: Precision::Q4,
                timeline_precision: None,
            })
        };

        export(1.5, Some((0, 6))).unwrap();
        let manifest: crate::manifest::Manifest = serde_json::from_str(
            &std::fs::read_to_string(root.join("models/manifest.json")).unwrap(),
        )
        .unwrap();
        let entry = &manifest.models[0];
        let recommended = &entry.recommended;
        assert_eq!(recommended.sampler, emerge_core::SamplerKind::DpmSolver2M);
        assert_eq!(recommended.steps, 8);
        assert_eq!(recommended.guidance.scale, 1.5);
        assert_eq!(recommended.guidance.interval, Some((0, 6)));
        assert_eq!(
            entry.source,
            format!("trained by emerge for {} steps", config.steps)
        );
        // The timeline before the exported step ships with it; the last step is the model.
        assert_eq!(entry.training_steps, Some(config.steps));
        // at the precision asked for, the model and its timeline alike
        assert_eq!(entry.precision, Precision::Q4);
        let timeline = std::fs::read(root.join("models/tiny-timeline/step-0000000.bpk")).unwrap();
        let trained = std::fs::read(run.join("timeline/step-0000000.bpk")).unwrap();
        assert!(
            timeline.len() * 5 < trained.len() * 3,
            "{} bytes",
            timeline.len()
        );
        weights::from_bytes(timeline.clone(), &Device::flex()).unwrap();
        assert_eq!(
            entry.checkpoints,
            vec![crate::manifest::TimelineCheckpoint {
                step: 0,
                file: "tiny-timeline/step-0000000.bpk".into(),
                bytes: timeline.len(),
            }]
        );
        let bytes = std::fs::read(root.join("models/tiny.bpk")).unwrap();
        assert_eq!(entry.bytes, bytes.len());
        let (written, unet) = weights::from_bytes(bytes, &Device::flex()).unwrap();
        assert_eq!(entry.parameters, burn::module::Module::num_params(&unet));
        // the file carries the same recommendation as its manifest entry
        assert_eq!(written.recommended.as_ref(), Some(recommended));

        let err = format!("{:#}", export(11.0, None).unwrap_err());
        assert!(err.contains("guidance must be 0 to 10"), "{err}");
        let last = config.model.schedule.num_train_timesteps - 1;
        let err = format!("{:#}", export(1.5, Some((0, last + 1))).unwrap_err());
        assert!(
            err.contains(&format!("past the model's last timestep {last}")),
            "{err}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
