//! Where a command's model comes from: the file the user names, or the shipped MNIST model, which
//! is built into the binary (5.5 MB) so that an installed `emerge` samples from any directory.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use emerge_core::{Model, weights};

/// The page's MNIST model (`www/models/mnist.bpk`), as this binary was built with it.
pub const SHIPPED: &[u8] = include_bytes!("../../../www/models/mnist.bpk");

/// Loads `path`, or the shipped model when there is none; errors name the file and the problem.
pub fn load(path: Option<&Path>, device: &Device) -> Result<Model> {
    let (config, unet) = match path {
        Some(path) => weights::load(path, device)?,
        None => weights::from_bytes(SHIPPED.to_vec(), device)
            .context("the model built into this binary cannot be read")?,
    };
    Ok(Model::new(config, unet)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_model_is_the_shipped_mnist_model() {
        let model = load(None, &Device::flex()).unwrap();
        assert_eq!(model.config.unet, emerge_core::UNetConfig::mnist());
        assert_eq!(burn::module::Module::num_params(&model.unet), 2_736_353);
    }

    #[test]
    fn the_built_in_model_recommends_what_its_manifest_entry_says() {
        let manifest: crate::manifest::Manifest =
            serde_json::from_str(include_str!("../../../www/models/manifest.json")).unwrap();
        let entry = manifest
            .models
            .iter()
            .find(|m| m.file == "mnist.bpk")
            .unwrap();
        assert_eq!(entry.bytes, SHIPPED.len());
        let model = load(None, &Device::flex()).unwrap();
        assert_eq!(model.recommended(), entry.recommended);
    }

    #[test]
    fn a_missing_file_is_named_with_the_reason_said_once() {
        let missing = std::env::temp_dir().join("emerge-no-such-model.bpk");
        let message = format!("{:#}", load(Some(&missing), &Device::flex()).unwrap_err());
        assert!(message.contains("emerge-no-such-model.bpk"), "{message}");
        assert_eq!(message.matches("os error 2").count(), 1, "{message}");
    }
}
