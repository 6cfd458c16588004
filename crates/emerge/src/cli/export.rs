//! `emerge export`: a training run's EMA weights, as the page loads them.

use std::path::Path;

use anyhow::Result;
use burn::tensor::Device;

use super::args::ExportArgs;
use crate::manifest::Recommended;
use crate::publish::publish;
use crate::train::{self, TrainingConfig};

pub fn run(args: ExportArgs) -> Result<()> {
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
        crate::mnist::write_bundled_digits(&mnist_dir, &data_dir, 2)?;
        println!("wrote the bundled digits to {}", data_dir.display());
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use emerge_core::weights;

    use super::*;
    use crate::cli::args::GuidanceArgs;
    use crate::train::TrainOptions;

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
            super::run(ExportArgs {
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
