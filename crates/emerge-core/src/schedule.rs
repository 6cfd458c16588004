//! Noise schedules of the forward process and every per-timestep table the DDPM math needs.
//!
//! References: Ho, Jain & Abbeel 2020 (DDPM, arXiv:2006.11239) §2 and §4; Nichol & Dhariwal 2021
//! (Improved DDPM, arXiv:2102.09672) §3.2 for the cosine schedule. Tables are computed once in f64
//! and read as f32 at the tensor boundary. Index `t` runs over `0..num_train_timesteps`, the
//! diffusers convention: index 0 is the paper's t = 1.

use serde::{Deserialize, Serialize};

use crate::error::EmergeError;

/// How β_t is laid out over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BetaSchedule {
    /// β_t linear from `beta_start` to `beta_end` (DDPM §4: 1e-4 to 0.02 over T = 1000).
    Linear { beta_start: f64, beta_end: f64 },
    /// ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2), β_t clipped at 0.999
    /// (Improved DDPM eq. 17, s = 0.008).
    Cosine { s: f64 },
}

impl BetaSchedule {
    /// The DDPM paper's schedule: linear, 1e-4 to 0.02.
    pub const PAPER_LINEAR: Self = Self::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    /// Improved DDPM's cosine schedule with offset s = 0.008.
    pub const COSINE: Self = Self::Cosine { s: 0.008 };

    fn betas(self, steps: usize) -> Vec<f64> {
        match self {
            Self::Linear {
                beta_start,
                beta_end,
            } => (0..steps)
                .map(|i| {
                    let frac = if steps == 1 {
                        0.0
                    } else {
                        i as f64 / (steps - 1) as f64
                    };
                    beta_start + frac * (beta_end - beta_start)
                })
                .collect(),
            Self::Cosine { s } => {
                // f(t) = cos²(((t/T + s)/(1 + s))·π/2)  (Improved DDPM eq. 17)
                let f = |t: f64| {
                    (((t / steps as f64 + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                // β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped to 0.999 to avoid singularities near t = T
                (0..steps)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999))
                    .collect()
            }
        }
    }
}

/// Which fixed reverse-process variance σ_t² to use (DDPM §3.2: both gave similar results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, optimal for a deterministic x_0.
    #[default]
    FixedSmall,
    /// σ_t² = β_t, optimal for x_0 ~ N(0, I).
    FixedLarge,
}

/// The configuration a [`NoiseSchedule`] is built from (serialised into model files).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// T, the number of diffusion steps the model was trained with.
    pub num_train_timesteps: usize,
    /// How β_t is laid out.
    pub beta_schedule: BetaSchedule,
    /// The reverse-process variance the DDPM sampler uses.
    pub variance_type: VarianceType,
    /// Clip the predicted x_0 to [−1, 1] in the samplers, as the paper's sampler does.
    pub clip_sample: bool,
}

impl Default for ScheduleConfig {
    /// The DDPM paper's setting: T = 1000, linear β, σ² = β̃ ("fixed small"), clipping on.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_schedule: BetaSchedule::PAPER_LINEAR,
            variance_type: VarianceType::FixedSmall,
            clip_sample: true,
        }
    }
}

/// Every per-timestep table of the forward process, in f64. (The posterior q(x_{t−1} | x_t, x_0)
/// is computed by the sampler between whichever timesteps it steps, as diffusers' schedulers do.)
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    /// β_t
    pub betas: Vec<f64>,
    /// α_t = 1 − β_t
    pub alphas: Vec<f64>,
    /// ᾱ_t = ∏_{s ≤ t} α_s
    pub alphas_cumprod: Vec<f64>,

    // q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)  (DDPM eq. 4)
    /// √ᾱ_t
    pub sqrt_alphas_cumprod: Vec<f64>,
    /// √(1 − ᾱ_t)
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    pub fn new(config: ScheduleConfig) -> Result<Self, EmergeError> {
        let steps = config.num_train_timesteps;
        if steps == 0 {
            return Err(EmergeError::InvalidConfig(
                "num_train_timesteps must be at least 1".into(),
            ));
        }
        if let BetaSchedule::Linear {
            beta_start,
            beta_end,
        } = config.beta_schedule
        {
            let valid = |b: f64| b > 0.0 && b < 1.0;
            if !valid(beta_start) || !valid(beta_end) {
                return Err(EmergeError::InvalidConfig(format!(
                    "linear schedule needs 0 < beta < 1, got beta_start={beta_start}, beta_end={beta_end}"
                )));
            }
        }
        if let BetaSchedule::Cosine { s } = config.beta_schedule
            && !(s >= 0.0 && s.is_finite())
        {
            return Err(EmergeError::InvalidConfig(format!(
                "cosine schedule offset s must be ≥ 0, got {s}"
            )));
        }
        let betas = config.beta_schedule.betas(steps);
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0, |prod, a| {
                *prod *= a;
                Some(*prod)
            })
            .collect();
        Ok(Self {
            config,
            sqrt_alphas_cumprod: alphas_cumprod.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alphas_cumprod: alphas_cumprod
                .iter()
                .map(|a| (1.0 - a).sqrt())
                .collect(),
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    /// T, the number of training timesteps.
    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// Signal-to-noise ratio of x_t: SNR(t) = ᾱ_t/(1 − ᾱ_t)  (Kingma et al. 2021, eq. 2).
    pub fn snr(&self, t: usize) -> f64 {
        self.alphas_cumprod[t] / (1.0 - self.alphas_cumprod[t])
    }

    /// Checks that a timestep index lies in `0..T`.
    pub fn check_timestep(&self, t: usize) -> Result<(), EmergeError> {
        if t < self.num_train_timesteps() {
            Ok(())
        } else {
            Err(EmergeError::InvalidArgument(format!(
                "timestep {t} is outside 0..{} of this schedule",
                self.num_train_timesteps()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear() -> NoiseSchedule {
        NoiseSchedule::new(ScheduleConfig::default()).unwrap()
    }

    #[test]
    fn linear_schedule_matches_closed_form() {
        let s = linear();
        assert_eq!(s.betas.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15);
        assert!((s.betas[999] - 0.02).abs() < 1e-15);
        // ᾱ_T = ∏ (1 − β_t) with β linear: computed independently by summing logs.
        let log_sum: f64 = (0..1000)
            .map(|i| (1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0)).ln())
            .sum();
        assert!((s.alphas_cumprod[999] - log_sum.exp()).abs() < 1e-12);
        // The well-known value of ᾱ_1000 for the paper's schedule: about 4.04e-5.
        assert!(
            (s.alphas_cumprod[999] - 4.0358e-5).abs() < 1e-8,
            "{}",
            s.alphas_cumprod[999]
        );
        assert!(
            (s.sqrt_alphas_cumprod[500].powi(2) + s.sqrt_one_minus_alphas_cumprod[500].powi(2)
                - 1.0)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn cosine_schedule_follows_improved_ddpm() {
        let s = NoiseSchedule::new(ScheduleConfig {
            beta_schedule: BetaSchedule::COSINE,
            ..Default::default()
        })
        .unwrap();
        let f = |t: f64| {
            (((t / 1000.0 + 0.008) / 1.008) * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        for t in [0usize, 100, 500, 900] {
            assert!(
                (s.alphas_cumprod[t] - f(t as f64 + 1.0) / f(0.0)).abs() < 1e-9,
                "t={t}"
            );
        }
        assert!(s.betas.iter().all(|b| *b > 0.0 && *b <= 0.999));
        assert!((s.betas[999] - 0.999).abs() < 1e-12);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let bad = ScheduleConfig {
            beta_schedule: BetaSchedule::Linear {
                beta_start: 0.0,
                beta_end: 1.5,
            },
            ..Default::default()
        };
        assert!(
            NoiseSchedule::new(bad)
                .unwrap_err()
                .to_string()
                .contains("beta_start")
        );
        let zero = ScheduleConfig {
            num_train_timesteps: 0,
            ..Default::default()
        };
        assert!(NoiseSchedule::new(zero).is_err());
        assert!(
            linear()
                .check_timestep(1000)
                .unwrap_err()
                .to_string()
                .contains("1000")
        );
    }
}
