//! `emerge recommend`: set the request a published model recommends, in its file and in its
//! manifest entry, the weights untouched.

use anyhow::{Context, Result};
use emerge_core::weights;

use super::args::RecommendArgs;

pub fn run(args: RecommendArgs) -> Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read '{}'", args.model.display()))?;
    let mut config = weights::read_config(&bytes)?;
    let current = config
        .recommended
        .clone()
        .unwrap_or_else(|| emerge_core::SamplingRequest::fallback(&config));
    let timesteps = config.schedule.num_train_timesteps;
    config.recommended = Some(args.request.over(&current, timesteps)?);
    let rewritten = weights::with_config(bytes, &config)?;
    emerge_core::atomic_file::write_atomically(&args.model, &rewritten)?;
    let request = config.recommended.expect("set above");
    println!(
        "{} now recommends {}",
        args.model.display(),
        serde_json::to_string(&request)?
    );
    let listed = crate::manifest::update_entry(&args.model, |entry| {
        entry.recommended = request;
        entry.bytes = rewritten.len();
        Ok(())
    })?;
    if let Some(manifest) = listed {
        println!("and so does its entry in {}", manifest.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use emerge_core::{Conditioning, Denoiser, ModelConfig, NoisePredictor, SamplerKind, UNet};

    use super::*;
    use crate::cli::args::{RequestArgs, SamplerChoice};
    use crate::manifest::Provenance;

    #[test]
    fn a_new_recommendation_keeps_the_weights_and_reaches_the_manifest() {
        let dir = std::env::temp_dir().join(format!("emerge-recommend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = ModelConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
        let provenance = Provenance {
            source: "test".into(),
            training_steps: None,
            checkpoints: Vec::new(),
        };
        crate::publish::publish(
            &unet,
            &config,
            &dir,
            "tiny",
            provenance,
            emerge_core::weights::Precision::F16,
        )
        .unwrap();
        let path = dir.join("tiny.bpk");
        let before = weights::load(&path, &Device::flex()).unwrap().1;
        let recommend = |steps| {
            run(RecommendArgs {
                model: path.clone(),
                request: RequestArgs {
                    sampler: Some(SamplerChoice::SdeDpmSolver2M),
                    steps: Some(steps),
                    ..Default::default()
                },
            })
        };
        recommend(15).unwrap();
        let (written, after) = weights::load(&path, &Device::flex()).unwrap();
        let request = written.recommended.unwrap();
        assert_eq!(
            (request.sampler, request.steps),
            (SamplerKind::SdeDpmSolver2M, 15)
        );
        // the fallback's other fields are kept
        assert_eq!(request.guidance.scale, 1.25);
        let epsilon = |u: &UNet| {
            let x = burn::tensor::Tensor::<4>::ones([1, 1, 8, 8], &Device::flex());
            Denoiser::new(u, &config.unet, Conditioning::Unconditional)
                .unwrap()
                .predict_noise(x, 10)
                .unwrap()
                .into_data()
        };
        assert_eq!(
            epsilon(&before),
            epsilon(&after),
            "the weights must not change"
        );
        let manifest = crate::manifest::read(&dir.join("manifest.json")).unwrap();
        assert_eq!(manifest.models[0].recommended, request);
        assert_eq!(
            manifest.models[0].bytes,
            std::fs::metadata(&path).unwrap().len() as usize
        );
        let err = format!("{:#}", recommend(1000).unwrap_err());
        assert!(err.contains("between 1 and 999"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
