//! Where a command's model comes from: the file the user names, or the shipped MNIST model, which
//! is built into the binary (5.5 MB) so that an installed `emerge` samples from any directory.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use emerge_core::{ModelConfig, UNet, weights};

/// The page's MNIST model (`www/models/mnist.bpk`), as this binary was built with it.
pub const SHIPPED: &[u8] = include_bytes!("../../../www/models/mnist.bpk");

/// Loads `path`, or the shipped model when there is none; errors name the file and the problem.
pub fn load(path: Option<&Path>, device: &Device) -> Result<(ModelConfig, UNet)> {
    match path {
        Some(path) => Ok(weights::load(path, device)?),
        None => weights::from_bytes(SHIPPED.to_vec(), device)
            .context("the model built into this binary cannot be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_model_is_the_shipped_mnist_model() {
        let (config, unet) = load(None, &Device::flex()).unwrap();
        assert_eq!(config.unet, emerge_core::UNetConfig::mnist());
        assert_eq!(burn::module::Module::num_params(&unet), 2_736_353);
    }

    #[test]
    fn the_cli_samples_the_built_in_model_with_the_guidance_its_manifest_recommends() {
        let manifest: crate::manifest::Manifest =
            serde_json::from_str(include_str!("../../../www/models/manifest.json")).unwrap();
        let entry = manifest
            .models
            .iter()
            .find(|m| m.file == "mnist.bpk")
            .unwrap();
        assert_eq!(entry.bytes, SHIPPED.len());
        let recommended = crate::manifest::DEFAULT_GUIDANCE;
        assert_eq!(entry.default_guidance, recommended.scale);
        let interval = recommended.interval.map(|(low, high)| [low, high]);
        assert_eq!(entry.default_guidance_interval, interval);
    }

    #[test]
    fn a_missing_file_is_named_with_the_reason_said_once() {
        let missing = std::env::temp_dir().join("emerge-no-such-model.bpk");
        let message = format!("{:#}", load(Some(&missing), &Device::flex()).unwrap_err());
        assert!(message.contains("emerge-no-such-model.bpk"), "{message}");
        assert_eq!(message.matches("os error 2").count(), 1, "{message}");
    }
}
