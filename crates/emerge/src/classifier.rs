//! A small MNIST classifier, trained by this project, whose penultimate layer gives the features
//! of the Fréchet distance (the role Inception plays in FID) and whose predictions check that
//! conditional samples show the digit they were asked for.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use emerge_core::GaussianNoise;

use crate::mnist::{self, Digits, Split};

/// Width of the feature layer.
pub const FEATURES: usize = 128;

#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    hidden: Linear,
    output: Linear,
}

impl Classifier {
    pub fn new(device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 16),
            conv2: conv(16, 32),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: LinearConfig::new(32 * 7 * 7, FEATURES).init(device),
            output: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    /// Penultimate features. Shapes: `[B, 1, 28, 28]` (values in [−1, 1]) → `[B, 128]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x))); // [B, 16, 14, 14]
        let x = self.pool.forward(relu(self.conv2.forward(x))); // [B, 32, 7, 7]
        relu(self.hidden.forward(x.flatten::<2>(1, 3))) // [B, 128]
    }

    /// Class logits. Shapes: `[B, 1, 28, 28]` → `[B, 10]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.output.forward(self.features(x))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut store = BurnpackStore::from_file(path).overwrite(true);
        self.save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", path.display()))
    }

    /// Loads `path`, or the classifier built into this binary when there is none.
    pub fn load(path: Option<&Path>, device: &Device) -> Result<Self> {
        let mut model = Self::new(device);
        let (mut store, name) = match path {
            Some(path) => (
                BurnpackStore::from_file(path),
                format!("'{}'", path.display()),
            ),
            None => (
                BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(BUILT_IN.to_vec()))),
                "built into this binary".to_string(),
            ),
        };
        model.load_from(&mut store).map_err(|e| {
            anyhow::anyhow!(
                "cannot load the classifier {name}: {e} (train one with `emerge train-classifier`)"
            )
        })?;
        Ok(model)
    }
}

/// The project's classifier (`crates/emerge/assets/mnist-classifier.bpk`), built in so that
/// `eval` works from any directory.
pub const BUILT_IN: &[u8] = include_bytes!("../assets/mnist-classifier.bpk");

/// u8 images `[n, 28, 28]` as a model-space batch.
pub fn batch_tensor(pixels: &[u8], count: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = pixels
        .iter()
        .map(|&b| emerge_core::image::from_byte(b))
        .collect();
    Tensor::from_data(TensorData::new(values, [count, 1, 28, 28]), device)
}

/// Runs `f` over `count` images in batches and concatenates the host results.
pub fn map_batches(
    pixels: &[u8],
    count: usize,
    device: &Device,
    mut f: impl FnMut(Tensor<4>) -> Tensor<2>,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for start in (0..count).step_by(256) {
        let n = (count - start).min(256);
        let batch = batch_tensor(&pixels[start * 784..(start + n) * 784], n, device);
        out.extend(
            f(batch)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    Ok(out)
}

/// Predicted classes of u8 images.
pub fn predict(
    model: &Classifier,
    pixels: &[u8],
    count: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let logits = map_batches(pixels, count, device, |x| model.forward(x))?;
    Ok(logits
        .chunks_exact(10)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect())
}

/// Accuracy of `model` on a labelled set.
pub fn accuracy(model: &Classifier, digits: &Digits, device: &Device) -> Result<f64> {
    let predicted = predict(model, &digits.images, digits.len(), device)?;
    let correct = predicted
        .iter()
        .zip(&digits.labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    Ok(correct as f64 / digits.len() as f64)
}

/// Trains the classifier with Adam on the MNIST training set; returns it with its test accuracy.
pub fn train(data_dir: &Path, epochs: usize, seed: u64) -> Result<(Classifier, f64)> {
    let train_set = mnist::load(data_dir, Split::Train)?;
    let test_set = mnist::load(data_dir, Split::Test)?;
    let device = Device::flex().autodiff();
    device.seed(seed);
    let mut model = Classifier::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = GaussianNoise::new(seed);
    let batch = 128;
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next_below(i as u64 + 1) as usize);
        }
        for (k, chunk) in order.chunks(batch).enumerate() {
            let pixels: Vec<u8> = chunk
                .iter()
                .flat_map(|&i| train_set.image(i).iter().copied())
                .collect();
            let labels: Vec<i64> = chunk.iter().map(|&i| train_set.labels[i] as i64).collect();
            let x = batch_tensor(&pixels, chunk.len(), &device);
            let y = Tensor::<2, Int>::from_data(TensorData::new(labels, [chunk.len(), 1]), &device);
            // cross-entropy: −log softmax(logits)[label]
            let loss = log_softmax(model.forward(x), 1).gather(1, y).neg().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = if epoch + 1 == epochs && epochs > 1 {
                3e-4
            } else {
                1e-3
            };
            model = optimizer.step(lr, model, grads);
            if k % 100 == 0 {
                eprintln!(
                    "epoch {} batch {k}/{}: loss {:.4}",
                    epoch + 1,
                    order.len().div_ceil(batch),
                    loss.into_scalar::<f32>()
                );
            }
        }
    }
    let model = model.valid();
    let acc = accuracy(&model, &test_set, &Device::flex()).context("evaluating the classifier")?;
    Ok((model, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_classifier_loads_and_a_missing_file_is_named() {
        let device = Device::flex();
        let classifier = Classifier::load(None, &device).unwrap();
        let logits = classifier.forward(Tensor::<4>::zeros([2, 1, 28, 28], &device));
        assert_eq!(logits.dims(), [2, 10]);
        let missing = std::env::temp_dir().join("emerge-no-such-classifier.bpk");
        let message = format!(
            "{:#}",
            Classifier::load(Some(&missing), &device).err().unwrap()
        );
        assert!(
            message.contains("emerge-no-such-classifier.bpk"),
            "{message}"
        );
        assert!(message.contains("emerge train-classifier"), "{message}");
    }
}
