//! Everything a training run is built from (the CLI writes it to `<run>/config.json`, so that a
//! run can be resumed and its result reproduced).

use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::model::ModelConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// The network and its noise schedule.
    pub model: ModelConfig,
    /// Images per optimisation step.
    pub batch_size: usize,
    /// Optimisation steps in all; the learning rate decays to `min_learning_rate` at the end.
    pub steps: usize,
    /// Peak learning rate of AdamW (reached after `warmup_steps` of linear warm-up).
    pub learning_rate: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    /// AdamW weight decay (decoupled).
    pub weight_decay: f32,
    /// Gradients are rescaled so their global L2 norm is at most this.
    pub grad_clip_norm: f32,
    /// Largest EMA decay (reached after the warm-up of [`super::ema::decay_at`]).
    pub ema_decay: f64,
    /// Probability of replacing a label by the null class (classifier-free guidance training,
    /// Ho & Salimans 2022 §3.2); only for class-conditional models.
    pub label_dropout: f64,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): each image's ‖ε − ε̂‖² is weighted by
    /// min(SNR(t), γ)/SNR(t). `None` trains on the paper's unweighted L_simple.
    #[serde(default)]
    pub min_snr_gamma: Option<f64>,
    /// Seeds the weights, the data order, the timesteps and the noise.
    pub seed: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Write a sample grid every this many steps (0: never).
    pub sample_every: usize,
}

impl TrainingConfig {
    /// Learning rate at `step`: linear warm-up, then cosine decay (Loshchilov & Hutter 2017).
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            // 1. warm-up: linear from lr/warmup to lr
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        // 2. cosine from lr down to min_lr over the remaining steps
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * cosine
    }

    /// Checks the recipe: an error names the setting out of range.
    pub fn validate(&self) -> Result<(), EmergeError> {
        self.model.validate()?;
        let checks = [
            (self.batch_size > 0, "batch size must be at least 1"),
            (self.steps > 0, "steps must be at least 1"),
            (self.learning_rate > 0.0, "learning rate must be positive"),
            (
                (0.0..1.0).contains(&self.ema_decay),
                "EMA decay must lie in [0, 1)",
            ),
            (
                (0.0..1.0).contains(&self.label_dropout),
                "label dropout must lie in [0, 1)",
            ),
            (
                self.label_dropout == 0.0 || self.model.unet.is_conditional(),
                "label dropout needs a class-conditional model",
            ),
            (
                self.min_snr_gamma.is_none_or(|g| g > 0.0 && g.is_finite()),
                "Min-SNR γ must be a positive number",
            ),
            (
                self.checkpoint_every > 0,
                "checkpoint interval must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err(EmergeError::InvalidConfig((*problem).into())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let config = TrainingConfig {
            model: ModelConfig::preset("tiny").unwrap(),
            batch_size: 4,
            steps: 110,
            learning_rate: 1e-3,
            min_learning_rate: 1e-5,
            warmup_steps: 10,
            weight_decay: 0.0,
            grad_clip_norm: 1.0,
            ema_decay: 0.999,
            label_dropout: 0.1,
            min_snr_gamma: None,
            seed: 0,
            checkpoint_every: 10,
            sample_every: 0,
        };
        assert!((config.learning_rate_at(0) - 1e-4).abs() < 1e-12);
        assert!((config.learning_rate_at(10) - 1e-3).abs() < 1e-12);
        assert!((config.learning_rate_at(60) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-9);
        assert!((config.learning_rate_at(110) - 1e-5).abs() < 1e-12);
    }

    #[test]
    fn a_config_written_before_min_snr_existed_still_loads() {
        let mut json: serde_json::Value =
            serde_json::to_value(super::super::tests::tiny_recipe()).unwrap();
        json.as_object_mut().unwrap().remove("min_snr_gamma");
        let config: TrainingConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.min_snr_gamma, None);
    }
}
