//! DDPM training (Ho et al. 2020, Algorithm 1) one optimisation step at a time, on any device
//! with burn's autodiff: L_simple (or its Min-SNR-γ weighting) on a batch drawn from a digit set,
//! AdamW with warm-up, cosine decay and gradient clipping, label dropout for classifier-free
//! guidance, and an EMA copy of the weights to sample from. The CLI's `train` runs it over MNIST
//! with checkpoints; nothing here touches files.

pub mod ema;
pub mod recipe;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use recipe::TrainingConfig;

use crate::error::EmergeError;
use crate::lesson::Lesson;
use crate::noise::GaussianNoise;
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;
use crate::weights;

/// Training digits in model space: x ∈ [−1, 1], `[N, 1, H, W]` row-major, and their labels.
pub struct Digits {
    pixels: Vec<f32>,
    labels: Vec<u8>,
    size: usize,
}

impl Digits {
    /// `images`: N greyscale `size`×`size` images as bytes (0 black … 255 white), one after
    /// another; `labels`: their N classes.
    pub fn new(images: &[u8], labels: Vec<u8>, size: usize) -> Result<Self, EmergeError> {
        let pixels = size * size;
        if labels.is_empty() || images.len() != labels.len() * pixels {
            return Err(EmergeError::InvalidArgument(format!(
                "{} bytes are not {} images of {size}×{size}",
                images.len(),
                labels.len()
            )));
        }
        Ok(Self {
            pixels: images.iter().map(|&b| crate::image::from_byte(b)).collect(),
            labels,
            size,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images' side, in pixels.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The permutation of epoch `epoch`: a Fisher–Yates shuffle from a stream seeded by the run
    /// seed and the epoch, so any position of any epoch can be recomputed after a resume.
    fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<u32> {
        let mut rng = GaussianNoise::new(seed ^ 0x5eed_0000_0000_0000 ^ epoch as u64);
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next_below(i as u64 + 1) as usize);
        }
        order
    }
}

/// One training batch from host draws.
#[derive(Debug, Clone)]
pub struct Batch {
    /// x_0 in [−1, 1], `[B, 1, H, W]` row-major.
    pub x0: Vec<f32>,
    /// Class per image (the null class where the label was dropped).
    pub labels: Vec<i64>,
    /// t per image, 0-based.
    pub timesteps: Vec<usize>,
    /// ε, like x_0.
    pub noise: Vec<f32>,
}

/// What the training loop needs beyond weights to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimisation steps completed.
    pub step: usize,
    /// The host random stream (timesteps, noise, label dropout) at this step.
    pub rng: GaussianNoise,
    /// Training wall time so far, in seconds, over all sessions.
    pub elapsed_seconds: f64,
}

/// A network being trained: its weights on an autodiff device, their EMA copy, the optimizer and
/// where the run stands.
pub struct Trainer {
    config: TrainingConfig,
    schedule: NoiseSchedule,
    /// The autodiff device the weights train on.
    device: Device,
    model: UNet,
    ema: UNet,
    optimizer: ModuleOptimizer,
    state: TrainerState,
    /// The data order of the epoch in progress.
    order: Option<(usize, Vec<u32>)>,
}

fn optimizer(config: &TrainingConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip_norm)))
        .init()
}

impl Trainer {
    /// A fresh network from the recipe's seed on `device` (autodiff is added here). The weights
    /// are drawn on the CPU (Flex) and copied over, so that a seed gives the same network on
    /// every device (each device's own random generator draws differently).
    pub fn new(config: TrainingConfig, device: &Device) -> Result<Self, EmergeError> {
        config.validate()?;
        let device = device.clone().autodiff();
        let cpu = Device::flex();
        cpu.seed(config.seed);
        let drawn = UNet::new(&config.model.unet, &cpu)?;
        let model = weights::copied_to(&drawn, &config.model.unet, &device)?;
        let ema = model.valid();
        let state = TrainerState {
            step: 0,
            rng: GaussianNoise::new(config.seed),
            elapsed_seconds: 0.0,
        };
        let optimizer = optimizer(&config);
        Self::assemble(config, device, model, ema, optimizer, state)
    }

    /// A run continued from a checkpoint: `model` on an autodiff device, `ema` without, the
    /// optimizer's saved bytes and the state.
    pub fn resume(
        config: TrainingConfig,
        model: UNet,
        ema: UNet,
        optimizer_bytes: burn::tensor::Bytes,
        state: TrainerState,
    ) -> Result<Self, EmergeError> {
        config.validate()?;
        let device =
            model.devices().into_iter().next().ok_or_else(|| {
                EmergeError::InvalidArgument("the model has no parameters".into())
            })?;
        let optimizer = optimizer(&config)
            .from_bytes(optimizer_bytes)
            .map_err(|e| {
                EmergeError::InvalidArgument(format!("cannot restore the optimizer state: {e:?}"))
            })?;
        Self::assemble(config, device, model, ema, optimizer, state)
    }

    fn assemble(
        config: TrainingConfig,
        device: Device,
        model: UNet,
        ema: UNet,
        optimizer: ModuleOptimizer,
        state: TrainerState,
    ) -> Result<Self, EmergeError> {
        Ok(Self {
            schedule: config.model.noise_schedule()?,
            config,
            device,
            model,
            ema,
            optimizer,
            state,
            order: None,
        })
    }

    /// One optimisation step on a batch from `data`; returns the batch's loss (a one-value
    /// tensor on the device, for the caller to read when it suits it).
    pub fn step(&mut self, data: &Digits) -> Result<Tensor<1>, EmergeError> {
        let unet = &self.config.model.unet;
        if data.size() != unet.sample_size || unet.in_channels != 1 {
            return Err(EmergeError::InvalidArgument(format!(
                "the model takes {0}×{0} images with {1} channel(s), the digits are {2}×{2} grey",
                unet.sample_size,
                unet.in_channels,
                data.size()
            )));
        }
        let batch = self.next_batch(data);
        // Dropout draws from the device's generator: reseed per step so resumed runs match.
        self.device
            .seed(self.config.seed.wrapping_add(self.state.step as u64));
        let loss = training_loss(
            &self.model,
            self.config.min_snr_gamma,
            &self.schedule,
            &batch,
            data.size(),
            &self.device,
        )?;
        let gradients = GradientsParams::from_grads(loss.backward(), &self.model);
        let learning_rate = self.config.learning_rate_at(self.state.step);
        self.model = self
            .optimizer
            .step(learning_rate, self.model.clone(), gradients);
        let decay = ema::decay_at(self.state.step, self.config.ema_decay);
        self.ema = ema::update(self.ema.clone(), &self.model.valid(), decay);
        self.state.step += 1;
        Ok(loss.inner())
    }

    /// Draws one batch: data in epoch order, label dropout, uniform timesteps, Gaussian noise.
    fn next_batch(&mut self, data: &Digits) -> Batch {
        let (config, state) = (&self.config, &mut self.state);
        let pixels = data.size * data.size;
        let null_class = config.model.unet.null_class();
        let mut batch = Batch {
            x0: Vec::with_capacity(config.batch_size * pixels),
            labels: Vec::new(),
            timesteps: Vec::new(),
            noise: Vec::new(),
        };
        for i in 0..config.batch_size {
            let global = state.step * config.batch_size + i;
            let epoch = global / data.len();
            if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.order = Some((epoch, data.epoch_order(config.seed, epoch)));
            }
            let order = &self.order.as_ref().expect("just filled").1;
            let index = order[global % data.len()] as usize;
            batch
                .x0
                .extend_from_slice(&data.pixels[index * pixels..(index + 1) * pixels]);
            let drop_label = state.rng.next_uniform() < config.label_dropout;
            let label = match null_class {
                Some(null) if drop_label => null,
                _ => data.labels[index] as usize,
            };
            batch.labels.push(label as i64);
            // t ~ Uniform({1, …, T})  (Algorithm 1, line 3; 0-based here)
            batch.timesteps.push(
                state
                    .rng
                    .next_below(self.schedule.num_train_timesteps() as u64)
                    as usize,
            );
        }
        // ε ~ N(0, I)  (Algorithm 1, line 4)
        batch.noise = state.rng.normals(config.batch_size * pixels);
        batch
    }

    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// The weights being trained (on the autodiff device).
    pub fn model(&self) -> &UNet {
        &self.model
    }

    /// The EMA weights, the ones to sample from.
    pub fn ema(&self) -> &UNet {
        &self.ema
    }

    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optimizer
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// Sets the run's training wall time so far (over all sessions), which the state carries.
    pub fn set_elapsed_seconds(&mut self, seconds: f64) {
        self.state.elapsed_seconds = seconds;
    }
}

/// Σ_i λ_i ‖ε_i − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² / B  (Algorithm 1, line 5: L_simple with
/// λ = 1, or Min-SNR-γ's λ_t = min(SNR(t), γ)/SNR(t) (Hang et al. 2023, eq. 7 for ε-prediction)).
pub fn training_loss(
    model: &UNet,
    min_snr_gamma: Option<f64>,
    schedule: &NoiseSchedule,
    batch: &Batch,
    size: usize,
    device: &Device,
) -> Result<Tensor<1>, EmergeError> {
    let b = batch.labels.len();
    let shape = [b, 1, size, size];
    let x0 = Tensor::<4>::from_data(TensorData::new(batch.x0.clone(), shape), device);
    let noise = Tensor::<4>::from_data(TensorData::new(batch.noise.clone(), shape), device);
    let labels = model
        .class_embedding
        .is_some()
        .then(|| Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [b]), device));
    let per_image = Lesson::new(model, schedule, x0, noise, &batch.timesteps, labels)?.noise_loss();
    let Some(gamma) = min_snr_gamma else {
        return Ok(per_image.mean());
    };
    let weights: Vec<f32> = batch
        .timesteps
        .iter()
        .map(|&t| min_snr_weight(schedule.snr(t), gamma) as f32)
        .collect();
    let weights = Tensor::<1>::from_data(TensorData::new(weights, [b]), device);
    Ok((per_image * weights).mean())
}

/// λ_t = min(SNR(t), γ)/SNR(t)  (Hang et al. 2023, eq. 7: Min-SNR-γ for ε-prediction).
pub fn min_snr_weight(snr: f64, gamma: f64) -> f64 {
    snr.min(gamma) / snr
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::model::ModelConfig;

    /// The tiny network with a short recipe.
    pub(crate) fn tiny_recipe() -> TrainingConfig {
        TrainingConfig {
            model: ModelConfig::preset("tiny").unwrap(),
            batch_size: 4,
            steps: 300,
            learning_rate: 2e-3,
            min_learning_rate: 2e-3,
            warmup_steps: 1,
            weight_decay: 0.0,
            grad_clip_norm: 1.0,
            ema_decay: 0.9,
            label_dropout: 0.0,
            min_snr_gamma: None,
            seed: 3,
            checkpoint_every: 100,
            sample_every: 0,
        }
    }

    /// Four 8×8 digits: a bar in a different row each.
    fn four_bars() -> Digits {
        let images: Vec<u8> = (0..4)
            .flat_map(|d| (0..64).map(move |p| if p / 8 == 2 * d { 255 } else { 0 }))
            .collect();
        Digits::new(&images, vec![0, 1, 2, 3], 8).unwrap()
    }

    /// The overfitting check every trainer must pass: one small set seen over and over, the loss
    /// falls by 10× within a few hundred steps (its noise and timesteps still change each step,
    /// so the end is averaged over the last 20 steps).
    #[test]
    fn the_loss_on_four_digits_falls_tenfold() {
        let mut trainer = Trainer::new(tiny_recipe(), &Device::flex()).unwrap();
        let data = four_bars();
        let losses: Vec<f32> = (0..300)
            .map(|_| trainer.step(&data).unwrap().into_scalar::<f32>())
            .collect();
        let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
        let (first, last) = (losses[0], mean(&losses[280..]));
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(
            last * 10.0 < first,
            "loss {first} at the first step, {last} on average over the last 20"
        );
        assert_eq!(trainer.state().step, 300);
    }

    #[test]
    fn digits_and_recipes_out_of_range_are_refused_by_name() {
        let wrong = Digits::new(&[0; 63], vec![1], 8).err().unwrap().to_string();
        assert!(
            wrong.contains("63 bytes are not 1 images of 8×8"),
            "{wrong}"
        );
        let mut recipe = tiny_recipe();
        recipe.label_dropout = 1.5;
        let refused = Trainer::new(recipe, &Device::flex())
            .err()
            .unwrap()
            .to_string();
        assert!(
            refused.contains("label dropout must lie in [0, 1)"),
            "{refused}"
        );
        let mut trainer = Trainer::new(tiny_recipe(), &Device::flex()).unwrap();
        let big = Digits::new(&[0; 2 * 16 * 16], vec![0, 1], 16).unwrap();
        let mismatch = trainer.step(&big).err().unwrap().to_string();
        assert!(mismatch.contains("8×8 images"), "{mismatch}");
    }

    #[test]
    fn min_snr_weights_clip_the_high_snr_steps_only() {
        assert_eq!(min_snr_weight(10.0, 5.0), 0.5);
        assert_eq!(min_snr_weight(5.0, 5.0), 1.0);
        assert_eq!(min_snr_weight(0.01, 5.0), 1.0);
        // Over the paper's schedule the weight falls with SNR: 1 at the noisy end, tiny at t = 0.
        let schedule = ModelConfig::preset("tiny")
            .unwrap()
            .noise_schedule()
            .unwrap();
        let last = schedule.num_train_timesteps() - 1;
        assert_eq!(min_snr_weight(schedule.snr(last), 5.0), 1.0);
        assert!(min_snr_weight(schedule.snr(0), 5.0) < 1e-3);
    }
}
