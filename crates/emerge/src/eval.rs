//! The model's quality in numbers, against the MNIST test set: Fréchet distance of classifier
//! features (with the train-vs-test floor beside it), the classifier's accuracy on conditional
//! samples per digit, and the class histogram of unconditional samples.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::Device;
use clap::ValueEnum;
use emerge_core::image::to_byte;
use emerge_core::{Classes, Model, SamplingRequest};
use serde::Serialize;

use crate::classifier::{self, Classifier, FEATURES};
use crate::devices::OpenedDevice;
use crate::frechet::frechet_distance;
use crate::mnist::{self, Split};
use crate::sample::{self, Stepping};

/// Which samples an evaluation draws. The unconditional half does not depend on the guidance,
/// so a sweep of guidance settings measures it once and the conditional half per setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Measured {
    /// Conditional samples (guided) and unconditional ones.
    Both,
    /// Conditional samples only: accuracy, per-digit accuracy, Fréchet distance.
    Conditional,
    /// Unconditional samples only: Fréchet distance and class histogram.
    Unconditional,
}

/// How samples are drawn for the evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSettings {
    /// The conditional samples' request: `images` samples, each class in turn. The unconditional
    /// ones are the same request unconditioned, with the seed `seed ^ 0xABCD`.
    pub request: SamplingRequest,
    pub measured: Measured,
    /// Images sampled at once (memory and speed only: each image has its own noise).
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub settings: EvalSettings,
    pub classifier_test_accuracy: f64,
    /// Fréchet distance between `count` training images and the test set: the floor.
    pub frechet_floor_train_vs_test: f64,
    /// Conditional samples (digit i mod 10, guided) vs the test set.
    pub frechet_conditional: Option<f64>,
    /// Unconditional samples vs the test set.
    pub frechet_unconditional: Option<f64>,
    /// Share of conditional samples the classifier reads as the requested digit, overall and per digit.
    pub conditional_accuracy: Option<f64>,
    pub conditional_accuracy_per_digit: Option<Vec<f64>>,
    /// Unconditional samples per predicted class.
    pub unconditional_histogram: Option<Vec<usize>>,
    /// Where the network and the classifier ran (e.g. "Flex (CPU)", or the GPU's name).
    pub device: String,
    /// Wall time of the whole evaluation: loading, sampling and scoring.
    pub seconds: f64,
}

/// Draws every image of `request` in batches of `batch` and returns them as u8 images.
fn draw(model: &Model, request: &SamplingRequest, batch: usize) -> Result<Vec<u8>> {
    let mut pixels = Vec::new();
    for part in sample::parts(request.images, batch) {
        let images = sample::generate(model, request, part, Stepping::Recorded, |_| {})?;
        pixels.extend(images.values.iter().map(|&v| to_byte(v)));
        eprintln!("  sampled {}/{}", pixels.len() / 784, request.images);
    }
    Ok(pixels)
}

/// The classifier and the test set's features: what scores a set of samples.
struct Judge<'a> {
    classifier: Classifier,
    test_features: Vec<f32>,
    device: &'a Device,
}

impl Judge<'_> {
    fn features(&self, pixels: &[u8], n: usize) -> Result<Vec<f32>> {
        classifier::map_batches(pixels, n, self.device, |x| self.classifier.features(x))
    }

    /// Fréchet distance of `n` images to the test set.
    fn frechet(&self, pixels: &[u8], n: usize) -> Result<f64> {
        Ok(frechet_distance(
            &self.features(pixels, n)?,
            &self.test_features,
            FEATURES,
        ))
    }
}

/// Conditional samples, digit i mod `classes` for sample i: their Fréchet distance, the share the
/// classifier reads as the digit asked for, and that share per digit.
fn conditional_half(
    model: &Model,
    request: &SamplingRequest,
    classes: usize,
    batch: usize,
    judge: &Judge,
) -> Result<(f64, f64, Vec<f64>)> {
    let n = request.images;
    eprintln!("conditional samples (guidance {}):", request.guidance.scale);
    let request = SamplingRequest {
        classes: Classes::EachInTurn,
        ..request.clone()
    };
    let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let pixels = draw(model, &request, batch)?;
    let predicted = classifier::predict(&judge.classifier, &pixels, n, judge.device)?;
    let mut hits = vec![(0usize, 0usize); classes];
    for (p, l) in predicted.iter().zip(&labels) {
        hits[*l].1 += 1;
        hits[*l].0 += usize::from(p == l);
    }
    let per_digit = hits
        .iter()
        .map(|(h, t)| *h as f64 / (*t).max(1) as f64)
        .collect();
    let overall = hits.iter().map(|h| h.0).sum::<usize>() as f64 / n as f64;
    Ok((judge.frechet(&pixels, n)?, overall, per_digit))
}

/// Unconditional samples (their own noise, seed ^ 0xABCD): Fréchet distance and the class
/// histogram the classifier reads.
fn unconditional_half(
    model: &Model,
    request: &SamplingRequest,
    batch: usize,
    judge: &Judge,
) -> Result<(f64, Vec<usize>)> {
    eprintln!("unconditional samples:");
    let request = SamplingRequest {
        seed: request.seed ^ 0xABCD,
        classes: Classes::Unconditional,
        ..request.clone()
    };
    let pixels = draw(model, &request, batch)?;
    let mut histogram = vec![0; 10];
    for p in classifier::predict(&judge.classifier, &pixels, request.images, judge.device)? {
        histogram[p] += 1;
    }
    Ok((judge.frechet(&pixels, request.images)?, histogram))
}

/// Evaluates `model` (loaded on `opened`'s device) with the samples `settings` asks for.
pub fn evaluate(
    model: &Model,
    data_dir: &Path,
    classifier_path: Option<&Path>,
    settings: EvalSettings,
    opened: &OpenedDevice,
) -> Result<EvalReport> {
    let start = Instant::now();
    let device = &opened.device;
    let config = &model.config;
    let unconditioned = SamplingRequest {
        classes: Classes::Unconditional,
        ..settings.request.clone()
    };
    unconditioned.validate(config)?;
    anyhow::ensure!(
        config.unet.sample_size == 28 && config.unet.in_channels == 1,
        "eval measures MNIST models (1×28×28); this one makes {}×{}×{}",
        config.unet.in_channels,
        config.unet.sample_size,
        config.unet.sample_size
    );
    anyhow::ensure!(
        settings.measured != Measured::Conditional || config.unet.null_class().is_some(),
        "this model takes no class, so it has no conditional samples to measure"
    );
    let test = mnist::load(data_dir, Split::Test)?;
    let train = mnist::load(data_dir, Split::Train)?;
    let classifier = Classifier::load(classifier_path, device)?;
    let test_features =
        classifier::map_batches(&test.images, test.len(), device, |x| classifier.features(x))?;
    let judge = Judge {
        classifier,
        test_features,
        device,
    };
    let request = &settings.request;
    let n = request.images;
    let floor = judge.frechet(&random_subset(&train.images, 784, n, request.seed), n)?;

    let conditional =
        match config.unet.null_class() {
            Some(classes) if settings.measured != Measured::Unconditional => Some(
                conditional_half(model, request, classes, settings.batch, &judge)?,
            ),
            _ => None,
        };
    let unconditional = match settings.measured {
        Measured::Conditional => None,
        _ => Some(unconditional_half(model, request, settings.batch, &judge)?),
    };
    Ok(EvalReport {
        classifier_test_accuracy: classifier::accuracy(&judge.classifier, &test, device)?,
        frechet_floor_train_vs_test: floor,
        frechet_conditional: conditional.as_ref().map(|c| c.0),
        conditional_accuracy: conditional.as_ref().map(|c| c.1),
        conditional_accuracy_per_digit: conditional.map(|c| c.2),
        frechet_unconditional: unconditional.as_ref().map(|u| u.0),
        unconditional_histogram: unconditional.map(|u| u.1),
        settings,
        device: opened.label.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The report as a Markdown table.
pub fn table(report: &EvalReport) -> String {
    let s = &report.settings.request;
    let mut out = format!(
        "| metric | value |\n| --- | --- |\n| samples per measurement | {} ({}, {} steps, seed {}) |\n| classifier accuracy on the MNIST test set | {:.2} % |\n| Fréchet distance, train vs test (floor) | {:.3} |\n",
        s.images,
        s.sampler,
        s.steps,
        s.seed,
        100.0 * report.classifier_test_accuracy,
        report.frechet_floor_train_vs_test
    );
    let guidance = match s.guidance.interval {
        Some((low, high)) => format!("w = {} for {low} ≤ t ≤ {high}", s.guidance.scale),
        None => format!("w = {}", s.guidance.scale),
    };
    if let (Some(fd), Some(acc), Some(per)) = (
        report.frechet_conditional,
        report.conditional_accuracy,
        &report.conditional_accuracy_per_digit,
    ) {
        out += &format!(
            "| Fréchet distance, conditional samples ({guidance}) vs test | {fd:.3} ({:.2}× the floor) |\n| classifier accuracy on conditional samples ({guidance}) | {:.2} % |\n| per digit 0–9 | {} |\n",
            fd / report.frechet_floor_train_vs_test,
            100.0 * acc,
            per.iter()
                .map(|a| format!("{:.0}", 100.0 * a))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    if let (Some(fd), Some(histogram)) = (
        report.frechet_unconditional,
        &report.unconditional_histogram,
    ) {
        out += &format!(
            "| Fréchet distance, unconditional samples vs test | {fd:.3} ({:.2}× the floor) |\n| unconditional samples per class 0–9 | {} |\n",
            fd / report.frechet_floor_train_vs_test,
            histogram
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    out += &format!(
        "| computed on | {} in {:.0} s |\n",
        report.device, report.seconds
    );
    out
}

/// `n` distinct images of `size` bytes each, drawn uniformly (a partial Fisher–Yates shuffle
/// seeded by `seed`), so the floor compares the test set with a fair sample of the training set.
fn random_subset(images: &[u8], size: usize, n: usize, seed: u64) -> Vec<u8> {
    let mut order: Vec<usize> = (0..images.len() / size).collect();
    let mut rng = emerge_core::noise::GaussianNoise::new(seed ^ 0xf100_0000);
    let mut chosen = Vec::with_capacity(n * size);
    for i in 0..n.min(order.len()) {
        let j = i + rng.next_below((order.len() - i) as u64) as usize;
        order.swap(i, j);
        chosen.extend_from_slice(&images[order[i] * size..(order[i] + 1) * size]);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnist::{encode_idx_images, encode_idx_labels};
    use emerge_core::weights::{self, Precision};
    use emerge_core::{ModelConfig, UNet};

    /// A 28×28 MNIST-format data set (train and test) of `count` images: a bar whose row is the
    /// label.
    fn write_bars(dir: &Path, count: usize) {
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        let images: Vec<u8> = labels
            .iter()
            .flat_map(|&l| {
                (0..784).map(move |p| if p / 28 == 4 + 2 * l as usize { 255 } else { 0 })
            })
            .collect();
        for prefix in ["train", "t10k"] {
            let images = encode_idx_images(&images, count, 28, 28);
            std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
            let labels = encode_idx_labels(&labels);
            std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
        }
    }

    /// An untrained two-level network for 28×28 digits, with or without classes, saved in `dir`.
    fn untrained_model(dir: &Path, classes: bool) -> std::path::PathBuf {
        let mut config = ModelConfig::preset("tiny").unwrap();
        config.unet.sample_size = 28;
        config.unet.attention_resolutions = vec![14];
        config.unet.num_class_embeds = classes.then_some(11);
        let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
        let path = dir.join(format!("classes-{classes}.bpk"));
        weights::save(&path, &unet, &config, Precision::F32).unwrap();
        path
    }

    fn settings(measured: Measured) -> EvalSettings {
        EvalSettings {
            request: SamplingRequest {
                sampler: emerge_core::SamplerKind::Ddim { eta: 1.0 },
                steps: 2,
                seed: 0,
                images: 10,
                classes: Classes::EachInTurn,
                guidance: emerge_core::Guidance::everywhere(2.0),
                start: None,
            },
            measured,
            batch: 10,
        }
    }

    #[test]
    fn each_half_of_the_evaluation_can_be_measured_alone() {
        let dir = std::env::temp_dir().join(format!("emerge-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_bars(&dir, 20);
        let model =
            crate::model_file::load(Some(&untrained_model(&dir, true)), &Device::flex()).unwrap();
        let run = |measured| evaluate(&model, &dir, None, settings(measured), &OpenedDevice::cpu());

        let both = run(Measured::Both).unwrap();
        let conditional = run(Measured::Conditional).unwrap();
        assert_eq!(conditional.conditional_accuracy, both.conditional_accuracy);
        assert_eq!(conditional.frechet_conditional, both.frechet_conditional);
        assert_eq!(
            conditional
                .conditional_accuracy_per_digit
                .as_ref()
                .unwrap()
                .len(),
            10
        );
        assert_eq!(conditional.frechet_unconditional, None);
        assert!(!table(&conditional).contains("unconditional"));

        let unconditional = run(Measured::Unconditional).unwrap();
        assert_eq!(
            unconditional.frechet_unconditional,
            both.frechet_unconditional
        );
        assert_eq!(unconditional.device, "Flex (CPU)");
        assert!(unconditional.seconds > 0.0);
        let histogram = unconditional.unconditional_histogram.as_ref().unwrap();
        assert_eq!(histogram.iter().sum::<usize>(), 10);
        assert_eq!(unconditional.conditional_accuracy, None);
        assert!(!table(&unconditional).contains("conditional samples (w"));
        assert!(table(&both).contains("conditional samples (w = 2)"));
        assert!(table(&both).contains("unconditional samples per class"));
        assert!(table(&both).contains("| computed on | Flex (CPU) in "));

        let classless =
            crate::model_file::load(Some(&untrained_model(&dir, false)), &Device::flex()).unwrap();
        let error = evaluate(
            &classless,
            &dir,
            None,
            settings(Measured::Conditional),
            &OpenedDevice::cpu(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("takes no class"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn random_subset_draws_distinct_whole_images() {
        let images: Vec<u8> = (0..50u8).flat_map(|i| [i, i, i]).collect();
        let subset = random_subset(&images, 3, 20, 7);
        let firsts: Vec<u8> = subset.chunks(3).map(|c| c[0]).collect();
        assert!(subset.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]));
        let mut distinct = firsts.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 20);
        assert_ne!(
            firsts,
            (0..20).collect::<Vec<u8>>(),
            "not simply the first 20"
        );
    }
}
