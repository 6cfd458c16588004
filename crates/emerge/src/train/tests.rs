use std::path::{Path, PathBuf};

use burn::tensor::Device;
use emerge_core::ModelConfig;

use super::*;
use crate::mnist::encode_idx_images;

/// A small MNIST-format data set of 8×8 "digits" (stripes whose position encodes the label).
pub fn write_tiny_mnist(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    let images: Vec<u8> = labels
        .iter()
        .flat_map(|&l| {
            (0..64).map(move |p| {
                if (p / 8) % 8 == l as usize % 8 {
                    255
                } else {
                    0
                }
            })
        })
        .collect();
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        encode_idx_images(&images, count, 8, 8),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        crate::mnist::encode_idx_labels(&labels),
    )
    .unwrap();
}

/// burn's device generator (weight init, dropout) is global to the process: tests that seed it
/// and expect exact numbers must not interleave with others that draw from it.
pub(crate) fn device_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn tiny_config() -> TrainingConfig {
    let mut model = ModelConfig::preset("tiny").unwrap();
    model.unet.dropout = 0.1; // exercise the device generator's reseeding on resume
    TrainingConfig {
        model,
        batch_size: 4,
        steps: 6,
        learning_rate: 1e-3,
        min_learning_rate: 1e-5,
        warmup_steps: 2,
        weight_decay: 0.0,
        grad_clip_norm: 1.0,
        ema_decay: 0.9,
        label_dropout: 0.2,
        min_snr_gamma: None,
        seed: 3,
        checkpoint_every: 2,
        sample_every: 0,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emerge-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(data: &Path, run: &Path, resume: bool, stop_at: Option<usize>) -> TrainOptions {
    TrainOptions {
        data_dir: data.into(),
        run_dir: run.into(),
        resume,
        stop_at,
        progress: false,
        device: Device::flex(),
        timeline: Vec::new(),
    }
}

fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("log.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect()
}

/// A network's parameters as (name, bytes), in order.
type NamedParameters = Vec<(String, Vec<u8>)>;

/// Every parameter's name and bytes of the model and its EMA (ignoring parameter ids, which
/// differ between runs).
fn parameters_of(run: &Path) -> (NamedParameters, NamedParameters) {
    use burn::store::ModuleSnapshot;
    let ckpt = checkpoint::load_latest(run, &Device::flex()).unwrap();
    let values = |unet: &emerge_core::UNet| {
        unet.collect(None, None, false)
            .into_iter()
            .map(|t| (t.name.clone(), t.to_bytes().unwrap().to_vec()))
            .collect()
    };
    (values(&ckpt.model), values(&ckpt.ema))
}

#[test]
fn resumed_run_equals_an_uninterrupted_run() {
    let _rng = device_rng_lock();
    let root = scratch("resume");
    let data = root.join("data");
    write_tiny_mnist(&data, 10);
    let config = tiny_config();

    let straight = root.join("straight");
    let summary = train(&config, &options(&data, &straight, false, None)).unwrap();
    assert_eq!(summary.step, 6);

    let interrupted = root.join("interrupted");
    assert_eq!(
        train(&config, &options(&data, &interrupted, false, Some(3)))
            .unwrap()
            .step,
        3
    );
    // A run directory is never silently overwritten.
    let err = train(&config, &options(&data, &interrupted, false, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    // Nor resumed with different settings.
    let mut other = config.clone();
    other.learning_rate = 5e-4;
    let err = train(&other, &options(&data, &interrupted, true, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different settings"), "{err}");
    assert_eq!(
        train(&config, &options(&data, &interrupted, true, None))
            .unwrap()
            .step,
        6
    );

    assert_eq!(losses(&straight), losses(&interrupted), "loss per step");
    assert_eq!(losses(&straight).len(), 6);
    let (model_a, ema_a) = parameters_of(&straight);
    let (model_b, ema_b) = parameters_of(&interrupted);
    assert!(
        model_a == model_b,
        "parameters after resume differ from the uninterrupted run"
    );
    assert!(
        ema_a == ema_b,
        "EMA after resume differs from the uninterrupted run"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn an_interrupted_checkpoint_save_leaves_the_previous_one_loadable() {
    let _rng = device_rng_lock();
    let root = scratch("atomic");
    let data = root.join("data");
    write_tiny_mnist(&data, 10);
    let run = root.join("run");
    train(&tiny_config(), &options(&data, &run, false, Some(2))).unwrap();
    // Simulate a kill in the middle of writing the next checkpoint: a half-written .tmp
    // directory with a truncated model file.
    let tmp = run.join("checkpoints/step-0000004.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.bpk"), b"half a file").unwrap();
    let ckpt = checkpoint::load_latest(&run, &Device::flex()).unwrap();
    assert_eq!(ckpt.state.step, 2);
    // Resuming finishes the run and cleans the leftover up.
    assert_eq!(
        train(&tiny_config(), &options(&data, &run, true, None))
            .unwrap()
            .step,
        6
    );
    assert!(!tmp.exists());
    std::fs::remove_dir_all(root).unwrap();
}

/// A short run that can learn the tiny data set: 60 steps of 16 images at lr 3e-3.
fn learnable_config() -> TrainingConfig {
    let mut config = tiny_config();
    config.steps = 60;
    config.batch_size = 16;
    config.checkpoint_every = 60;
    config.learning_rate = 3e-3;
    config
}

/// The loss column of a run's log.
fn loss_values(run: &Path) -> Vec<f64> {
    losses(run)
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// The mean loss of the last 10 of 60 steps is well below that of the first 10.
fn assert_learned(values: &[f64]) {
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&values[..10]), mean(&values[50..]));
    assert!(last < 0.6 * first, "loss went from {first:.3} to {last:.3}");
}

#[test]
fn training_reduces_the_loss_on_learnable_data() {
    let _rng = device_rng_lock();
    let root = scratch("learn");
    let data = root.join("data");
    write_tiny_mnist(&data, 40);
    let run = root.join("run");
    train(&learnable_config(), &options(&data, &run, false, None)).unwrap();
    assert_learned(&loss_values(&run));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn min_snr_weighting_changes_the_loss_but_still_learns() {
    let _rng = device_rng_lock();
    let root = scratch("minsnr");
    let data = root.join("data");
    write_tiny_mnist(&data, 40);
    let mut config = learnable_config();
    let plain = root.join("plain");
    train(&config, &options(&data, &plain, false, Some(1))).unwrap();
    config.min_snr_gamma = Some(5.0);
    let weighted = root.join("weighted");
    train(&config, &options(&data, &weighted, false, None)).unwrap();
    let values = loss_values(&weighted);
    // Same weights, batch and noise at step 1: only the weighting differs (it only shrinks terms).
    assert!(values[0] < loss_values(&plain)[0], "{values:?}");
    assert_learned(&values);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn the_timeline_exports_the_ema_weights_at_the_steps_asked() {
    let _rng = device_rng_lock();
    let root = scratch("timeline");
    let data = root.join("data");
    write_tiny_mnist(&data, 40);
    let config = tiny_config();
    let run = root.join("run");
    let mut opts = options(&data, &run, false, Some(4));
    opts.timeline = vec![0, 2, 5];
    train(&config, &opts).unwrap();
    opts.resume = true;
    opts.stop_at = None;
    train(&config, &opts).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(run.join("timeline"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["step-0000000.bpk", "step-0000002.bpk", "step-0000005.bpk"]
    );
    let load = |name: &str| {
        let (model, unet) =
            emerge_core::weights::load(&run.join("timeline").join(name), &Device::flex()).unwrap();
        assert_eq!(model, config.model);
        unet
    };
    let first_layer = |unet: UNet| {
        let weight = unet.conv_in.weight.val().into_data();
        weight.try_to_vec::<f32>().unwrap()
    };
    let step_0 = first_layer(load("step-0000000.bpk"));
    let step_5 = first_layer(load("step-0000005.bpk"));
    assert_ne!(step_0, step_5, "training must move the EMA weights");
    // The step-0 export is the freshly seeded network (f16-rounded, as the timeline stores it).
    let device = Device::flex().autodiff();
    device.seed(config.seed);
    let fresh = first_layer(UNet::new(&config.model.unet, &device).unwrap().valid());
    for (a, b) in fresh.iter().zip(&step_0) {
        assert!((a - b).abs() <= 1e-3 * a.abs().max(1e-2), "{a} vs {b}");
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn missing_data_is_a_clear_error() {
    let root = scratch("nodata");
    let err = format!(
        "{:#}",
        train(
            &tiny_config(),
            &options(&root.join("nowhere"), &root.join("run"), false, None)
        )
        .unwrap_err()
    );
    assert!(err.contains("does not exist"), "{err}");
}
