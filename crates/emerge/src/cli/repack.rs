//! `emerge repack`: a published model's weights stored at another precision, in place, and the
//! timeline checkpoints its manifest entry lists.

use std::path::Path;

use anyhow::{Context, Result};
use emerge_core::weights::{self, Precision};

use super::args::RepackArgs;

/// Rewrites model file `path` at `precision` (atomically); returns its new size in bytes.
fn repack_file(path: &Path, precision: Precision) -> Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let repacked = weights::repack(bytes, precision)
        .with_context(|| format!("cannot repack '{}'", path.display()))?;
    emerge_core::atomic_file::write_atomically(path, &repacked)?;
    Ok(repacked.len())
}

pub fn run(args: RepackArgs) -> Result<()> {
    let bytes = repack_file(&args.model, args.precision)?;
    println!(
        "{} now stores its weights as {} ({bytes} bytes)",
        args.model.display(),
        args.precision
    );
    let directory = args.model.parent().unwrap_or(Path::new(".")).to_path_buf();
    let timeline_precision = args.timeline_precision.unwrap_or(args.precision);
    let listed = crate::manifest::update_entry(&args.model, |entry| {
        entry.bytes = bytes;
        entry.precision = args.precision;
        for checkpoint in &mut entry.checkpoints {
            checkpoint.bytes = repack_file(&directory.join(&checkpoint.file), timeline_precision)?;
        }
        println!(
            "and its {} timeline checkpoints store theirs as {timeline_precision}",
            entry.checkpoints.len()
        );
        Ok(())
    })?;
    if let Some(manifest) = listed {
        println!("{} lists the new sizes", manifest.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use emerge_core::{ModelConfig, UNet};

    use super::*;
    use crate::manifest::{Provenance, TimelineCheckpoint};

    #[test]
    fn repacking_rewrites_the_model_its_timeline_and_their_manifest_sizes() {
        let dir = std::env::temp_dir().join(format!("emerge-repack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = ModelConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
        std::fs::create_dir_all(dir.join("tiny-timeline")).unwrap();
        let checkpoint = "tiny-timeline/step-0000000.bpk";
        weights::save(&dir.join(checkpoint), &unet, &config, Precision::F16).unwrap();
        let provenance = Provenance {
            source: "test".into(),
            training_steps: Some(1),
            checkpoints: vec![TimelineCheckpoint {
                step: 0,
                file: checkpoint.into(),
                bytes: std::fs::metadata(dir.join(checkpoint)).unwrap().len() as usize,
            }],
        };
        crate::publish::publish(&unet, &config, &dir, "tiny", provenance, Precision::F16).unwrap();
        let path = dir.join("tiny.bpk");
        let f16_bytes = std::fs::metadata(&path).unwrap().len() as usize;
        run(RepackArgs {
            model: path.clone(),
            precision: Precision::Int8,
            timeline_precision: Some(Precision::Q4),
        })
        .unwrap();
        let manifest = crate::manifest::read(&dir.join("manifest.json")).unwrap();
        let entry = &manifest.models[0];
        assert_eq!(entry.precision, Precision::Int8);
        let size = |file: &str| std::fs::metadata(dir.join(file)).unwrap().len() as usize;
        assert_eq!(entry.bytes, size("tiny.bpk"));
        assert!(entry.bytes < f16_bytes);
        assert_eq!(entry.checkpoints[0].bytes, size(checkpoint));
        // the same network's checkpoint, at 4 bits
        assert!(entry.checkpoints[0].bytes < entry.bytes);
        let (loaded, _) = weights::load(&path, &Device::flex()).unwrap();
        assert_eq!(loaded, config);

        let err = format!(
            "{:#}",
            run(RepackArgs {
                model: dir.join("missing.bpk"),
                precision: Precision::Q4,
                timeline_precision: None,
            })
            .unwrap_err()
        );
        assert!(err.contains("missing.bpk"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
